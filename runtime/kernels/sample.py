"""grid_sampler_2d (``F.grid_sample`` on 4-D input): read the input at arbitrary points.

The source coordinates are computed in f32 in the order torch's vectorized CPU kernel computes them
(unnormalize, then the padding mode's clip or reflection, then floor or round), so that points lying on a
pixel boundary or halfway between two pixels pick the same pixels as torch; the interpolation itself is
summed in f64 from those f32 weights and rounded once.
"""

from __future__ import annotations

import numpy as np

from .base import F32, F64, attr, finish, kernel, up

_ONE, _HALF, _ZERO = np.float32(1), np.float32(0.5), np.float32(0)
_A = np.float32(-0.75)  # torch's bicubic convolution constant


def _unnormalize(g: np.ndarray, size: int, align_corners: bool) -> np.ndarray:
    """Grid value in [-1, 1] -> pixel coordinate."""
    if align_corners:
        return (g + _ONE) * np.float32((size - 1) / 2)
    return (g + _ONE) * np.float32(size / 2) - _HALF


def _reflect(c: np.ndarray, size: int, align_corners: bool) -> np.ndarray:
    """Reflect at the edges (the pixel centers with align_corners, else the image's outer edges)."""
    if align_corners:
        span = np.float32(2 * (size - 1))
        if span == 0:
            return np.zeros_like(c)
        a = np.abs(c)
        extra = a - np.trunc(a / span) * span
        return np.minimum(extra, span - extra)
    if size <= 0:
        return np.zeros_like(c)
    span = np.float32(2 * size)
    a = np.abs(c + _HALF)
    extra = a - np.trunc(a / span) * span
    return np.minimum(extra, span - extra) - _HALF


def _pad_coordinates(c: np.ndarray, size: int, padding: str, align_corners: bool) -> np.ndarray:
    """A coordinate as the padding mode reads it: unchanged (zeros: out of range reads 0), clipped into
    [0, size - 1] (border), reflected and then clipped (reflection)."""
    if padding == "zeros":
        return c
    if padding == "reflection":
        c = _reflect(c, size, align_corners)
    return np.minimum(np.float32(size - 1), np.maximum(c, _ZERO))


class _Reader:
    """Gathers x[n, :, iy, ix] for integer coordinate arrays of shape [N, P]; out of range reads 0."""

    def __init__(self, x: np.ndarray):
        self.n, self.c, self.h, self.w = x.shape
        self.flat = x.reshape(self.n, self.c, self.h * self.w)
        self.rows = np.arange(self.n)[:, None, None]

    def __call__(self, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
        inside = (ix > -1) & (ix < self.w) & (iy > -1) & (iy < self.h)  # false for NaN too
        pos = np.where(inside, np.where(inside, iy, 0) * self.w + np.where(inside, ix, 0), 0).astype(np.int64)
        if self.h * self.w == 0:
            return np.zeros((self.n, self.c, pos.shape[1]), self.flat.dtype)
        vals = self.flat[self.rows, np.arange(self.c)[None, :, None], pos[:, None, :]]
        return np.where(inside[:, None, :], vals, 0)


def _bilinear(read: _Reader, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x0, y0 = np.floor(x), np.floor(y)
    w, n = x - x0, y - y0  # the distances to the west and north taps
    e, s = _ONE - w, _ONE - n
    x0, y0 = _as_index(x0), _as_index(y0)
    taps = ((y0, x0, s * e), (y0, x0 + 1, s * w), (y0 + 1, x0, n * e), (y0 + 1, x0 + 1, n * w))
    out = 0.0
    for iy, ix, weight in taps:
        out = out + read(iy, ix).astype(F64) * weight[:, None, :].astype(F64)
    return out


def _nearest(read: _Reader, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return read(_as_index(np.rint(y)), _as_index(np.rint(x)))  # rint: half to even, as torch's round


def _cubic_weights(t: np.ndarray) -> list[np.ndarray]:
    """The four cubic-convolution weights of taps -1, 0, 1, 2 at fraction t, in torch's f32 order."""
    a = _A

    def outer(z):  # 1 < |z| < 2
        return ((a * z - np.float32(5) * a) * z + np.float32(8) * a) * z - np.float32(4) * a

    def inner(z):  # |z| <= 1
        return ((a + np.float32(2)) * z - (a + np.float32(3))) * z * z + _ONE

    return [outer(t + _ONE), inner(t), inner(_ONE - t), outer(np.float32(2) - t)]


def _bicubic(read: _Reader, x: np.ndarray, y: np.ndarray, padding: str, align_corners: bool) -> np.ndarray:
    x0, y0 = np.floor(x), np.floor(y)
    cx, cy = _cubic_weights(x - x0), _cubic_weights(y - y0)
    out = 0.0
    for j in range(4):
        ty = _as_index(_pad_coordinates(y0 + np.float32(j - 1), read.h, padding, align_corners))
        row = 0.0
        for i in range(4):
            tx = _as_index(_pad_coordinates(x0 + np.float32(i - 1), read.w, padding, align_corners))
            row = row + read(ty, tx).astype(F64) * cx[i][:, None, :].astype(F64)
        out = out + row * cy[j][:, None, :].astype(F64)
    return out


def _as_index(c: np.ndarray) -> np.ndarray:
    """Integer pixel coordinates; NaN and values far outside become -1 (read as out of range)."""
    ok = np.isfinite(c) & (np.abs(c) < 2**31)
    return np.where(ok, np.where(ok, c, 0).astype(np.int64), -1)


@kernel("grid_sampler_2d")
def _grid_sampler_2d(op, x, grid):
    mode, padding, ac = attr(op, "interpolation"), attr(op, "padding_mode"), bool(attr(op, "align_corners"))
    n, _, h, w = x.shape
    g = up(grid).astype(F32).reshape(n, grid.shape[1] * grid.shape[2], 2)
    gx, gy = g[..., 0], g[..., 1]
    read = _Reader(up(x))
    if mode == "bicubic":  # the padding applies to each tap, not to the sampled point
        y = _bicubic(read, _unnormalize(gx, w, ac), _unnormalize(gy, h, ac), padding, ac)
    else:
        px = _pad_coordinates(_unnormalize(gx, w, ac), w, padding, ac)
        py = _pad_coordinates(_unnormalize(gy, h, ac), h, padding, ac)
        y = _nearest(read, px, py) if mode == "nearest" else _bilinear(read, px, py)
    return finish(op, np.asarray(y).reshape(op.results[0].type.shape))
