"""Elementwise ops: unary math, activations, binary arithmetic with broadcasting, comparisons, where,
casts. Binary ops follow torch's type promotion (``wafercc.ir.result_dtype``); a Python scalar in the
model becomes a 0-d ``constant`` operand, which promotes the way torch promotes a scalar.
"""

from __future__ import annotations

from wafercc.ir import DType, TensorType, result_dtype

from .registry import AttrSpec, ShapeError, defop, out_numel
from .rules import binary, binary_float, broadcast, compare, float_of, same, to_bool, unary_float

F = "elementwise"


def _flops(per_element: int):
    return lambda op: per_element * out_numel(op)


# name, result rule, FLOPs per element, ATen ops, semantics
_UNARY = [
    ("neg", same, 1, "neg", "-x"),
    ("abs", same, 1, "abs", "|x|"),
    ("sign", same, 1, "sign", "-1, 0 or 1 by the sign of x (0 for 0 and for NaN, as torch)"),
    ("floor", same, 1, "floor", "round toward -inf"),
    ("ceil", same, 1, "ceil", "round toward +inf"),
    ("trunc", same, 1, "trunc", "round toward 0"),
    ("round", same, 1, "round", "round half to even"),
    ("relu", same, 1, "relu", "max(x, 0)"),
    ("bitwise_not", same, 1, "bitwise_not", "~x for integers, not x for bool"),
    ("clone", same, 0, "clone", "a copy of x (removed by canonicalize)"),
    ("detach", same, 0, "detach", "x, cut from autograd (removed by canonicalize)"),
    ("exp", unary_float, 1, "exp", "e^x"),
    ("exp2", unary_float, 1, "exp2", "2^x"),
    ("expm1", unary_float, 1, "expm1", "e^x - 1"),
    ("log", unary_float, 1, "log", "natural log"),
    ("log2", unary_float, 1, "log2", "log base 2"),
    ("log10", unary_float, 1, "log10", "log base 10"),
    ("log1p", unary_float, 1, "log1p", "log(1 + x)"),
    ("sqrt", unary_float, 1, "sqrt", "square root"),
    ("rsqrt", unary_float, 2, "rsqrt", "1 / sqrt(x)"),
    ("reciprocal", unary_float, 1, "reciprocal", "1 / x"),
    ("sin", unary_float, 1, "sin", "sine"),
    ("cos", unary_float, 1, "cos", "cosine"),
    ("tan", unary_float, 1, "tan", "tangent"),
    ("asin", unary_float, 1, "asin", "arc sine"),
    ("acos", unary_float, 1, "acos", "arc cosine"),
    ("atan", unary_float, 1, "atan", "arc tangent"),
    ("acosh", unary_float, 1, "acosh", "inverse hyperbolic cosine"),
    ("asinh", unary_float, 1, "asinh", "inverse hyperbolic sine"),
    ("atanh", unary_float, 1, "atanh", "inverse hyperbolic tangent"),
    ("lgamma", unary_float, 1, "lgamma", "log |gamma(x)| (inf at the poles 0, -1, -2, ...)"),
    ("digamma", unary_float, 1, "digamma", "d/dx log gamma(x) (-inf at 0, NaN at the negative poles, as torch)"),
    ("sinh", unary_float, 1, "sinh", "hyperbolic sine"),
    ("cosh", unary_float, 1, "cosh", "hyperbolic cosine"),
    ("tanh", unary_float, 1, "tanh", "hyperbolic tangent"),
    ("erf", unary_float, 1, "erf", "the error function"),
    ("sigmoid", unary_float, 3, "sigmoid", "1 / (1 + e^-x)"),
    ("silu", unary_float, 4, "silu", "x * sigmoid(x)"),
    ("hardsigmoid", unary_float, 3, "hardsigmoid", "clamp(x / 6 + 1/2, 0, 1)"),
    ("hardswish", unary_float, 4, "hardswish", "x * hardsigmoid(x)"),
    ("mish", unary_float, 6, "mish", "x * tanh(softplus(x))"),
]
for _name, _rule, _f, _aten, _doc in _UNARY:
    defop(_name, "x", _rule, flops=_flops(_f), family=F, doc=_doc, torch=(f"aten.{_aten}",))

for _name, _doc in [
    ("isnan", "x != x"),
    ("isinf", "x is +inf or -inf"),
    ("logical_not", "not x (bool result)"),
    ("signbit", "the sign bit of x: true for negative numbers, -0.0 and NaNs with the bit set"),
]:
    defop(_name, "x", to_bool, flops=_flops(1), family=F, doc=_doc, torch=(f"aten.{_name}",))


def _float_only(rule):
    def infer(ts, a):
        if not ts[0].dtype.is_float:
            raise ShapeError(f"needs a floating-point operand, got {ts[0]}")
        return rule(ts, a)

    return infer


