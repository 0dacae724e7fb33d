"""The hardware model: target descriptions with presets, and the cost model in cycles."""

from .cost import DoesNotFit, Shape, Tiling, search, seconds
from .target import PRESETS, WSE2, WSE3, Target, parse_target, small_mesh

__all__ = ["DoesNotFit", "PRESETS", "Shape", "Target", "Tiling", "WSE2", "WSE3", "parse_target", "search", "seconds",
           "small_mesh"]
