"""Reduction and scan kernels. ``dims = []`` reduces every dim, as in ATen.

Accumulation: f16/bf16 reduce in f32 and round once (torch's acc type on CPU); integers and bools sum
in i64; cumsum/cumprod of f32 accumulate in f64, because torch's CPU scan uses acc_type<float> = double.
"""

from __future__ import annotations

import numpy as np

from .base import F64, I64, attr, cast, compute_dtype, finish, kernel, out_dtype, up


def _axes(op, x) -> tuple[int, ...]:
    dims = attr(op, "dims")
    if x.ndim == 0:  # torch takes dim 0 (or -1) of a 0-d tensor: there is nothing to reduce
        return ()
    return tuple(range(x.ndim)) if not dims else tuple(sorted(d % x.ndim for d in dims))


def _keep(op) -> bool:
    return attr(op, "keepdim")


def _acc_input(op, x):
    """``x`` in the dtype a sum/prod/mean accumulates in: the ``dtype`` attribute (torch casts the
    input first) or the result dtype, widened to f32 for f16/bf16."""
    return cast(x, compute_dtype(out_dtype(op)))


@kernel("sum")
def _sum(op, x):
    return finish(op, np.sum(_acc_input(op, x), axis=_axes(op, x), keepdims=_keep(op)))


@kernel("prod")
def _prod(op, x):
    return finish(op, np.prod(_acc_input(op, x), axis=_axes(op, x), keepdims=_keep(op)))


@kernel("mean")
def _mean(op, x):
    return finish(op, np.mean(_acc_input(op, x), axis=_axes(op, x), keepdims=_keep(op)))


@kernel("amax")
def _amax(op, x):
    return finish(op, np.amax(x, axis=_axes(op, x), keepdims=_keep(op)))  # NaN propagates


@kernel("amin")
def _amin(op, x):
    return finish(op, np.amin(x, axis=_axes(op, x), keepdims=_keep(op)))


@kernel("any")
def _any(op, x):
    return np.asarray(np.any(x.astype(bool, copy=False), axis=_axes(op, x), keepdims=_keep(op)))


@kernel("all")
def _all(op, x):
    return np.asarray(np.all(x.astype(bool, copy=False), axis=_axes(op, x), keepdims=_keep(op)))


@kernel("var")
def _var(op, x):
    # Two-pass variance with ddof = correction; N - correction <= 0 gives inf/NaN, as in torch.
    v = np.var(up(x), axis=_axes(op, x), ddof=attr(op, "correction"), keepdims=_keep(op))
    return finish(op, v)


def _arg(fn):
    def k(op, x):
        d = attr(op, "dim")
        if d is None or x.ndim == 0:  # index into the flattened tensor
            return finish(op, np.asarray(fn(up(x))).reshape((1,) * x.ndim if _keep(op) else ()))
        return finish(op, fn(up(x), axis=d % x.ndim, keepdims=_keep(op)))

    return k


# np.argmax/argmin return the first occurrence, and the first NaN when there is one: torch's rule.
kernel("argmax")(_arg(np.argmax))
kernel("argmin")(_arg(np.argmin))


def _minmax_dim(fn):
    def k(op, x):
        d = attr(op, "dim") % max(x.ndim, 1)
        if x.ndim == 0:
            return x, np.zeros((), I64)
        idx = fn(up(x), axis=d, keepdims=True)
        vals = np.take_along_axis(x, idx, axis=d)
        if not _keep(op):
            idx, vals = idx.squeeze(d), vals.squeeze(d)
        return finish(op, vals, 0), finish(op, idx, 1)

    return k


kernel("max_dim")(_minmax_dim(np.argmax))
kernel("min_dim")(_minmax_dim(np.argmin))


def _scan_dtype(op) -> np.dtype:
    dt = out_dtype(op)
    return F64 if dt == np.float32 else compute_dtype(dt)


@kernel("cumsum")
def _cumsum(op, x):
    d = attr(op, "dim") % max(x.ndim, 1)
    return finish(op, np.cumsum(cast(x, _scan_dtype(op)), axis=d if x.ndim else None).reshape(x.shape))


@kernel("cumprod")
def _cumprod(op, x):
    d = attr(op, "dim") % max(x.ndim, 1)
    return finish(op, np.cumprod(cast(x, _scan_dtype(op)), axis=d if x.ndim else None).reshape(x.shape))


def _shifted(op, x):
    d = attr(op, "dim") % max(x.ndim, 1)
    v = up(x)
    # Subtracting the max keeps exp from overflowing; a row of -inf gives NaN, as in torch.
    return v - np.amax(v, axis=d, keepdims=True), d


@kernel("softmax")
def _softmax(op, x):
    if x.ndim == 0:
        return finish(op, np.ones((), out_dtype(op)))
    z, d = _shifted(op, x)
    e = np.exp(z)
    return finish(op, e / np.sum(e, axis=d, keepdims=True))


@kernel("log_softmax")
def _log_softmax(op, x):
    if x.ndim == 0:
        return finish(op, np.zeros((), out_dtype(op)))
    z, d = _shifted(op, x)
    return finish(op, z - np.log(np.sum(np.exp(z), axis=d, keepdims=True)))


def _cum_extreme(better):
    """torch's loop: take x[i] when it is NaN, or when the running value is not NaN and x[i] is at least as
    good (so ties move the index to the latest)."""

    def k(op, x):
        if x.ndim == 0:
            return x, np.zeros((), I64)
        d = attr(op, "dim") % x.ndim
        v = np.moveaxis(up(x), d, -1)
        acc = (np.maximum if better is np.greater_equal else np.minimum).accumulate(v, axis=-1)  # NaN propagates
        prev = np.concatenate([v[..., :1], acc[..., :-1]], axis=-1)
        take = better(v, prev) & ~np.isnan(prev) if v.dtype.kind == "f" else better(v, prev)
        if v.dtype.kind == "f":
            take |= np.isnan(v)
        take[..., 0] = True
        pos = np.where(take, np.arange(v.shape[-1]), 0)
        idx = np.maximum.accumulate(pos, axis=-1) if v.shape[-1] else pos
        vals = np.take_along_axis(v, idx, axis=-1)
        return finish(op, np.moveaxis(vals, -1, d), 0), finish(op, np.moveaxis(idx, -1, d), 1)

    return k


kernel("cummax")(_cum_extreme(np.greater_equal))
kernel("cummin")(_cum_extreme(np.less_equal))
