"""Elementwise kernels: unary math, activations, binary arithmetic, comparisons, where, casts.

Operands are cast to the op's result dtype (its compute dtype for f16/bf16) *before* computing, as
PyTorch's TensorIterator does: ``f32 tensor + 0-d f64 constant`` computes in f32, not in f64 and then
rounds. Comparisons cast both sides to their promoted dtype for the same reason.
"""

from __future__ import annotations

import math

import numpy as np

from wafercc.ir import result_dtype

from .base import F64, attr, cast, compute_dtype, finish, kernel, np_dtype, out_dtype, up
from .special import digamma, erf, lgamma, polygamma

# -- unary, same dtype -------------------------------------------------------------------------


def _same_unary(fn, ints_identity: bool = False):
    def k(op, x):
        if ints_identity and x.dtype.kind in "iub":  # floor(3) == 3: no float round trip for int64
            return x
        return finish(op, fn(up(x)))

    return k


for _name, _fn, _ident in [
    ("neg", np.negative, False),
    ("abs", np.abs, False),
    ("floor", np.floor, True),
    ("ceil", np.ceil, True),
    ("trunc", np.trunc, True),
    ("round", np.round, True),  # np.round: half to even, like torch
    ("relu", lambda x: np.maximum(x, x.dtype.type(0)), False),
    ("bitwise_not", np.invert, False),
]:
    kernel(_name)(_same_unary(_fn, _ident))


@kernel("sign")
def _sign(op, x):
    if x.dtype == np.bool_:
        return x
    v = up(x)
    # torch computes (0 < x) - (x < 0): NaN gives 0 (np.sign would give NaN).
    return finish(op, (v > 0).astype(v.dtype) - (v < 0).astype(v.dtype))


@kernel("clone", "detach")
def _identity(op, x):
    return x  # kernels never write into their arguments, so sharing the array is safe


# -- unary, floating result ------------------------------------------------------------------


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _hardsigmoid(x):  # torch: min(max(x + 3, 0), 6) / 6
    return np.minimum(np.maximum(x + 3, 0), 6) / 6


_FLOAT_UNARY = {
    "exp": np.exp,
    "exp2": np.exp2,
    "expm1": np.expm1,
    "log": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "log1p": np.log1p,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: 1 / np.sqrt(x),
    "reciprocal": lambda x: 1 / x,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "acosh": np.arccosh,
    "asinh": np.arcsinh,
    "atanh": np.arctanh,
    "lgamma": lgamma,
    "digamma": digamma,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "silu": lambda x: x * _sigmoid(x),
    "hardsigmoid": _hardsigmoid,
    "hardswish": lambda x: x * np.minimum(np.maximum(x + 3, 0), 6) / 6,
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    # erf is computed in f64 (see special.py), then rounded to the result dtype.
    "erf": erf,
}


def _float_unary(fn):
    def k(op, x):
        return finish(op, fn(cast(x, compute_dtype(out_dtype(op)))))

    return k


for _name, _fn in _FLOAT_UNARY.items():
    kernel(_name)(_float_unary(_fn))


@kernel("polygamma")
def _polygamma(op, x):
    n = attr(op, "n")
    v = cast(x, F64)
    return finish(op, digamma(v) if n == 0 else polygamma(n, v))


@kernel("isnan")
def _isnan(op, x):
    return np.isnan(x) if x.dtype.kind == "f" or x.dtype.kind == "V" else np.zeros(x.shape, bool)


@kernel("isinf")
def _isinf(op, x):
    return np.isinf(x) if x.dtype.kind == "f" or x.dtype.kind == "V" else np.zeros(x.shape, bool)


@kernel("signbit")
def _signbit(op, x):
    return np.signbit(up(x)) if x.dtype.kind in "fV" else (x < 0) if x.dtype.kind == "i" else np.zeros(x.shape, bool)


@kernel("logical_not")
def _logical_not(op, x):
    return ~x.astype(bool)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@kernel("gelu")
def _gelu(op, x):
    if attr(op, "approximate") == "tanh":
        # torch: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), in the compute dtype.
        v = up(x)
        inner = _SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)
        return finish(op, 0.5 * v * (1 + np.tanh(inner)))
    v = x.astype(F64)  # exact gelu: erf in f64, one rounding at the end
    return finish(op, v * 0.5 * (1.0 + erf(v * (1 / math.sqrt(2.0)))))


@kernel("leaky_relu")
def _leaky_relu(op, x):
    v = up(x)
    return finish(op, np.where(v > 0, v, v * attr(op, "negative_slope")))


@kernel("elu")
def _elu(op, x):
    alpha, scale, iscale = (attr(op, k) for k in ("alpha", "scale", "input_scale"))
    v = up(x)
    neg = np.expm1(np.minimum(v, 0) * iscale) * (alpha * scale)  # minimum: no overflow on the x > 0 side
    return finish(op, np.where(v > 0, v * scale, neg))


