"""Ops that make tensors from attributes: constants, fills, ranges, and module weights."""

from __future__ import annotations

import math

from wafercc.ir import DType, TensorType

from .registry import AttrSpec, ShapeError, defop, out_numel

F = "create"


def _nested_shape(v) -> tuple[int, ...]:
    if not isinstance(v, list):
        return ()
    if not v:
        return (0,)
    inner = {_nested_shape(x) for x in v}
    if len(inner) != 1:
        raise ShapeError("constant value is a ragged nested list")
    return (len(v),) + inner.pop()


def _leaves(v):
    if isinstance(v, list):
        for x in v:
            yield from _leaves(x)
    else:
        yield v


_INT_RANGE = {DType.i64: 64, DType.i32: 32, DType.i16: 16, DType.i8: 8}


def check_scalar(v, dtype: DType) -> None:
    """A constant's value must be representable in its dtype: no silent wrap-around or truncation."""
    if dtype.is_bool:
        ok = isinstance(v, bool)
    elif dtype.is_float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    elif dtype is DType.u8:
        ok = isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 256
    else:
        bits = _INT_RANGE[dtype]
        ok = isinstance(v, int) and not isinstance(v, bool) and -(2 ** (bits - 1)) <= v < 2 ** (bits - 1)
    if not ok:
        raise ShapeError(f"value {v!r} does not fit dtype {dtype.value}")


def _constant(ts, a):
    for v in _leaves(a["value"]):
        check_scalar(v, a["dtype"])
    return [TensorType(_nested_shape(a["value"]), a["dtype"])]


defop(
    "constant",
    "",
    _constant,
    attrs={"value": "any", "dtype": "dtype"},
    family=F,
    doc="a small tensor written in the text: a scalar (0-d) or nested lists",
    torch=("aten.scalar_tensor",),
)


def _full(ts, a):
    check_scalar(a["value"], a["dtype"])
    if any(s < 0 for s in a["shape"]):
        raise ShapeError(f"shape {a['shape']} has a negative size")
    return [TensorType(tuple(a["shape"]), a["dtype"])]


defop(
    "full",
    "",
    _full,
    attrs={"shape": "ints", "value": "scalar", "dtype": "dtype"},
    flops=out_numel,
    family=F,
    doc="a tensor of shape filled with value",
    torch=("aten.full", "aten.full_like", "aten.zeros", "aten.ones"),
)


def _arange(ts, a):
    start, end, step = a["start"], a["end"], a["step"]
    if not all(math.isfinite(v) for v in (start, end, step)):
        raise ShapeError(f"arange({start}, {end}, {step}) needs finite bounds")
    if a["dtype"].is_int:  # torch truncates the bounds of an integer range before counting
        start, end, step = (math.trunc(v) for v in (start, end, step))
    if step == 0 or (end - start) * step < 0:
        raise ShapeError(
            f"arange({start}, {end}, {step}) never reaches its end: step must be nonzero and point from start to end"
        )
    n = math.ceil((end - start) / step)
    return [TensorType((n,), a["dtype"])]


defop(
    "arange",
    "",
    _arange,
    attrs={
        "start": AttrSpec("float", 0),
        "end": "float",
        "step": AttrSpec("float", 1),
        "dtype": AttrSpec("dtype", DType.i64),
    },
    family=F,
    doc="start, start + step, ... up to (not including) end",
    torch=("aten.arange",),
)


def _weight_get(ts, a):
    # Symbol attributes reach result-type rules resolved to their module Weight.
    return [a["symbol"].type]


defop(
    "weight.get",
    "",
    _weight_get,
    attrs={"symbol": "symbol"},
    family=F,
    doc="the module weight @symbol, streamed in from the MemoryX store",
)
