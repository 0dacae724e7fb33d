"""2-d pooling kernels: max (with indices), average, adaptive average.

Windows come from sliding_window_view over a padded copy of the input, so every output pixel is
computed at once. The output size is taken from the op's result type (the op table's rule, which
follows ATen's ceil_mode rule), and the input is padded on the right far enough for ceil_mode windows.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import F64, attr, finish, kernel, up


def _params(op, dilation: bool = True):
    k = list(attr(op, "kernel_size"))
    k = k * 2 if len(k) == 1 else k
    s = list(attr(op, "stride")) or k
    s = s * 2 if len(s) == 1 else s
    p = list(attr(op, "padding"))
    p = p * 2 if len(p) == 1 else p
    d = list(attr(op, "dilation")) if dilation else [1]
    d = d * 2 if len(d) == 1 else d
    return k, s, p, d


def _windows(x, out_hw, k, s, p, d, fill):
    """[..., OH, OW, kh*kw]: the (dilated) window of every output pixel, padding read as ``fill``."""
    eff = [dd * (kk - 1) + 1 for dd, kk in zip(d, k)]
    right = [max(0, (o - 1) * ss + e - n - pp) for o, ss, e, n, pp in zip(out_hw, s, eff, x.shape[-2:], p)]
    widths = [(0, 0)] * (x.ndim - 2) + [(p[0], right[0]), (p[1], right[1])]
    xp = np.pad(x, widths, constant_values=fill) if any(p) or any(right) else x
    win = sliding_window_view(xp, eff, axis=(-2, -1))
    win = win[..., : (out_hw[0] - 1) * s[0] + 1 : s[0], : (out_hw[1] - 1) * s[1] + 1 : s[1], :: d[0], :: d[1]]
    return win.reshape(win.shape[:-2] + (k[0] * k[1],))


@kernel("max_pool2d")
def _max_pool2d(op, x):
    k, s, p, d = _params(op)
    out_hw = op.results[0].type.shape[-2:]
    v = up(x)
    fill = -np.inf if v.dtype.kind == "f" else np.iinfo(v.dtype).min
    flat = _windows(v, out_hw, k, s, p, d, fill)
    arg = np.argmax(flat, axis=-1)
    nan = np.isnan(flat) if v.dtype.kind == "f" else None
    if nan is not None and nan.any():
        # torch's loop takes a NaN whenever it sees one, so the *last* NaN of a window wins.
        last = flat.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
        arg = np.where(nan.any(axis=-1), last, arg)
    vals = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    return finish(op, vals, 0), finish(op, _flat_index(arg, vals, x.shape[-1], out_hw, k, s, p, d, fill), 1)


def _flat_index(arg, vals, width, out_hw, k, s, p, d, fill):
    """h * W + w in the unpadded input plane for each window's chosen tap."""
    oh = np.arange(out_hw[0])[:, None]
    ow = np.arange(out_hw[1])[None, :]
    h0, w0 = oh * s[0] - p[0], ow * s[1] - p[1]
    ti, tj = np.divmod(arg, k[1])
    idx = (h0 + ti * d[0]) * width + (w0 + tj * d[1])
    # A window whose max is the padding value itself (every real element equals it too): torch keeps its
    # initial index, the window's first in-bounds element, not a padding position.
    fh = np.where(h0 < 0, h0 + (-h0 + d[0] - 1) // d[0] * d[0], h0)
    fw = np.where(w0 < 0, w0 + (-w0 + d[1] - 1) // d[1] * d[1], w0)
    return np.where(vals == fill, fh * width + fw, idx)


@kernel("avg_pool2d")
def _avg_pool2d(op, x):
    k, s, p, _ = _params(op, dilation=False)
    out_hw = op.results[0].type.shape[-2:]
    total = _windows(up(x), out_hw, k, s, p, [1, 1], 0).sum(axis=-1)
    override = attr(op, "divisor_override")
    if override:
        return finish(op, total / override)
    include_pad = attr(op, "count_include_pad")
    dh = _divisor(out_hw[0], x.shape[-2], k[0], s[0], p[0], include_pad)
    dw = _divisor(out_hw[1], x.shape[-1], k[1], s[1], p[1], include_pad)
    return finish(op, total / (dh[:, None] * dw[None, :]).astype(total.dtype))


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


@kernel("adaptive_avg_pool2d")
def _adaptive_avg_pool2d(op, x):
    oh, ow = attr(op, "output_size")
    ah = _adaptive_matrix(oh, x.shape[-2])
    aw = _adaptive_matrix(ow, x.shape[-1])
    # Separable: average rows then columns, as two small matmuls in f64 (more exact than torch's f32 sum).
    return finish(op, ah @ x.astype(F64) @ aw.T)
