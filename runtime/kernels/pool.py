"""2-d and 3-d pooling kernels: max (with indices), average, adaptive average.

Windows come from sliding_window_view over a padded copy of the input, so every output pixel is
computed at once. The output size is taken from the op's result type (the op table's rule, which
follows ATen's ceil_mode rule), and the input is padded on the right far enough for ceil_mode windows.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import F64, attr, finish, kernel, up


def _params(op, nsp: int = 2, dilation: bool = True):
    def full(v):
        v = list(v)
        return v * nsp if len(v) == 1 else v

    k = full(attr(op, "kernel_size"))
    s = full(attr(op, "stride")) or k
    p = full(attr(op, "padding"))
    d = full(attr(op, "dilation")) if dilation else [1] * nsp
    return k, s, p, d


def _windows(x, out_sp, k, s, p, d, fill):
    """[..., *out_sp, prod(k)]: the (dilated) window of every output position over the last len(k) dims,
    padding read as ``fill``."""
    nsp = len(k)
    eff = [dd * (kk - 1) + 1 for dd, kk in zip(d, k)]
    right = [max(0, (o - 1) * ss + e - n - pp) for o, ss, e, n, pp in zip(out_sp, s, eff, x.shape[-nsp:], p)]
    widths = [(0, 0)] * (x.ndim - nsp) + [(pp, r) for pp, r in zip(p, right)]
    xp = np.pad(x, widths, constant_values=fill) if any(p) or any(right) else x
    win = sliding_window_view(xp, eff, axis=tuple(range(-nsp, 0)))
    picks = tuple(slice(0, (o - 1) * ss + 1, ss) for o, ss in zip(out_sp, s)) + tuple(slice(None, None, dd) for dd in d)
    win = win[(Ellipsis, *picks)]
    return win.reshape(win.shape[:-nsp] + (math.prod(k),))


def _max_pool(op, x, nsp: int):
    k, s, p, d = _params(op, nsp)
    out_sp = op.results[0].type.shape[-nsp:]
    v = up(x)
    fill = -np.inf if v.dtype.kind == "f" else np.iinfo(v.dtype).min
    flat = _windows(v, out_sp, k, s, p, d, fill)
    arg = np.argmax(flat, axis=-1)
    nan = np.isnan(flat) if v.dtype.kind == "f" else None
    if nan is not None and nan.any():
        # torch's loop takes a NaN whenever it sees one, so the *last* NaN of a window wins.
        last = flat.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
        arg = np.where(nan.any(axis=-1), last, arg)
    vals = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    idx = _flat_index(arg, vals, x.shape[-nsp:], out_sp, k, s, p, d, fill)
    return finish(op, vals, 0), finish(op, idx, 1)


@kernel("max_pool2d")
def _max_pool2d(op, x):
    return _max_pool(op, x, 2)


@kernel("max_pool3d")
def _max_pool3d(op, x):
    return _max_pool(op, x, 3)


def _flat_index(arg, vals, in_sp, out_sp, k, s, p, d, fill):
    """The flat position (h * W + w, or (t * H + h) * W + w) in the unpadded input of each window's chosen
    tap."""
    nsp = len(k)
    taps = np.unravel_index(arg, k)
    idx = np.zeros(arg.shape, np.int64)
    first = np.zeros(arg.shape[-nsp:], np.int64)
    for i in range(nsp):
        shape = [1] * nsp
        shape[i] = out_sp[i]
        start = (np.arange(out_sp[i]) * s[i] - p[i]).reshape(shape)
        idx = idx * in_sp[i] + start + taps[i] * d[i]
        # A window whose max is the padding value itself (every real element equals it too): torch keeps
        # its initial index, the window's first in-bounds element, not a padding position.
        first = first * in_sp[i] + np.where(start < 0, start + (-start + d[i] - 1) // d[i] * d[i], start)
    return np.where(vals == fill, first, idx)


def _avg_pool(op, x, nsp: int):
    k, s, p, _ = _params(op, nsp, dilation=False)
    out_sp = op.results[0].type.shape[-nsp:]
    total = _windows(up(x), out_sp, k, s, p, [1] * nsp, 0).sum(axis=-1)
    override = attr(op, "divisor_override")
    if override:
        return finish(op, total / override)
    include_pad = attr(op, "count_include_pad")
    div = np.ones((1,) * nsp, np.int64)
    for i in range(nsp):
        shape = [1] * nsp
        shape[i] = out_sp[i]
        div = div * _divisor(out_sp[i], x.shape[i - nsp], k[i], s[i], p[i], include_pad).reshape(shape)
    return finish(op, total / div.astype(total.dtype))


@kernel("avg_pool2d")
def _avg_pool2d(op, x):
    return _avg_pool(op, x, 2)


@kernel("avg_pool3d")
def _avg_pool3d(op, x):
    return _avg_pool(op, x, 3)


def _divisor(n_out, n_in, k, s, p, include_pad):
    """Window sizes along one dim, as ATen counts them: padding is counted (if asked) only up to
    n_in + p, never the extra right padding a ceil_mode window hangs over."""
    start = np.arange(n_out) * s - p
    end = np.minimum(start + k, n_in + p)
    if include_pad:
        return end - start
    return np.minimum(end, n_in) - np.maximum(start, 0)


def _adaptive_matrix(n_out: int, n_in: int) -> np.ndarray:
    """[n_out, n_in] averaging matrix over the windows [floor(i*n/o), ceil((i+1)*n/o))."""
    i = np.arange(n_out)
    start = (i * n_in) // n_out
    end = -((-(i + 1) * n_in) // n_out)
    j = np.arange(n_in)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return inside / (end - start)[:, None]


def _adaptive_avg(op, x, nsp: int):
    """Separable: one averaging matrix per spatial dim, applied as a small matmul in f64 (more exact than
    torch's f32 sum). Non-finite inputs are averaged by counting: a window with a NaN, or with both +inf and
    -inf, is NaN; one with infinities of one sign is that infinity (a matmul would smear 0 * inf = NaN over
    every window)."""
    sizes = attr(op, "output_size")
    mats = [_adaptive_matrix(o, n) for o, n in zip(sizes, x.shape[-nsp:])]
    v = x.astype(F64)
    finite = np.isfinite(v)
    if finite.all():
        return finish(op, _separable(mats, v))
    y = _separable(mats, np.where(finite, v, 0.0))
    nan = _separable(mats, np.isnan(v).astype(F64)) > 0
    pos = _separable(mats, (v == np.inf).astype(F64)) > 0
    neg = _separable(mats, (v == -np.inf).astype(F64)) > 0
    y = np.where(pos, np.inf, np.where(neg, -np.inf, y))
    return finish(op, np.where(nan | (pos & neg), np.nan, y))


def _separable(mats: list[np.ndarray], v: np.ndarray) -> np.ndarray:
    for i, m in enumerate(mats):
        axis = i - len(mats)
        v = np.moveaxis(np.matmul(m, np.moveaxis(v, axis, -2)), -2, axis)
    return v


@kernel("adaptive_avg_pool2d")
def _adaptive_avg_pool2d(op, x):
    return _adaptive_avg(op, x, 2)


@kernel("adaptive_avg_pool3d")
def _adaptive_avg_pool3d(op, x):
    return _adaptive_avg(op, x, 3)
