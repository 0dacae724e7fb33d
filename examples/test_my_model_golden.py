"""Golden tests of your own model: copy this file next to your tests and put your model in.

    python -m pytest examples/test_my_model_golden.py                          # 1st run records, then checks
    python -m pytest examples/test_my_model_golden.py --wafer-update-goldens   # re-record, deliberately

The first run records each golden from eager PyTorch into goldens/ beside this file (commit them); every later
run recompiles the model, reruns it in wafercc's runtime and fails with a one-screen report when the numbers
drift (per output: max abs/rel error, tolerance, and the first op that moved, with its source line). In CI add
--wafer-no-record, so that a golden nobody committed fails instead of being recorded. docs/golden.md has more.
"""

import pytest
import torch
from torch import nn


class MyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 8)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def my_model():
    torch.manual_seed(0)  # the same weights every run: the golden's eager outputs depend on them
    return MyModel().eval(), (torch.randn(4, 32),)


def test_my_model(wafer_golden):
    model, example_inputs = my_model()
    wafer_golden.check(model, example_inputs, name="my_model")  # golden: goldens/my_model/


@pytest.mark.parametrize("target", ["wse3", "mesh:16x16"])
def test_my_model_on(wafer_golden, target):
    model, example_inputs = my_model()
    wafer_golden.check(model, example_inputs, name="my_model", target=target)  # goldens/my_model-wse3/, ...


@pytest.mark.wafer(mode="pipeline")  # options for every check in this test
def test_my_model_pipelined(wafer_golden):
    model, example_inputs = my_model()
    wafer_golden.check(model, example_inputs, name="my_model")  # goldens/my_model-pipeline/
