"""Volumetric models train (wafercc/frontend/autograd_decompositions.py): the backwards of conv3d, max_pool3d,
avg_pool3d and adaptive_avg_pool3d are decomposed into ops wafercc imports, and two SGD steps in the runtime
match eager PyTorch with torch.optim under the training policy."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from runtime.optim import SGD
from wafercc.numerics.training import compare_training


class Volumes(nn.Module):
    def __init__(self, pool: nn.Module):
        super().__init__()
        self.conv = nn.Conv3d(2, 4, 3, padding=1)
        self.pool = pool
        self.head = nn.Linear(4, 3)

    def forward(self, x, y):
        h = self.pool(torch.relu(self.conv(x)))
        h = F.adaptive_avg_pool3d(h, 1).flatten(1)  # its backward too, at every test
        return F.cross_entropy(self.head(h), y)


@pytest.mark.parametrize(
    "pool",
    [
        nn.MaxPool3d(2),
        nn.MaxPool3d(3, stride=2, padding=1),  # overlapping windows: an element picked twice adds both gradients
        nn.AvgPool3d(2),
        nn.AdaptiveAvgPool3d(3),  # 6 -> 3: fixed windows of 2
    ],
    ids=["max", "max-overlap", "avg", "adaptive"],
)
def test_volumetric_training_matches_eager(pool):
    torch.manual_seed(0)
    model = Volumes(pool).train()
    inputs = (torch.randn(2, 2, 6, 6, 6), torch.tensor([0, 2]))
    v = compare_training(model, inputs, SGD(lr=0.1, momentum=0.9), steps=2)
    assert v.passed, v.failures()
    (a1, b1) = v.losses[0]
    assert abs(a1 - b1) <= 1e-6 * abs(b1)
    assert {c.name for c in v.grads} == {"conv.weight", "conv.bias", "head.weight", "head.bias"}
