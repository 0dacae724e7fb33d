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
    return table


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
