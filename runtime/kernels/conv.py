"""N-d convolution (aten.convolution): cross-correlation and its transpose, with stride, zero padding,
dilation, groups and output_padding.

Both directions are one batched GEMM over the groups, never a Python loop over output pixels:
- forward: im2col via sliding_window_view (a strided view, no copy until the GEMM's reshape);
- transposed: one GEMM gives every (input pixel, kernel tap) product, then a loop over the kernel taps
  scatter-adds each tap's products into the strided output positions it reaches, and the padding is
  cropped off (a "col2im").
f16/bf16 compute in f32 and round once at the end.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import attr, finish, kernel, up


def _spatial(v: list[int], n: int) -> list[int]:
    """A per-dim attribute given once for all spatial dims or once per dim (ATen allows both)."""
    return list(v) * n if len(v) == 1 else list(v)


@kernel("convolution")
def _convolution(op, x, w, bias=None):
    nsp = x.ndim - 2
    stride, pad, dil, opad = (_spatial(attr(op, k), nsp) for k in ("stride", "padding", "dilation", "output_padding"))
    groups = attr(op, "groups")
    xv, wv = up(x), up(w)
    if attr(op, "transposed"):
        y = _conv_transposed(xv, wv, stride, pad, dil, opad, groups)
    else:
        y = _conv_forward(xv, wv, stride, pad, dil, groups)
    if bias is not None:
        y = y + up(bias).reshape((1, -1) + (1,) * nsp)
    return finish(op, y)


def _conv_forward(x, w, stride, pad, dil, groups):
    cols, wm, fold = conv_gemm(x, w, stride, pad, dil, groups)
    return fold(np.matmul(cols, wm))  # [G, N*O, og]


def conv_gemm(x, w, stride, pad, dil, groups):
    """The implicit GEMM of a forward convolution: im2col ``[G, N*O, cg*k]``, weights ``[G, cg*k, og]``, and
    a function folding their product ``[G, N*O, og]`` back to ``[N, Cout, O...]``. The plan-faithful runtime
    tiles the same product (runtime/plan.py)."""
    n, c = x.shape[:2]
    nsp, cout, ks = x.ndim - 2, w.shape[0], w.shape[2:]
    sp_axes = tuple(range(2, 2 + nsp))
    if any(pad):
        x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad])
    eff = [d * (k - 1) + 1 for d, k in zip(dil, ks)]
    win = sliding_window_view(x, eff, axis=sp_axes)  # [N, C, O'..., eff...]
    steps = tuple(slice(None, None, s) for s in stride) + tuple(slice(None, None, d) for d in dil)
    win = win[(slice(None),) * 2 + steps]
    out_sp = win.shape[2 : 2 + nsp]
    cg, og, kk = c // groups, cout // groups, math.prod(ks)
    # [N, G, cg, O..., k...] -> [G, N, O..., cg, k...] -> im2col [G, N*O, cg*k] (the one copy)
    win = win.reshape((n, groups, cg) + out_sp + tuple(ks))
    order = (1, 0) + tuple(range(3, 3 + nsp)) + (2,) + tuple(range(3 + nsp, 3 + 2 * nsp))
    cols = win.transpose(order).reshape(groups, n * math.prod(out_sp), cg * kk)
    wm = w.reshape(groups, og, cg * kk).transpose(0, 2, 1)  # [G, cg*k, og]

    def fold(y):
        # [G, N*O, og] -> [N, G, og, O...] -> [N, Cout, O...]
        y = y.reshape((groups, n) + out_sp + (og,)).transpose((1, 0, 2 + nsp) + tuple(range(2, 2 + nsp)))
        return np.ascontiguousarray(y).reshape((n, cout) + out_sp)

    return cols, wm, fold


def _conv_transposed(x, w, stride, pad, dil, opad, groups):
    xm, wm, finish = conv_transposed_gemm(x, w, stride, pad, dil, opad, groups)
    return finish(np.matmul(xm, wm))


def conv_transposed_gemm(x, w, stride, pad, dil, opad, groups):
    """A transposed convolution as one GEMM plus a scatter: ``[G, N*I, cg] @ [G, cg, og*k]`` gives every
    (input pixel, kernel tap) product; ``finish`` scatter-adds each tap's products into the strided output
    positions it reaches and crops the padding (a "col2im"). The plan-faithful runtime tiles the GEMM."""
    n, cin = x.shape[:2]
    nsp, ins, ks = x.ndim - 2, x.shape[2:], w.shape[2:]
    og, cg, kk = w.shape[1], cin // groups, math.prod(ks)
    full = [(i - 1) * s + d * (k - 1) + 1 for i, s, d, k in zip(ins, stride, dil, ks)]
    out = [f - 2 * p + o for f, p, o in zip(full, pad, opad)]
    xm = x.reshape((n, groups, cg, math.prod(ins))).transpose(1, 0, 3, 2).reshape(groups, -1, cg)
    wm = w.reshape(groups, cg, og * kk)

    def finish(prods):
        prods = prods.reshape((groups, n) + tuple(ins) + (og,) + tuple(ks))
        # Scatter every tap into a buffer big enough for the uncropped output and any output_padding.
        buf_sp = [max(f, p + o) for f, p, o in zip(full, pad, out)]
        buf = np.zeros((groups, n) + tuple(buf_sp) + (og,), dtype=prods.dtype)
        for tap in itertools.product(*(range(k) for k in ks)):
            dst = tuple(slice(t * d, t * d + (i - 1) * s + 1, s) for t, d, i, s in zip(tap, dil, ins, stride))
            buf[(slice(None), slice(None)) + dst] += prods[(Ellipsis,) + tap]
        crop = tuple(slice(p, p + o) for p, o in zip(pad, out))
        y = buf[(slice(None), slice(None)) + crop]  # [G, N, O..., og]
        y = y.transpose((1, 0, 2 + nsp) + tuple(range(2, 2 + nsp)))
        return np.ascontiguousarray(y).reshape((n, groups * og) + tuple(out))

    return xm, wm, finish