@kernel("softplus")
def _softplus(op, x):
    beta, threshold = attr(op, "beta"), attr(op, "threshold")
    v = up(x)
    bx = v * beta
    soft = np.log1p(np.exp(np.minimum(bx, threshold))) / beta  # minimum: exp of the linear side is unused
    return finish(op, np.where(bx > threshold, v, soft))


@kernel("clamp")
def _clamp(op, x):
    ct = compute_dtype(out_dtype(op))
    y = cast(x, ct)
    lo, hi = attr(op, "min"), attr(op, "max")
    # maximum then minimum: NaN propagates and min > max gives max, as torch.clamp does.
    if lo is not None:
        y = np.maximum(y, np.asarray(lo).astype(ct))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi).astype(ct))
    return finish(op, y)


@kernel("convert")
def _convert(op, x):
    return cast(x, out_dtype(op))


# -- binary ------------------------------------------------------------------------------------


def _binary(fn):
    def k(op, a, b):
        ct = compute_dtype(out_dtype(op))
        return finish(op, fn(cast(a, ct), cast(b, ct)))

    return k


def _int_divisor(b):
    # numpy gives 0 for an integer division by zero; torch raises, and so do we.
    if b.dtype.kind in "iub" and not np.all(b):
        raise ZeroDivisionError("integer division by zero")
    return b


_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "remainder": lambda a, b: np.remainder(a, _int_divisor(b)),  # Python's %: the sign of b, ints and floats
    "fmod": lambda a, b: np.fmod(a, _int_divisor(b)),  # C's fmod: the sign of a
    "atan2": np.arctan2,
    "bitwise_and": np.bitwise_and,
    "bitwise_or": np.bitwise_or,
    "bitwise_xor": np.bitwise_xor,
}
for _name, _fn in _BINARY.items():
    kernel(_name)(_binary(_fn))


# torch's pow(tensor, scalar) special-cases these exponents (and they are ~200x faster than powf).
_POW_FAST = {
    2.0: lambda x: x * x,
    3.0: lambda x: x * x * x,
    0.5: np.sqrt,
    -0.5: lambda x: 1 / np.sqrt(x),
    -1.0: lambda x: 1 / x,
    -2.0: lambda x: 1 / (x * x),
}


@kernel("pow")
def _pow(op, a, b):
    ct = compute_dtype(out_dtype(op))
    a, b = cast(a, ct), cast(b, ct)
    fast = _POW_FAST.get(float(b.reshape(-1)[0])) if b.size == 1 and ct.kind == "f" else None
    if fast is not None:
        return finish(op, np.broadcast_to(fast(a), op.results[0].type.shape))
    return finish(op, np.power(a, b))


def _trunc_div_int(a, b):
    q = np.floor_divide(a, b)
    # Floor and trunc differ by one where the division is inexact and the signs differ.
    fix = (q * b != a) & ((a < 0) != (b < 0))
    return q + fix.astype(q.dtype)


@kernel("div")
def _div(op, a, b):
    ct = compute_dtype(out_dtype(op))
    a, b = cast(a, ct), cast(b, ct)
    mode = attr(op, "rounding_mode")
    if mode is None:
        return finish(op, np.true_divide(a, b))
    if ct.kind != "f":
        _int_divisor(b)
    if mode == "floor":
        # numpy's float floor_divide is CPython's divmod algorithm, which is also torch's div_floor.
        return finish(op, np.floor_divide(a, b))
    if ct.kind == "f":
        return finish(op, np.trunc(a / b))
    return finish(op, _trunc_div_int(a, b))


def _truth(x):
    return x if x.dtype == np.bool_ else x.astype(bool)


for _name, _fn in [("logical_and", np.logical_and), ("logical_or", np.logical_or), ("logical_xor", np.logical_xor)]:
    kernel(_name)(lambda op, a, b, _fn=_fn: _fn(_truth(a), _truth(b)))


def _compare(fn):
    def k(op, a, b):
        ct = compute_dtype(np_dtype(result_dtype([v.type for v in op.operands])))
        return np.asarray(fn(cast(a, ct), cast(b, ct)))

    return k


for _name, _fn in [
    ("eq", np.equal),
    ("ne", np.not_equal),
    ("lt", np.less),
    ("le", np.less_equal),
    ("gt", np.greater),
    ("ge", np.greater_equal),
]:
    kernel(_name)(_compare(_fn))


@kernel("where")
def _where(op, cond, a, b):
    dt = out_dtype(op)
    return finish(op, np.where(cond, cast(a, dt), cast(b, dt)))


class CheckFailed(AssertionError):
    """A run-time assertion of the model failed (the interpreter names the op and its source line)."""


@kernel("check")
def _check(op, cond):
    if not np.all(cond):
        raise CheckFailed(attr(op, "message") or "assertion failed")
    return cond
