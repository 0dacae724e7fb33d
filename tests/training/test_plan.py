"""The training plan (wafercc/mapping/training.py): phases, backward layers re-streaming weights and streaming
gradients out, saved activations kept/spilled/recomputed, and the training totals."""

from __future__ import annotations

import json

import pytest

import torch
from torch import nn
from torch.nn import functional as F

from runtime.optim import SGD
from wafercc.driver import compile_training
from wafercc.mapping.training import phase_summary

TRAINING_TOTALS = {
    "forward_seconds",
    "backward_seconds",
    "gradient_bytes_streamed",
    "gradient_seconds",
    "activation_bytes_kept",
    "activation_bytes_spilled",
    "activation_bytes_recomputed",
    "optimizer_seconds",
    "optimizer_exposed_seconds",
    "step_seconds",
    "samples_per_s",
}


def test_every_layer_has_a_phase_and_the_backward_streams_weights_and_gradients(compiled_training):
    plan = json.loads((compiled_training("train_mlp") / "plan.json").read_text())
    phases = [layer["phase"] for layer in plan["layers"]]
    assert set(phases) == {"forward", "backward"}
    assert phases == sorted(phases, key=["forward", "backward"].index)  # forward layers, then backward
    back = [layer for layer in plan["layers"] if layer["phase"] == "backward"]
    roles = {layer["train.role"] for layer in back}
    assert roles == {"input_grad", "weight_grad"}
    for layer in back:
        if layer["train.role"] == "input_grad":  # dY x W^T: the weight streams in again
            assert layer["weights"] and layer["stream"]["bytes"] >= layer["weight_bytes"] > 0
        else:  # X^T x dY: nothing streams in, the gradient streams out
            assert layer["stream"]["bytes"] == 0 and layer["train.egress"]["bytes"] > 0
    tot = plan["totals"]
    assert TRAINING_TOTALS <= set(tot)
    # every parameter's gradient streams out once: 784*128 + 128 + 128*64 + 64 + 64*10 + 10 floats
    assert tot["gradient_bytes_streamed"] == 4 * (784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10)
    assert (
        sum(layer.get("train.egress", {}).get("bytes", 0) for layer in plan["layers"]) == tot["gradient_bytes_streamed"]
    )
    assert tot["step_seconds"] >= tot["forward_seconds"] + tot["backward_seconds"]
    assert tot["samples_per_s"] == tot["batch"] / tot["step_seconds"] and tot["batch"] == 16


def test_the_report_shows_the_phases(compiled_training):
    report = (compiled_training("train_mlp") / "report.txt").read_text()
    assert "training step, by phase:" in report
    assert "L7_mm_4    backward   weight_grad" in report
    assert "(MemoryX)  optimizer  update" in report


class Deep(nn.Module):
    def __init__(self):
        super().__init__()
        self.fcs = nn.ModuleList([nn.Linear(64, 64) for _ in range(4)])

    def forward(self, x, y):
        for fc in self.fcs:
            x = torch.tanh(fc(x)) * 0.5  # the product by 0.5 can be recomputed from the saved tanh
        return F.mse_loss(x, y)


def _saved(target: str) -> dict:
    torch.manual_seed(0)
    r = compile_training(Deep(), (torch.randn(64, 64), torch.randn(64, 64)), SGD(lr=0.1), target=target)
    return r.module.attrs["plan.totals"]


def test_activations_are_kept_while_they_fit_then_recomputed_or_spilled():
    big = _saved("wse2")
    assert big["activation_bytes_spilled"] == big["activation_bytes_recomputed"] == 0
    assert big["activation_bytes_kept"] > 0
    # a 4x4 mesh with little SRAM cannot keep them: the cheap ones (tanh) are recomputed, the products spilled
    small = _saved("mesh:4x4,sram-kib=12")
    total = big["activation_bytes_kept"]
    assert (
        small["activation_bytes_kept"] + small["activation_bytes_spilled"] + small["activation_bytes_recomputed"]
        == total
    )
    assert small["activation_bytes_spilled"] > 0 and small["activation_bytes_recomputed"] > 0
    assert small["spill_seconds"] > 0 and small["recompute_seconds"] > 0
    assert small["step_seconds"] > small["forward_seconds"] + small["backward_seconds"]


def test_phase_summary_is_empty_for_an_inference_plan():
    assert phase_summary({"totals": {"layers": 1}, "layers": []}) == ""


def test_the_backward_reads_its_weights_again(compiled_training):
    """Each input-gradient layer has its own weight.get (restream_weights): the runtime reads the weight from
    the store again instead of holding it from the forward layer."""
    from wafercc.ir import parse_file
    from wafercc.ir.plan import LAYER_ATTR

    m = parse_file(compiled_training("train_mlp") / "model.wir")
    reads: dict[str, set[str]] = {}
    for op in m.func().ops:
        if op.name == "weight.get":
            reads.setdefault(op.attrs[LAYER_ATTR].name, set()).add(op.attrs["symbol"].name)
    backward = [layer for layer in m.layers.values() if layer.attrs.get("train.role") == "input_grad"]
    assert backward
    for layer in backward:
        assert reads.get(layer.name) == {w.name for w in layer.attrs["weights"]}, layer.name
    assert reads["L0_fc1"] >= {"fc1.weight"}  # the forward read stays where it was


def test_report_json_keeps_the_training_totals(compiled_training):
    """`wafercc report DIR --json` prints the checked plan: a training plan's totals (the step, the gradient
    egress, the activations) are part of it, as plan.json has them."""
    from tests.cli_runner import run_cli

    d = compiled_training("train_mlp")
    r = run_cli("report", d, "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)["totals"]
    written = json.loads((d / "plan.json").read_text())["totals"]
    assert TRAINING_TOTALS <= set(shown)
    assert shown == written


def test_a_plan_with_half_its_training_totals_is_refused(compiled_training):
    from wafercc.ir.plan import Plan, PlanFormatError

    plan = json.loads((compiled_training("train_mlp") / "plan.json").read_text())
    del plan["totals"]["optimizer_seconds"]
    with pytest.raises(PlanFormatError, match=r"totals\.optimizer_seconds: missing"):
        Plan.from_json(plan)
    plan["totals"]["optimizer_seconds"] = -1.0
    with pytest.raises(PlanFormatError, match=r"totals\.optimizer_seconds: expected a non-negative number"):
        Plan.from_json(plan)
