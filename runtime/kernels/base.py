"""The kernel table and the helpers every kernel family shares.

A kernel is ``kernel(op, *args) -> ndarray | tuple[ndarray, ...]``: it reads its attributes from the
WIR ``op`` (with the op table's defaults, restated here because the runtime may not import
``wafercc.ops``) and returns arrays of exactly the dtype and shape of ``op.results``. Kernels never
write into their arguments: arguments may be read-only views of the MemoryX store or of other values.

Reduced-precision floats (f16, bf16) are computed in f32 and rounded once at the end, as PyTorch's
CPU kernels do (its "opmath" type), so that e.g. a bf16 add rounds the f32 sum, not each operand.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_dtypes
import numpy as np

from wafercc.ir import DType, Op, TensorType
from wafercc.ops import OPS

Kernel = Callable[..., "np.ndarray | tuple[np.ndarray, ...]"]
KERNELS: dict[str, Kernel] = {}

NP_DTYPE: dict[DType, np.dtype] = {
    d: np.dtype(ml_dtypes.bfloat16) if d is DType.bf16 else np.dtype(d.numpy_name) for d in DType
}
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
I64 = np.dtype(np.int64)
_HALF = frozenset({np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)})


def kernel(*names: str) -> Callable[[Kernel], Kernel]:
    """Register a function as the kernel of each op name given."""

    def register(fn: Kernel) -> Kernel:
        for name in names:
            if name in KERNELS:
                raise AssertionError(f"kernel '{name}' registered twice")
            KERNELS[name] = fn
        return fn

    return register


def attr(op: Op, name: str):
    """The attribute ``name`` of ``op``, or the default the op table declares for it (the one place defaults
    are written down); None for an attribute the op's kind does not declare."""
    if name in op.attrs:
        return op.attrs[name]
    d = OPS.get(op.name)
    spec = d.attrs.get(name) if d is not None else None
    return None if spec is None or spec.required else spec.default


def np_dtype(t: TensorType | DType) -> np.dtype:
    return NP_DTYPE[t.dtype if isinstance(t, TensorType) else t]


def out_dtype(op: Op, i: int = 0) -> np.dtype:
    return NP_DTYPE[op.results[i].type.dtype]


def compute_dtype(dt: np.dtype) -> np.dtype:
    """The dtype arithmetic runs in: f32 for f16/bf16 (rounded once at the end), else ``dt``."""
    return F32 if dt in _HALF else dt


def up(x: np.ndarray) -> np.ndarray:
    """``x`` in its compute dtype (f16/bf16 widened to f32)."""
    return x.astype(F32) if x.dtype in _HALF else x


def finish(op: Op, y, i: int = 0) -> np.ndarray:
    """Result ``i`` with exactly the declared dtype; numpy scalars become 0-d arrays.

    numpy's own promotion (f32 op 0-d f64 -> f64, bf16 sums -> f32, ...) must not leak out.
    """
    dt = NP_DTYPE[op.results[i].type.dtype]
    y = np.asarray(y)
    return y if y.dtype == dt else cast(y, dt)


def cast(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    """``x.astype(dt)`` with PyTorch's conversion rules where numpy's differ.

    - f64 (or an integer) to f16/bf16 goes through f32: c10::Half/BFloat16 are built from a float,
      so torch rounds twice; numpy would round once.
    - bf16 to an integer goes through f32 (ml_dtypes has no direct cast for every integer type).
    Float to int truncates toward zero and float to bool is ``x != 0`` in both libraries.
    """
    if x.dtype == dt:
        return x
    to_half = dt in _HALF and x.dtype not in _HALF and x.dtype != F32 and x.dtype != np.bool_
    half_to_int = x.dtype in _HALF and dt.kind in "iub"
    return (x.astype(F32) if to_half or half_to_int else x).astype(dt)
