"""The decomposition table AOTAutograd lowers with (the torch.compile backend, and training's joint capture):
torch's core-ATen decompositions, plus the backward ops core ATen keeps whole (convolution_backward, the
pooling backwards, 1-D to 3-D), written here in ops wafercc imports.

Each function returns ``NotImplemented`` for the cases it does not cover; the op then stays in the graph and
the import names it (with its source line) as unsupported, rather than running something approximate.
"""

from __future__ import annotations

import functools
import math

import torch

aten = torch.ops.aten


@functools.cache
def decompositions() -> dict:
    from torch._decomp import core_aten_decompositions, decomposition_table

    table = dict(core_aten_decompositions())
    table[aten.max_pool2d_with_indices_backward.default] = decomposition_table[
        aten.max_pool2d_with_indices_backward.default
    ]
    table[aten.max_pool3d_with_indices_backward.default] = _max_pool3d_with_indices_backward
    table[aten.convolution_backward.default] = _convolution_backward
    table[aten.avg_pool2d_backward.default] = _avg_pool_backward(2)
    table[aten.avg_pool3d_backward.default] = _avg_pool_backward(3)
    table[aten._adaptive_avg_pool2d_backward.default] = _adaptive_avg_pool_backward(2)
    table[aten._adaptive_avg_pool3d_backward.default] = _adaptive_avg_pool_backward(3)
    table[aten.grid_sampler_2d_backward.default] = _grid_sampler_2d_backward
    return table


def _grid_sampler_2d_backward(grad_output, input, grid, interpolation_mode, padding_mode, align_corners, output_mask):
    """grid_sample's gradients for bilinear sampling with zero padding (``F.grid_sample``'s defaults), in the
    formulas of ATen's CPU kernel (GridSamplerKernel.cpp): each output's gradient, times each of its four
    corners' weights, added at the corner (a scatter_add over the flattened image; corners outside it carry
    weight 0), and the grid's gradient from the corner values and the weights' derivatives, times the
    unnormalization's scale. Other modes are left to the import to name (NotImplemented)."""
    if interpolation_mode != 0 or padding_mode != 0 or input.dim() != 4:
        return NotImplemented
    n, c, h, w = input.shape
    ho, wo = grid.shape[1], grid.shape[2]
    x, y = grid[..., 0], grid[..., 1]  # [N, Ho, Wo]
    if align_corners:
        sx, sy = (w - 1) / 2, (h - 1) / 2
        ix, iy = (x + 1) * sx, (y + 1) * sy
    else:
        sx, sy = w / 2, h / 2
        ix, iy = ((x + 1) * w - 1) / 2, ((y + 1) * h - 1) / 2
    ix_nw, iy_nw = torch.floor(ix), torch.floor(iy)
    ix_se, iy_se = ix_nw + 1, iy_nw + 1
    corners = (  # (column, row, weight, d weight / d ix, d weight / d iy)
        (ix_nw, iy_nw, (ix_se - ix) * (iy_se - iy), -(iy_se - iy), -(ix_se - ix)),
        (ix_se, iy_nw, (ix - ix_nw) * (iy_se - iy), iy_se - iy, -(ix - ix_nw)),
        (ix_nw, iy_se, (ix_se - ix) * (iy - iy_nw), -(iy - iy_nw), ix_se - ix),
        (ix_se, iy_se, (ix - ix_nw) * (iy - iy_nw), iy - iy_nw, ix - ix_nw),
    )
    flat = input.reshape(n, c, h * w)
    g = grad_output.reshape(n, c, ho * wo)
    grad_input = torch.zeros_like(flat) if output_mask[0] else None
    gix = giy = None
    for col, row, weight, dx, dy in corners:
        inside = (col >= 0) & (col <= w - 1) & (row >= 0) & (row <= h - 1)
        at = (torch.clamp(row, 0, h - 1) * w + torch.clamp(col, 0, w - 1)).to(torch.int64)
        at = at.reshape(n, 1, ho * wo).expand(n, c, ho * wo)
        if grad_input is not None:
            share = torch.where(inside, weight, torch.zeros_like(weight)).reshape(n, 1, ho * wo)
            grad_input = torch.scatter_add(grad_input, 2, at, g * share)
        if output_mask[1]:
            value = torch.where(inside.reshape(n, 1, ho * wo), torch.gather(flat, 2, at), torch.zeros_like(g))
            vg = (value * g).sum(1).reshape(n, ho, wo)  # summed over the channels
            gix = vg * dx if gix is None else gix + vg * dx
            giy = vg * dy if giy is None else giy + vg * dy
    grad_grid = torch.stack([gix * sx, giy * sy], dim=-1) if output_mask[1] else None
    return (None if grad_input is None else grad_input.reshape(n, c, h, w), grad_grid)


