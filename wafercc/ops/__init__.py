"""What each WIR op is. Importing this package registers every op kind in ``OPS``."""

from . import create, elementwise, nn, reduce, shape  # noqa: F401  (registration side effects)
from .registry import OPS, AttrSpec, OpDef, ShapeError, check_op, flops, infer_types, op_bytes, verify

__all__ = ["OPS", "AttrSpec", "OpDef", "ShapeError", "check_op", "flops", "infer_types", "op_bytes", "verify"]
