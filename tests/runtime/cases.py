"""The op-by-op numerics sweep: tiny cases per WIR op, each compared with its torch.ops.aten call.

A case is (op name, input arrays, attributes, tolerance): the test builds a one-op module whose
operands are function arguments and whose result types come from the op table's rule.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from wafercc.ir import DType

BF16 = ml_dtypes.bfloat16
NAN, INF = float("nan"), float("inf")


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def f32(*shape, seed=0, scale=1.0, lo=None):
    x = rng(seed).standard_normal(shape).astype(np.float32) * np.float32(scale)
    return np.abs(x) + np.float32(lo) if lo is not None else x


def ints(*shape, lo=-10, hi=10, seed=0, dtype=np.int64):
    return rng(seed).integers(lo, hi, shape).astype(dtype)


def bools(*shape, seed=0):
    return rng(seed).integers(0, 2, shape).astype(bool)


def arr(values, dtype=np.float32):
    return np.array(values, dtype=dtype)


def uniform(*shape, lo=-0.9, hi=0.9, seed=0):
    return rng(seed).uniform(lo, hi, shape).astype(np.float32)


SPECIAL = arr([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 1e-3, 30.0, -30.0, INF, -INF, NAN])


def C(name, inputs, attrs=None, tol=None, id=None):
    return pytest.param(name, inputs, attrs or {}, tol, id=id or name)


# f16/bf16 results of reductions and products: torch and the runtime both accumulate in f32 but in a
# different order, so the final rounding can land one ulp apart (f16 ulp ~ 1e-3, bf16 ulp ~ 8e-3).
F16_TOL = (2e-3, 1e-3)
BF16_TOL = (1.6e-2, 1e-2)

_POS = ["log", "log2", "log10", "log1p", "sqrt", "rsqrt", "reciprocal"]
_UNIT = ["asin", "acos"]
_ANY = [
    "exp",
    "exp2",
    "expm1",
    "sin",
    "cos",
    "tan",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "erf",
    "sigmoid",
    "silu",
    "hardsigmoid",
    "hardswish",
    "mish",
    "neg",
    "abs",
    "sign",
    "floor",
    "ceil",
    "trunc",
    "round",
    "relu",
    "clone",
    "detach",
]

UNARY = (
    [C(n, [f32(3, 5, lo=0.1)]) for n in _POS]
    + [C(n, [uniform(3, 5)]) for n in _UNIT]
    + [C(n, [f32(3, 5, scale=2)]) for n in _ANY]
    + [C(n, [SPECIAL], id=f"{n}-special") for n in _ANY + _POS + _UNIT]
    + [C(n, [ints(6)], id=f"{n}-int") for n in ["neg", "abs", "sign", "floor", "round", "relu", "exp", "sqrt"]]
    + [C("round", [arr([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5000002])], id="round-half-even")]
    + [C(n, [f32(4, 4, scale=3).astype(BF16)], id=f"{n}-bf16") for n in ["exp", "tanh", "sigmoid", "neg", "relu"]]
    + [C(n, [f32(4, 4, scale=3).astype(np.float16)], id=f"{n}-f16") for n in ["exp", "erf", "silu"]]
    + [C("erf", [arr(np.linspace(-6, 6, 241))], id="erf-range")]
    + [C("bitwise_not", [ints(8)]), C("bitwise_not", [bools(8)], id="bitwise_not-bool")]
    + [C(n, [SPECIAL]) for n in ["isnan", "isinf", "logical_not"]]
    + [C("isnan", [ints(4)], id="isnan-int"), C("logical_not", [ints(6, lo=-1, hi=2)], id="logical_not-int")]
)

ACTIVATIONS = [
    C("gelu", [f32(4, 6, scale=3)]),
    # Not +inf: torch's own f32 gelu(inf) is inf in its scalar loop but NaN in its vectorized one (the runtime: inf).
    C("gelu", [SPECIAL[SPECIAL != INF]], id="gelu-special"),
    C("gelu", [f32(4, 6, scale=3)], {"approximate": "tanh"}, id="gelu-tanh"),
    # torch's f32 erf cancels to 0 in 1 + erf(x / sqrt 2) for x < -5; the runtime's f64 erf keeps ~1e-11.
    C("gelu", [f32(4, 6, scale=3).astype(BF16)], tol=(0, 1e-6), id="gelu-bf16"),
    C("leaky_relu", [f32(4, 6)], {"negative_slope": 0.2}),
    C("elu", [f32(4, 6, scale=2)], {"alpha": 1.5, "scale": 1.2, "input_scale": 0.7}),
    C("softplus", [f32(4, 6, scale=10)], {"beta": 2.0, "threshold": 5.0}),
    C("clamp", [SPECIAL], {"min": -1.0, "max": 2.0}),
    C("clamp", [f32(5)], {"min": 0.5}, id="clamp-min-only"),
    C("clamp", [f32(5)], {"max": 0.0}, id="clamp-max-only"),
    C("clamp", [f32(5)], {"min": 1.0, "max": -1.0}, id="clamp-min-gt-max"),
    C("clamp", [ints(8)], {"min": -3, "max": 4}, id="clamp-int"),
    C("clamp", [ints(8)], {"min": -2.5}, id="clamp-int-float-bound"),
]

CONVERT = [
    C("convert", [arr([-2.7, -0.5, 0.0, 0.9, 3.99, 1e9])], {"dtype": DType.i64}, id="convert-f32-i64-trunc"),
    C("convert", [arr([-2.7, 255.9, 3.2])], {"dtype": DType.u8}, id="convert-f32-u8"),
    C("convert", [arr([0.0, -0.0, 0.1, NAN, INF, -3.0])], {"dtype": DType.bool}, id="convert-f32-bool"),
    C("convert", [f32(64, scale=100)], {"dtype": DType.bf16}, id="convert-f32-bf16"),
    C("convert", [f32(64, scale=100)], {"dtype": DType.f16}, id="convert-f32-f16"),
    C("convert", [f32(64, scale=100).astype(BF16)], {"dtype": DType.f32}, id="convert-bf16-f32"),
    C("convert", [f32(64, scale=100).astype(np.float16)], {"dtype": DType.bf16}, id="convert-f16-bf16"),
    C("convert", [f32(16, scale=100).astype(BF16)], {"dtype": DType.i32}, id="convert-bf16-i32"),
    C("convert", [rng(1).standard_normal(64) * 1000], {"dtype": DType.bf16}, id="convert-f64-bf16"),
    C("convert", [rng(2).standard_normal(64)], {"dtype": DType.f16}, id="convert-f64-f16"),
    C("convert", [ints(16, lo=-300, hi=300)], {"dtype": DType.i8}, id="convert-i64-i8-wrap"),
    C("convert", [ints(16, lo=-(2**40), hi=2**40)], {"dtype": DType.bf16}, id="convert-i64-bf16"),
    C("convert", [bools(6)], {"dtype": DType.f32}, id="convert-bool-f32"),
    C("convert", [ints(6, lo=-2, hi=3)], {"dtype": DType.bool}, id="convert-i64-bool"),
]

_ARITH = ["add", "sub", "mul", "maximum", "minimum", "remainder", "fmod", "atan2"]
_NEG_INTS = [arr([-7, -7, 7, 7, -6, 6, 0, -1, 5], np.int64), arr([2, -2, 2, -2, 3, -3, 4, 3, -1], np.int64)]
_NEG_FLOATS = [
    arr([-7.5, -7.5, 7.5, 7.5, -6.0, 6.0, 0.0, -1.0, 5.0]),
    arr([2.0, -2.0, 2.0, -2.0, 3.0, -3.0, 4.0, 3.0, 0.0]),
]
BINARY = (
    [C(n, [f32(3, 4, seed=1), f32(3, 4, seed=2, lo=0.1)]) for n in _ARITH]
    + [C(n, [f32(3, 1, seed=1), f32(1, 4, seed=2, lo=0.1)], id=f"{n}-broadcast") for n in ["add", "mul", "atan2"]]
    + [C(n, [ints(3, 4, seed=1), ints(3, 4, seed=2, lo=1, hi=5)], id=f"{n}-int") for n in _ARITH[:7]]
    + [C(n, _NEG_INTS, id=f"{n}-neg-int") for n in ["remainder", "fmod"]]
    + [C(n, _NEG_FLOATS, id=f"{n}-neg-float") for n in ["remainder", "fmod"]]
    + [C(n, [arr([NAN, 1.0, NAN, -INF]), arr([1.0, NAN, NAN, 2.0])], id=f"{n}-nan") for n in ["maximum", "minimum"]]
    + [
        C("add", [f32(3, 4), arr(2.5)], id="add-0d-scalar"),
        C("mul", [ints(3, 4), arr(0.5)], id="mul-int-by-0d-float"),
        C("add", [ints(4, dtype=np.int32), ints(4)], id="add-i32-i64"),
        C("add", [f32(4).astype(BF16), f32(4, seed=3).astype(np.float16)], id="add-bf16-f16"),
        C("add", [f32(4, 4).astype(BF16), f32(4, 4, seed=3).astype(BF16)], id="add-bf16"),
        C("mul", [f32(4, 4).astype(np.float16), arr(3.1, np.float64)], id="mul-f16-0d-f64"),
        C("add", [bools(6), bools(6, seed=1)], id="add-bool"),
        C("pow", [f32(3, 4, lo=0.1), f32(3, 4, seed=2)]),
        C("pow", [f32(3, 4), arr(2.0)], id="pow-square"),
        C("pow", [ints(6, lo=0, hi=5), ints(6, lo=0, hi=4, seed=1)], id="pow-int"),
        C("pow", [f32(6, lo=0.1), arr(0.5)], id="pow-sqrt"),
    ]
    + [C("div", _NEG_FLOATS, {"rounding_mode": m}, id=f"div-float-{m}") for m in [None, "trunc", "floor"]]
    + [C("div", _NEG_INTS, {"rounding_mode": m}, id=f"div-int-{m}") for m in ["trunc", "floor"]]
    + [C("div", _NEG_INTS, id="div-int-true")]
    + [
        C(
            "div",
            [f32(5, scale=10).astype(BF16), f32(5, seed=1, lo=0.5).astype(BF16)],
            {"rounding_mode": "floor"},
            id="div-bf16-floor",
        )
    ]
    + [C(n, [ints(8, seed=1), ints(8, seed=2)]) for n in ["bitwise_and", "bitwise_or", "bitwise_xor"]]
    + [C(n, [bools(8, seed=1), bools(8, seed=2)], id=f"{n}-bool") for n in ["bitwise_and", "bitwise_or", "bitwise_xor"]]
    + [
        C(n, [f32(8, seed=1).round(), ints(8, lo=-1, hi=2, seed=2)])
        for n in ["logical_and", "logical_or", "logical_xor"]
    ]
    + [
        C(n, [ints(12, lo=-2, hi=2, seed=1), ints(12, lo=-2, hi=2, seed=2)])
        for n in ["eq", "ne", "lt", "le", "gt", "ge"]
    ]
    + [C(n, [arr([1.0, NAN, 2.0, -INF]), arr([1.0, NAN, NAN, -INF])], id=f"{n}-nan") for n in ["eq", "ne", "lt", "ge"]]
    + [C("lt", [ints(4, lo=2**24, hi=2**24 + 8), arr(16777217.0)], id="lt-int-vs-0d-float")]
    + [
        C("where", [bools(3, 4), f32(3, 4, seed=1), f32(1, 4, seed=2)]),
        C("where", [bools(3, 1), ints(3, 4), arr(0.5)], id="where-promote"),
    ]
)

_X = f32(2, 3, 4, seed=5)
REDUCE = (
    [C(n, [_X], {"dims": [1]}, id=f"{n}-dim1") for n in ["sum", "mean", "amax", "amin", "var", "prod"]]
    + [C(n, [_X], {"dims": [0, 2], "keepdim": True}, id=f"{n}-dims02-keep") for n in ["sum", "mean", "amax", "var"]]
    + [C(n, [_X], id=f"{n}-all") for n in ["sum", "mean", "amax", "amin", "var", "prod", "any", "all"]]
    + [
        C("var", [_X], {"dims": [2], "correction": 0}, id="var-biased"),
        C("var", [_X], {"dims": [2], "correction": 2.5}, id="var-correction-float"),
        C("sum", [ints(3, 4, dtype=np.int32)], {"dims": [1]}, id="sum-int32-to-i64"),
        C("sum", [bools(3, 4)], id="sum-bool"),
        C("prod", [ints(3, 4, lo=-3, hi=4)], {"dims": [1]}, id="prod-int"),
        C("sum", [_X], {"dims": [1], "dtype": DType.f64}, id="sum-dtype-f64"),
        C("mean", [ints(3, 4)], {"dims": [1], "dtype": DType.f32}, id="mean-int-dtype"),
        C("sum", [f32(8, 64).astype(BF16)], {"dims": [1]}, BF16_TOL, id="sum-bf16"),
        C("mean", [f32(8, 64).astype(np.float16)], {"dims": [1]}, F16_TOL, id="mean-f16"),
        C("amax", [arr([[1.0, NAN, 3.0], [1.0, 2.0, 3.0]])], {"dims": [1]}, id="amax-nan"),
        C("amin", [arr([[1.0, NAN, 3.0], [1.0, 2.0, -INF]])], {"dims": [1]}, id="amin-nan"),
        C("any", [f32(3, 4).round()], {"dims": [1]}, id="any-dim"),
        C("all", [ints(3, 4, lo=0, hi=3)], {"dims": [0], "keepdim": True}, id="all-dim-int"),
    ]
    + [C(n, [ints(3, 5, lo=0, hi=3)], {"dim": 1}, id=f"{n}-ties-first") for n in ["argmax", "argmin"]]
    + [C(n, [_X], {"dim": 2, "keepdim": True}, id=f"{n}-keep") for n in ["argmax", "argmin"]]
    + [C(n, [_X], id=f"{n}-flat") for n in ["argmax", "argmin"]]
    + [C(n, [_X], {"keepdim": True}, id=f"{n}-flat-keep") for n in ["argmax"]]
    + [
        C(n, [arr([[1.0, NAN, 3.0, NAN], [2.0, 2.0, 1.0, 1.0]])], {"dim": 1}, id=f"{n}-nan")
        for n in ["argmax", "argmin", "max_dim", "min_dim"]
    ]
    + [C(n, [ints(3, 5, lo=0, hi=3)], {"dim": 1}, id=f"{n}-ties") for n in ["max_dim", "min_dim"]]
    + [C(n, [_X], {"dim": 0, "keepdim": True}, id=f"{n}-keep") for n in ["max_dim", "min_dim"]]
    + [
        C("cumsum", [_X], {"dim": 2}),
        C("cumprod", [_X], {"dim": 1}),
        C("cumsum", [ints(3, 4, dtype=np.int32)], {"dim": 1}, id="cumsum-int32"),
        C("cumsum", [bools(3, 4)], {"dim": 0}, id="cumsum-bool"),
        C("cumprod", [ints(3, 4, lo=-3, hi=3)], {"dim": 1}, id="cumprod-int"),
        C("cumsum", [f32(64, scale=10).astype(BF16)], {"dim": 0}, id="cumsum-bf16"),
        C("cumsum", [_X], {"dim": 1, "dtype": DType.f64}, id="cumsum-dtype"),
    ]
    + [C(n, [f32(3, 7, scale=5)], {"dim": 1}) for n in ["softmax", "log_softmax"]]
    + [
        C(n, [arr([[1000.0, 1001.0, -INF], [-INF, -INF, -INF]])], {"dim": 1}, id=f"{n}-extreme")
        for n in ["softmax", "log_softmax"]
    ]
    # torch's bf16 softmax along a non-last dim rounds its exp terms to bf16 before summing: 1-ulp differences.
    + [C(n, [f32(2, 5, 3).astype(BF16)], {"dim": 1}, BF16_TOL, id=f"{n}-bf16") for n in ["softmax", "log_softmax"]]
    + [C(n, [f32(2, 3, 5).astype(BF16)], {"dim": 2}, BF16_TOL, id=f"{n}-bf16-last") for n in ["softmax", "log_softmax"]]
)