def _convolution_backward(
    grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed, output_padding, groups, output_mask
):
    """The gradients of a (non-transposed) convolution as convolutions: the input's is the transposed
    convolution of the output gradient with the same weight; the weight's convolves the input with the
    output gradient, batch and channels swapped (stride and dilation swap roles), one group at a time."""
    if transposed or input.dim() not in (3, 4, 5):
        return NotImplemented
    spatial = input.dim() - 2
    stride, padding, dilation = (_expand(v, spatial) for v in (stride, padding, dilation))
    k = weight.shape[2:]
    grad_input = grad_weight = grad_bias = None
    if output_mask[0]:
        extra = [
            input.shape[2 + i]
            - ((grad_output.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k[i] - 1) + 1)
            for i in range(spatial)
        ]
        grad_input = aten.convolution.default(grad_output, weight, None, stride, padding, dilation, True, extra, groups)
    if output_mask[1]:
        cin, cout = input.shape[1] // groups, grad_output.shape[1] // groups
        parts = []
        for g in range(groups):
            x = input if groups == 1 else aten.slice.Tensor(input, 1, g * cin, (g + 1) * cin)
            dy = grad_output if groups == 1 else aten.slice.Tensor(grad_output, 1, g * cout, (g + 1) * cout)
            x = aten.transpose.int(x, 0, 1)  # [Cin/g, N, *in]: the input channels as the batch
            dy = aten.transpose.int(dy, 0, 1)  # [Cout/g, N, *out]: the output gradient as the weight
            gw = aten.convolution.default(x, dy, None, dilation, padding, stride, False, [0] * spatial, 1)
            for i in range(spatial):  # the swapped convolution can reach past the kernel: keep its extent
                if gw.shape[2 + i] != k[i]:
                    gw = aten.slice.Tensor(gw, 2 + i, 0, k[i])
            parts.append(aten.transpose.int(gw, 0, 1))
        grad_weight = parts[0] if groups == 1 else aten.cat.default(parts, 0)
    if output_mask[2]:
        grad_bias = aten.sum.dim_IntList(grad_output, [0] + [2 + i for i in range(spatial)])
    return grad_input, grad_weight, grad_bias


def _avg_pool_backward(spatial: int):
    def avg_pool_backward(
        grad_output, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
    ):
        """Average pooling's gradient: a depthwise transposed convolution with a constant 1/prod(kernel)
        kernel. Exact where every window divides by its full size (no ceil_mode, padding counted or absent)."""
        kernel_size = _expand(kernel_size, spatial)
        stride = _expand(stride, spatial) if stride else kernel_size
        padding = _expand(padding, spatial)
        if (
            input.dim() != spatial + 2
            or ceil_mode
            or divisor_override is not None
            or (any(padding) and not count_include_pad)
        ):
            return NotImplemented
        return _spread(grad_output, input, kernel_size, stride, padding)

    return avg_pool_backward


def _adaptive_avg_pool_backward(spatial: int):
    def adaptive_avg_pool_backward(grad_output, input):
        """Adaptive average pooling's gradient where the output size divides the input's (fixed windows)."""
        size, out = input.shape[-spatial:], grad_output.shape[-spatial:]
        if input.dim() != spatial + 2 or any(n % o for n, o in zip(size, out)):
            return NotImplemented
        k = [n // o for n, o in zip(size, out)]
        return _spread(grad_output, input, k, k, [0] * spatial)

    return adaptive_avg_pool_backward


def _spread(grad_output, input, kernel_size, stride, padding):
    c, spatial = input.shape[1], len(kernel_size)
    kernel = aten.full.default(
        [c, 1, *kernel_size],
        1.0 / math.prod(kernel_size),
        dtype=grad_output.dtype,
        device=grad_output.device,
    )
    extra = [
        input.shape[2 + i] - ((grad_output.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + kernel_size[i])
        for i in range(spatial)
    ]
    return aten.convolution.default(grad_output, kernel, None, stride, padding, [1] * spatial, True, extra, c)


def _max_pool3d_with_indices_backward(grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices):
    """Max pooling's gradient, as torch decomposes the 2-D one: each output's gradient added at the input
    position its index names (a scatter_add over the flattened volume, so windows that pick the same
    element add up)."""
    if input.dim() != 5 or grad_output.dtype != torch.float32:
        return NotImplemented
    n, c = input.shape[:2]
    flat = aten.zeros.default([n * c, math.prod(input.shape[2:])], dtype=grad_output.dtype, device=grad_output.device)
    grads = aten.reshape.default(grad_output, [n * c, -1])
    where = aten.reshape.default(indices, [n * c, -1])
    return aten.reshape.default(aten.scatter_add.default(flat, 1, where, grads), list(input.shape))


def _expand(v, n: int) -> list[int]:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return v * n if len(v) == 1 else v
