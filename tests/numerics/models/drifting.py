"""A model whose eager result changes from call to call (a global Python counter), so that the compiled
model, which follows the captured graph, really mismatches eager PyTorch: `wafercc verify` must exit 1."""

import torch
from torch import nn

torch.manual_seed(0)
CALLS = [0]  # a global: torch.export restores module attributes after tracing, not globals


class Drifting(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CALLS[0] += 1  # baked into the graph as the value it had when captured
        return self.fc(x) * float(CALLS[0])


model = Drifting().eval()
example_inputs = (torch.randn(2, 8),)
