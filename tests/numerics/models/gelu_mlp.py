"""A tiny MLP with a GELU and a LayerNorm, for the numerics tests (they look the line numbers up)."""

import torch
from torch import nn

torch.manual_seed(0)


class GeluMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.norm = nn.LayerNorm(32)
        self.fc2 = nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = nn.functional.gelu(h)  # the op the tests break
        h = torch.add(h, self.norm(h), alpha=0.5)
        return self.fc2(h)


model = GeluMLP().eval()
example_inputs = (torch.randn(4, 16),)
