"""Reductions and scans. ``dims = []`` reduces every dim, as in ATen."""

from __future__ import annotations

from wafercc.ir import DType

from .registry import AttrSpec, ShapeError, defop
from .rules import float_of, norm_dim, norm_dims, reduced_shape, require_float

F = "reduce"
_DIMS = {"dims": AttrSpec("ints", []), "keepdim": AttrSpec("bool", False)}


def _in_numel(op):
    return op.operands[0].type.numel


def _reduce(dtype_rule):
    def infer(ts, a):
        t = ts[0]
        dims = norm_dims(a["dims"], t.rank)
        return [t.with_shape(reduced_shape(t.shape, dims, a["keepdim"])).with_dtype(dtype_rule(t, a))]

    return infer


def _sum_dtype(t, a):
    if a.get("dtype") is not None:
        return a["dtype"]
    return t.dtype if t.dtype.is_float else DType.i64


def _mean_dtype(t, a):
    if a.get("dtype") is not None:
        return a["dtype"]
    require_float(t, "mean")
    return t.dtype


def _keep(t, a):
    return t.dtype


defop(
    "sum",
    "x",
    _reduce(_sum_dtype),
    attrs={**_DIMS, "dtype": AttrSpec("dtype?", None)},
    flops=_in_numel,
    family=F,
    doc="sum over dims (integers and bools sum in i64)",
    torch=("aten.sum",),
)
defop(
    "prod",
    "x",
    _reduce(_sum_dtype),
    attrs={**_DIMS, "dtype": AttrSpec("dtype?", None)},
    flops=_in_numel,
    family=F,
    doc="product over dims",
    torch=("aten.prod",),
)
defop(
    "mean",
    "x",
    _reduce(_mean_dtype),
    attrs={**_DIMS, "dtype": AttrSpec("dtype?", None)},
    flops=_in_numel,
    family=F,
    doc="arithmetic mean over dims",
    torch=("aten.mean",),
)
defop(
    "amax",
    "x",
    _reduce(_keep),
    attrs=_DIMS,
    flops=_in_numel,
    family=F,
    doc="max over dims (NaN propagates)",
    torch=("aten.amax",),
)
defop(
    "amin",
    "x",
    _reduce(_keep),
    attrs=_DIMS,
    flops=_in_numel,
    family=F,
    doc="min over dims (NaN propagates)",
    torch=("aten.amin",),
)
defop(
    "any",
    "x",
    _reduce(lambda t, a: DType.bool),
    attrs=_DIMS,
    flops=_in_numel,
    family=F,
    doc="true if any element over dims is nonzero",
    torch=("aten.any",),
)
defop(
    "all",
    "x",
    _reduce(lambda t, a: DType.bool),
    attrs=_DIMS,
    flops=_in_numel,
    family=F,
    doc="true if every element over dims is nonzero",
    torch=("aten.all",),
)


def _var(ts, a):
    require_float(ts[0], "var")
    return _reduce(_keep)(ts, a)


defop(
    "var",
    "x",
    _var,
    attrs={**_DIMS, "correction": AttrSpec("float", 1)},
    flops=lambda op: 3 * _in_numel(op),
    family=F,
    doc="variance over dims: sum((x - mean)^2) / (N - correction)",
    torch=("aten.var",),
)


def _arg(ts, a):
    t = ts[0]
    if a["dim"] is None:
        return [t.with_shape((1,) * t.rank if a["keepdim"] else ()).with_dtype(DType.i64)]
    d = norm_dim(a["dim"], t.rank)
    return [t.with_shape(reduced_shape(t.shape, [d], a["keepdim"])).with_dtype(DType.i64)]


_ARG = {"dim": AttrSpec("int?", None), "keepdim": AttrSpec("bool", False)}
defop(
    "argmax",
    "x",
    _arg,
    attrs=_ARG,
    flops=_in_numel,
    family=F,
    doc="index of the first max along dim (of the flattened tensor if dim is none)",
    torch=("aten.argmax",),
)
defop(
    "argmin",
    "x",
    _arg,
    attrs=_ARG,
    flops=_in_numel,
    family=F,
    doc="index of the first min along dim (of the flattened tensor if dim is none)",
    torch=("aten.argmin",),
)


def _minmax_dim(ts, a):
    t = ts[0]
    d = norm_dim(a["dim"], t.rank)
    shape = reduced_shape(t.shape, [d], a["keepdim"])
    return [t.with_shape(shape), t.with_shape(shape).with_dtype(DType.i64)]


_MM = {"dim": "int", "keepdim": AttrSpec("bool", False)}
defop(
    "max_dim",
    "x",
    _minmax_dim,
    attrs=_MM,
    flops=_in_numel,
    family=F,
    num_results=2,
    doc="(max along dim, index of the first max)",
    torch=("aten.max.dim",),
)
defop(
    "min_dim",
    "x",
    _minmax_dim,
    attrs=_MM,
    flops=_in_numel,
    family=F,
    num_results=2,
    doc="(min along dim, index of the first min)",
    torch=("aten.min.dim",),
)


def _scan(ts, a):
    t = ts[0]
    norm_dim(a["dim"], t.rank)
    if a["dtype"] is not None:
        return [t.with_dtype(a["dtype"])]
    return [t if t.dtype.is_float else t.with_dtype(DType.i64)]


_SCAN = {"dim": "int", "dtype": AttrSpec("dtype?", None)}
defop("cumsum", "x", _scan, attrs=_SCAN, flops=_in_numel, family=F, doc="running sum along dim", torch=("aten.cumsum",))
defop(
    "cumprod",
    "x",
    _scan,
    attrs=_SCAN,
    flops=_in_numel,
    family=F,
    doc="running product along dim",
    torch=("aten.cumprod",),
)


def _softmax(ts, a):
    t = ts[0]
    norm_dim(a["dim"], t.rank)
    if not t.dtype.is_float:
        raise ShapeError(f"softmax needs a floating-point tensor, got {t}")
    return [t.with_dtype(float_of(t))]


defop(
    "softmax",
    "x",
    _softmax,
    attrs={"dim": "int"},
    flops=lambda op: 5 * _in_numel(op),
    family=F,
    doc="exp(x - max) / sum(exp(x - max)) along dim",
    torch=("aten._softmax",),
)
defop(
    "log_softmax",
    "x",
    _softmax,
    attrs={"dim": "int"},
    flops=lambda op: 5 * _in_numel(op),
    family=F,
    doc="x - max - log(sum(exp(x - max))) along dim",
    torch=("aten._log_softmax",),
)


def _cum_extreme(ts, a):
    t = ts[0]
    norm_dim(a["dim"], t.rank)
    return [t, t.with_dtype(DType.i64)]


defop(
    "cummax",
    "x",
    _cum_extreme,
    attrs={"dim": "int"},
    flops=_in_numel,
    family=F,
    num_results=2,
    doc="running max along dim and the index where it was taken (the latest on ties; NaN sticks)",
    torch=("aten.cummax",),
)
defop(
    "cummin",
    "x",
    _cum_extreme,
    attrs={"dim": "int"},
    flops=_in_numel,
    family=F,
    num_results=2,
    doc="running min along dim and the index where it was taken (the latest on ties; NaN sticks)",
    torch=("aten.cummin",),
)
