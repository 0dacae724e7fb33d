"""plan.json and report.txt come from one load of a module's plan (wafercc/mapping/report.py ``plan_views``):
the typed plan it hands the report is the one ``Plan.from_json`` makes of plan.json's dict (so the report's
bytes are those of ``format_report(plan_dict(m))``), and plan.json's text is ``json.dumps``'s."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import wafercc
from runtime.optim import SGD
from wafercc.driver import compile_training
from wafercc.ir.plan import Plan
from wafercc.mapping.report import format_report, plan_dict, plan_json, plan_views
from wafercc.mapping.training import phase_summary


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(48, 96), nn.Linear(96, 48)

    def forward(self, x, y):
        return F.mse_loss(self.fc2(torch.tanh(self.fc1(x))), y)


def _inference(target: str):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 8))
    return wafercc.compile(model, (torch.randn(4, 32),), name="mlp", target=target).module


def _training(target: str):
    torch.manual_seed(0)
    return compile_training(Net(), (torch.randn(16, 48), torch.randn(16, 48)), SGD(lr=0.1), target=target).module


@pytest.mark.parametrize("make", [_inference, _training])
@pytest.mark.parametrize("target", ["wse2", "wse3"])
def test_one_load_gives_the_views_two_loads_gave(make, target):
    m = make(target)
    d, typed = plan_views(m)
    assert isinstance(typed, Plan) and len(typed.layers) >= 2
    assert d == plan_dict(m)
    assert typed == Plan.from_json(d)
    assert format_report(typed) == format_report(plan_dict(m))
    assert phase_summary(d) == phase_summary(plan_dict(m))
    assert plan_json(m, d) == plan_json(m) == json.dumps(plan_dict(m), indent=1, sort_keys=True) + "\n"


def test_written_views_match_the_two_load_texts(tmp_path):
    torch.manual_seed(0)
    r = compile_training(
        Net(), (torch.randn(16, 48), torch.randn(16, 48)), SGD(lr=0.1), target="wse2", out_dir=tmp_path / "t"
    )
    d = plan_dict(r.module)
    assert (tmp_path / "t" / "plan.json").read_text() == json.dumps(d, indent=1, sort_keys=True) + "\n"
    assert (tmp_path / "t" / "report.txt").read_text() == format_report(d) + "\n" + phase_summary(d)
