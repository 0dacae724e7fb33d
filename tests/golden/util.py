"""The tiny model of the golden tests, as a model file written where a test wants it."""

from __future__ import annotations

import textwrap
from pathlib import Path

# The relu line is the op the drift tests break; RELU_LINE is its line number in the file.
TINY = textwrap.dedent("""\
    import torch
    from torch import nn

    torch.manual_seed(SEED)


    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(16, 32)
            self.fc2 = nn.Linear(32, 4)

        def forward(self, x):
            h = torch.relu(self.fc1(x))  # the op the tests break
            return self.fc2(h)


    model = Tiny().eval()
    example_inputs = (torch.randn(BATCH, 16),)
    """)
RELU_LINE = 14
RELU_SOURCE = "h = torch.relu(self.fc1(x))  # the op the tests break"


def tiny_source(seed: int = 0, batch: int = 2) -> str:
    return TINY.replace("SEED", str(seed)).replace("BATCH", str(batch))


def write_tiny(root: Path, seed: int = 0, batch: int = 2, name: str = "tiny") -> Path:
    path = root / "models" / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tiny_source(seed, batch))
    return path
