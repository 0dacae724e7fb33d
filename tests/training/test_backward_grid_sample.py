"""Models that warp with F.grid_sample train (wafercc/frontend/autograd_decompositions.py): the backward of
bilinear sampling with zero padding is decomposed into gathers, a scatter_add and elementwise ops, equal to
ATen's grid_sampler_2d_backward within fp32 summation order; other modes stay unsupported, by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from runtime.optim import AdamW
from wafercc.frontend.autograd_decompositions import _grid_sampler_2d_backward
from wafercc.numerics.training import compare_training

aten = torch.ops.aten


@pytest.mark.parametrize("align_corners", [False, True])
def test_decomposition_equals_atens_backward(align_corners):
    """Points inside, on the border and outside the image (their corners outside carry no weight), several
    outputs sharing corners (their shares add), both gradients."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 7, generator=g)
    grid = torch.rand(2, 4, 6, 2, generator=g) * 2.6 - 1.3
    grid[0, 0, 0] = torch.tensor([-1.0, 1.0])
    grid[1, 1, :3] = 0.25  # three samples at one point
    go = torch.randn(2, 3, 4, 6, generator=g)
    want = aten.grid_sampler_2d_backward(go, x, grid, 0, 0, align_corners, [True, True])
    got = _grid_sampler_2d_backward(go, x, grid, 0, 0, align_corners, [True, True])
    for a, b in zip(got, want):
        # fp32: the same products, summed in another order (corners scattered one after another; channels)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    only_grid = _grid_sampler_2d_backward(go, x, grid, 0, 0, align_corners, [False, True])
    assert only_grid[0] is None and torch.equal(only_grid[1], got[1])


def test_other_modes_are_left_to_the_import():
    x, grid, go = torch.randn(1, 1, 3, 3), torch.zeros(1, 2, 2, 2), torch.randn(1, 1, 2, 2)
    assert _grid_sampler_2d_backward(go, x, grid, 1, 0, False, [True, True]) is NotImplemented  # nearest
    assert _grid_sampler_2d_backward(go, x, grid, 0, 1, False, [True, True]) is NotImplemented  # border


class Warp(nn.Module):
    """A predicted flow field warps the image (spatial-transformer style), then a linear head classifies."""

    def __init__(self):
        super().__init__()
        self.flow = nn.Conv2d(3, 2, 3, padding=1)
        self.head = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x, y):
        flow = torch.tanh(self.flow(x)).permute(0, 2, 3, 1)
        return F.cross_entropy(self.head(F.grid_sample(x, flow, align_corners=False).flatten(1)), y)


def test_warping_model_trains_as_eager():
    torch.manual_seed(0)
    v = compare_training(Warp().train(), (torch.randn(2, 3, 8, 8), torch.tensor([1, 3])), AdamW(lr=1e-2), steps=2)
    assert v.passed, v.failures()
    assert {c.name for c in v.grads} == {"flow.weight", "flow.bias", "head.weight", "head.bias"}