defop(
    "gelu",
    "x",
    _float_only(same),
    attrs={"approximate": AttrSpec("str", "none")},
    flops=_flops(8),
    family=F,
    doc='x * Phi(x); approximate = "tanh" uses torch\'s tanh formula',
    torch=("aten.gelu",),
)
defop(
    "leaky_relu",
    "x",
    _float_only(same),
    attrs={"negative_slope": AttrSpec("float", 0.01)},
    flops=_flops(2),
    family=F,
    doc="x if x > 0 else negative_slope * x",
    torch=("aten.leaky_relu",),
)
defop(
    "elu",
    "x",
    _float_only(same),
    attrs={"alpha": AttrSpec("float", 1.0), "scale": AttrSpec("float", 1.0), "input_scale": AttrSpec("float", 1.0)},
    flops=_flops(4),
    family=F,
    doc="scale * (x if x > 0 else alpha * (e^(x * input_scale) - 1))",
    torch=("aten.elu",),
)
defop(
    "softplus",
    "x",
    _float_only(same),
    attrs={"beta": AttrSpec("float", 1.0), "threshold": AttrSpec("float", 20.0)},
    flops=_flops(4),
    family=F,
    doc="log(1 + e^(beta x)) / beta, or x where beta x > threshold",
    torch=("aten.softplus",),
)


def _clamp(ts, a):
    t = ts[0]
    bounds = [a["min"], a["max"]]
    if t.dtype.is_int or t.dtype.is_bool:
        if any(isinstance(b, float) for b in bounds):
            return [t.with_dtype(DType.f32)]
    return [t]


defop(
    "clamp",
    "x",
    _clamp,
    attrs={"min": AttrSpec("float?", None), "max": AttrSpec("float?", None)},
    flops=_flops(2),
    family=F,
    doc="min(max(x, min), max); a none bound is absent (hardtanh maps here)",
    torch=("aten.clamp", "aten.hardtanh"),
)


def _convert(ts, a):
    return [ts[0].with_dtype(a["dtype"])]


defop(
    "convert",
    "x",
    _convert,
    attrs={"dtype": "dtype"},
    flops=_flops(1),
    family=F,
    doc="x cast to dtype (round to nearest even for floats, truncation toward 0 for float to int)",
    torch=("aten._to_copy",),
)

# -- binary -----------------------------------------------------------------------------------

_BINARY = [
    ("add", binary, "a + b"),
    ("sub", binary, "a - b"),
    ("mul", binary, "a * b"),
    ("maximum", binary, "elementwise max; NaN if either is NaN"),
    ("minimum", binary, "elementwise min; NaN if either is NaN"),
    ("remainder", binary, "a - floor(a / b) * b (Python's %, sign of b)"),
    ("fmod", binary, "a - trunc(a / b) * b (C's fmod, sign of a)"),
    ("pow", binary, "a ^ b"),
    ("atan2", binary_float, "atan2(a, b)"),
]
for _name, _rule, _doc in _BINARY:
    defop(_name, "a b", _rule, flops=_flops(1), family=F, doc=_doc, torch=(f"aten.{_name}",))


def _div(ts, a):
    t = TensorType(broadcast(ts[0].shape, ts[1].shape), result_dtype(ts[:2]))
    if a["rounding_mode"] is None:
        return [t.with_dtype(float_of(t))]
    if a["rounding_mode"] not in ("trunc", "floor"):
        raise ShapeError(f'rounding_mode must be none, "trunc" or "floor", got {a["rounding_mode"]!r}')
    return [t]


defop(
    "div",
    "a b",
    _div,
    attrs={"rounding_mode": AttrSpec("str?", None)},
    flops=_flops(1),
    family=F,
    doc='a / b; true division (integers give f32) unless rounding_mode is "trunc" or "floor"',
    torch=("aten.div",),
)


def _bitwise(ts, a):
    out = binary(ts, a)
    if out[0].dtype.is_float:
        raise ShapeError(f"needs integer or bool operands, got {ts[0]} and {ts[1]}")
    return out


for _name in ("bitwise_and", "bitwise_or", "bitwise_xor"):
    defop(
        _name,
        "a b",
        _bitwise,
        flops=_flops(1),
        family=F,
        doc=f"{_name.split('_')[1]} of the bits (or bools)",
        torch=(f"aten.{_name}",),
    )
for _name in ("logical_and", "logical_or", "logical_xor"):
    defop(
        _name,
        "a b",
        compare,
        flops=_flops(1),
        family=F,
        doc=f"{_name.split('_')[1]} of truth values (bool)",
        torch=(f"aten.{_name}",),
    )
for _name, _sym in [("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">=")]:
    defop(_name, "a b", compare, flops=_flops(1), family=F, doc=f"a {_sym} b (bool)", torch=(f"aten.{_name}",))


def _where(ts, a):
    if ts[0].dtype is not DType.bool:
        raise ShapeError(f"condition must be bool, got {ts[0]}")
    return [TensorType(broadcast(ts[0].shape, ts[1].shape, ts[2].shape), result_dtype(ts[1:3]))]


defop("where", "cond a b", _where, flops=_flops(1), family=F, doc="a where cond else b", torch=("aten.where",))


defop(
    "polygamma",
    "x",
    unary_float,
    attrs={"n": "int"},
    flops=_flops(20),
    family=F,
    doc="the n-th derivative of digamma (n = 0: digamma itself)",
    torch=("aten.polygamma",),
)


# -- checks -----------------------------------------------------------------------------------


defop(
    "check",
    "cond",
    same,
    attrs={"message": AttrSpec("str", "")},
    flops=_flops(1),
    family=F,
    effect=True,
    doc="a run-time assertion: the run fails with message (and the op's source line) unless every element "
    "of cond is nonzero; the result is cond, unused: the op is kept for its effect",
    torch=("aten._assert_async", "aten._assert_scalar", "aten.sym_constrain_range"),
)
