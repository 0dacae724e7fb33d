"""Neural-network kernels: matrix products, normalization, embedding, nearest upsampling.

Convolution and pooling live in conv.py and pool.py (the op table keeps them in its nn family).
f32 matrix products run in f32 (np.matmul -> BLAS sgemm, like torch); f16/bf16 ones are computed in
f32 and rounded once, which is what torch's CPU kernels do for reduced precision.
"""

from __future__ import annotations

import numpy as np

from ..blas import blas_threads
from .base import F32, attr, finish, kernel, up


@kernel("mm", "bmm")
def _matmul(op, a, b):
    with blas_threads():  # one BLAS thread, as in plan mode (runtime/blas.py)
        return finish(op, np.matmul(up(a), up(b)))


@kernel("addmm")
def _addmm(op, bias, a, b):
    beta, alpha = attr(op, "beta"), attr(op, "alpha")
    with blas_threads():
        y = np.matmul(up(a), up(b))
    if alpha != 1:
        y = y * alpha
    if beta == 0:  # torch ignores the bias entirely (NaN/inf in it do not propagate)
        return finish(op, y)
    return finish(op, y + (up(bias) if beta == 1 else up(bias) * beta))


@kernel("embedding")
def _embedding(op, weight, indices):
    # padding_idx only matters for gradients; the forward pass is a plain row gather.
    return np.take(weight, indices, axis=0)


def _affine(y, weight, bias, shape):
    if weight is not None:
        y = y * up(weight).reshape(shape)
    if bias is not None:
        y = y + up(bias).reshape(shape)
    return y


@kernel("layer_norm")
def _layer_norm(op, x, weight=None, bias=None):
    k = len(attr(op, "normalized_shape"))
    axes = tuple(range(x.ndim - k, x.ndim))
    v = up(x)
    mean = np.mean(v, axis=axes, keepdims=True)
    centered = v - mean
    var = np.mean(centered * centered, axis=axes, keepdims=True)  # biased, as torch
    rstd = 1 / np.sqrt(var + attr(op, "eps"))
    y = _affine(centered * rstd, weight, bias, x.shape[x.ndim - k :])
    return finish(op, y, 0), finish(op, mean, 1), finish(op, rstd, 2)


@kernel("batch_norm")
def _batch_norm(op, x, mean, var, weight=None, bias=None):
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    # torch's CPU inference kernel: alpha = invstd * weight, beta = bias - mean * alpha, y = x * alpha + beta.
    alpha = 1 / np.sqrt(up(var) + attr(op, "eps"))
    if weight is not None:
        alpha = alpha * up(weight)
    beta = -up(mean) * alpha
    if bias is not None:
        beta = beta + up(bias)
    return finish(op, up(x) * alpha.reshape(shape) + beta.reshape(shape))


@kernel("group_norm")
def _group_norm(op, x, weight=None, bias=None):
    n, c, g = x.shape[0], x.shape[1], attr(op, "groups")
    v = up(x).reshape(n, g, -1)
    mean = np.mean(v, axis=2, keepdims=True)
    centered = v - mean
    rstd = 1 / np.sqrt(np.mean(centered * centered, axis=2, keepdims=True) + attr(op, "eps"))
    y = (centered * rstd).reshape(x.shape)
    y = _affine(y, weight, bias, (1, c) + (1,) * (x.ndim - 2))
    return finish(op, y, 0), finish(op, mean.reshape(n, g), 1), finish(op, rstd.reshape(n, g), 2)


def _nearest_source(n_in: int, n_out: int, scale_factor: float | None) -> np.ndarray:
    """torch's nearest_idx: identity, i >> 1 for exact 2x, else floor(i * scale) in f32, where scale is
    (float)(1 / scale_factor) when the model gave one, else (float)in / out."""
    i = np.arange(n_out)
    if n_out == n_in:
        return i
    if n_out == 2 * n_in:
        return i >> 1
    if scale_factor:
        scale = np.float32(1.0 / scale_factor)
    else:
        scale = np.float32(n_in) / np.float32(n_out)
    src = np.floor(i.astype(F32) * scale).astype(np.int64)
    return np.minimum(src, n_in - 1)


@kernel("upsample_nearest2d")
def _upsample_nearest2d(op, x):
    oh, ow = attr(op, "output_size")
    # "scales" is not in the op table yet: a model's non-integer scale_factor picks other source pixels
    # than in/out does, so the kernel honours the attribute once the frontend records it.
    sh, sw = attr(op, "scales") or (None, None)
    hi = _nearest_source(x.shape[-2], oh, sh)
    wi = _nearest_source(x.shape[-1], ow, sw)
    return x[..., hi[:, None], wi[None, :]]


def _linear_source(n_in: int, n_out: int, align_corners: bool, scale_factor: float | None):
    """torch's area_pixel_compute_source_index for linear interpolation, in f32: the two source indices of
    every output index and their weights."""
    i = np.arange(n_out, dtype=F32)
    if align_corners:
        scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
        src = i * scale
    else:
        scale = np.float32(1.0 / scale_factor) if scale_factor else np.float32(n_in) / np.float32(n_out)
        src = np.maximum(scale * (i + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = src.astype(np.int64)
    i0 = np.minimum(i0, n_in - 1)
    w1 = src - i0.astype(F32)
    i1 = i0 + (i0 < n_in - 1)
    return i0, i1, np.float32(1) - w1, w1


@kernel("upsample_bilinear2d")
def _upsample_bilinear2d(op, x):
    oh, ow = attr(op, "output_size")
    ac = attr(op, "align_corners")
    sh, sw = attr(op, "scales") or (None, None)
    h0, h1, a0, a1 = _linear_source(x.shape[-2], oh, ac, sh)
    w0, w1, b0, b1 = _linear_source(x.shape[-1], ow, ac, sw)
    v = up(x)
    if v.shape[-2] == 0 or v.shape[-1] == 0 or oh == 0 or ow == 0:
        return finish(op, np.zeros(v.shape[:2] + (oh, ow), v.dtype))
    r0, r1 = v[..., h0, :], v[..., h1, :]
    a0, a1 = a0[:, None], a1[:, None]
    # torch's order: each of the four taps times the product of its two weights, summed in tap order.
    y = (r0[..., w0] * (a0 * b0) + r0[..., w1] * (a0 * b1)) + (r1[..., w0] * (a1 * b0) + r1[..., w1] * (a1 * b1))
    return finish(op, y)
