"""The hardware: target descriptions (mesh, SRAM, colors, clock, FLOPs per cycle, I/O), presets with their
sources, and parsing a target spec. How a layer is tiled and costed on it is ``wafercc.mapping.tiling``."""

from .target import PRESETS, WSE2, WSE3, Target, parse_target, small_mesh

__all__ = ["PRESETS", "Target", "WSE2", "WSE3", "parse_target", "small_mesh"]
