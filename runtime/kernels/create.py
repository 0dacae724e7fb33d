"""Kernels that make tensors from attributes: constant, full, arange. (``weight.get`` is not a kernel:
the interpreter runs it, because it reads the MemoryX store.)"""

from __future__ import annotations

import math

import numpy as np

from .base import F64, attr, cast, kernel, out_dtype


@kernel("constant")
def _constant(op):
    # Through f64 (or the integer/bool value itself) and torch's casting rules, so that e.g. a bf16
    # constant rounds like torch.tensor(value, dtype=torch.bfloat16).
    value = np.asarray(attr(op, "value"))
    return cast(value if value.dtype.kind in "biu" else value.astype(F64), out_dtype(op))


@kernel("full")
def _full(op):
    value = cast(np.asarray(attr(op, "value")), out_dtype(op))
    if not value.tobytes().strip(b"\0"):  # all bits zero (not -0.0): calloc'd pages, written only where used
        return np.zeros(attr(op, "shape"), value.dtype)
    return np.full(attr(op, "shape"), value)


@kernel("arange")
def _arange(op):
    dt = out_dtype(op)
    n = op.results[0].type.shape[0]
    start, step = attr(op, "start"), attr(op, "step")
    if dt.kind in "iu":
        # torch converts start/end/step to the integer dtype first (arange(0.5, 3.5) -> 0, 1, 2).
        return (math.trunc(start) + np.arange(n, dtype=np.int64) * math.trunc(step)).astype(dt)
    # Floats: start + i * step computed in double, then rounded, as torch's CPU kernel does.
    return cast(float(start) + np.arange(n, dtype=F64) * float(step), dt)
