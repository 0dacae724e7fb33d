"""Training plans without weights (issue 15 item 7): meta-device models captured through AOTAutograd's joint
export with fake tensors, planned for training, nothing stored. The full-size 1T and 20B plans are figures in
docs/benchmarks.md; here their scaled-down configs (GPT_CONFIG=small, NEOX_CONFIG=small) run through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from runtime.optim import SGD
from runtime.training import TrainingRunError, TrainStep
from wafercc.cli import main
from wafercc.driver import compile_training
from wafercc.frontend import load_model_file
from wafercc.mapping.training import rate_text

ROOT = Path(__file__).resolve().parents[2]


def plan_for_training(monkeypatch, tmp_path, example: str, env: dict, target: str) -> tuple[Path, dict]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / example
    code = main(["compile", str(ROOT / "examples" / f"{example}.py"), "--train", "--no-weights", "--target", target,
                 "-o", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    return out, json.loads((out / "plan.json").read_text())


def check_training_plan(out: Path, plan: dict) -> None:
    phases = {layer["phase"] for layer in plan["layers"]}
    assert phases == {"forward", "backward"}
    roles = {layer.get("train.role") for layer in plan["layers"] if layer["phase"] == "backward"}
    assert {"input_grad", "weight_grad", "activation_grad"} <= roles
    egress = [layer["train.egress"]["bytes"] for layer in plan["layers"] if "train.egress" in layer]
    t = plan["totals"]
    assert t["gradient_bytes_streamed"] == sum(egress) > 0
    assert t["step_seconds"] >= t["forward_seconds"] + t["backward_seconds"] > 0
    assert t["forward_seconds"] > 0 and t["backward_seconds"] > 0
    assert t["samples_per_s"] == pytest.approx(t["batch"] / t["step_seconds"])
    saved = [layer["train.saved"] for layer in plan["layers"] if layer["phase"] == "forward"]
    for what in ("kept", "spilled", "recomputed"):
        assert t[f"activation_bytes_{what}"] == sum(s[what] for s in saved)
    assert t["activation_bytes_kept"] > 0
    # identical blocks share plans: fewer distinct structures than layers, and the blocks' layers repeat
    assert t["structures"] < t["layers"]
    # nothing stored: no training store and no example inputs (they live on the meta device)
    assert not (out / "store").exists() and not (out / "inputs.npz").exists()
    assert (out / "training.json").is_file()
    assert f"{rate_text(t['samples_per_s'])} samples/s" in (out / "report.txt").read_text()


def test_rates_below_one_per_second_are_not_printed_as_zero():
    assert (rate_text(0.010358), rate_text(47.93), rate_text(1234.4)) == ("0.0104", "47.9", "1,234")


def test_gpt_1t_small_config_plans_for_training_without_weights(monkeypatch, tmp_path):
    out, plan = plan_for_training(monkeypatch, tmp_path, "gpt_1t", {"GPT_CONFIG": "small"}, "wse3")
    check_training_plan(out, plan)
    # every parameter's gradient streams out: 2 blocks x 12 + the embeddings, the final norm and the head
    wir = (out / "model.wir").read_text()
    assert wir.count('"grad"') == 2 * 12 + 5
    with pytest.raises(TrainingRunError, match="was planned without weights"):
        TrainStep(out)


def test_gpt_1t_structure_reuse_grows_with_depth_not_structures(monkeypatch, tmp_path):
    """Three blocks plan as many distinct structures as two: the third block's forward and backward layers
    reuse the second's."""
    _, two = plan_for_training(monkeypatch, tmp_path / "2", "gpt_1t", {"GPT_CONFIG": "small"}, "wse3")
    _, three = plan_for_training(
        monkeypatch, tmp_path / "3", "gpt_1t", {"GPT_CONFIG": "small", "GPT_LAYERS": "3"}, "wse3"
    )
    assert three["totals"]["layers"] > two["totals"]["layers"]
    assert three["totals"]["structures"] == two["totals"]["structures"]


def test_gpt_neox_small_config_plans_for_training_on_wse2(monkeypatch, tmp_path):
    out, plan = plan_for_training(monkeypatch, tmp_path, "gpt_neox_20b", {"NEOX_CONFIG": "small"}, "wse2")
    check_training_plan(out, plan)
    # parallel residual: each block's attention and MLP read one input, and both weights' gradients stream out
    wir = (out / "model.wir").read_text()
    assert wir.count('"grad"') == 2 * 12 + 4


def test_the_training_form_of_a_file_is_loaded_with_train():
    path = ROOT / "examples" / "gpt_1t.py"
    model, inputs = load_model_file(path, train=False)
    assert len(inputs) == 1 and type(model).__name__ == "GPT"
    model, inputs = load_model_file(path, train=True)
    assert len(inputs) == 2 and type(model).__name__ == "GPTLoss"
    # a file without a training form gives its model for --train too
    model, inputs = load_model_file(ROOT / "examples" / "train_mlp.py", train=True)
    assert len(inputs) == 2


class SdpaLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(16, 8)
        self.qkv = nn.Linear(8, 24)
        self.head = nn.Linear(8, 16)

    def forward(self, idx, targets):
        x = self.emb(idx)
        q, k, v = (z.view(1, 6, 2, 4).transpose(1, 2) for z in self.qkv(x).split(8, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(1, 6, 8)
        return F.cross_entropy(self.head(y).reshape(6, 16), targets.reshape(6))


def test_scaled_dot_product_attention_trains_like_eager():
    """SDPA is captured through its math backend, so its backward is made of imported ops; the runtime's
    step-1 gradients match eager's (whose CPU kernel is the flash one)."""
    from wafercc.numerics.training import compare_training

    torch.manual_seed(0)
    model = SdpaLM().train()
    ids = torch.randint(0, 16, (1, 7))
    v = compare_training(model, (ids[:, :-1], ids[:, 1:]), SGD(lr=0.1), steps=2)
    assert v.passed, list(v.failures())


def test_a_meta_model_is_planned_without_a_store(tmp_path):
    with torch.device("meta"):
        model = SdpaLM().train()
    ids = torch.zeros(1, 6, dtype=torch.long, device="meta")
    r = compile_training(model, (ids, ids.clone()), SGD(lr=0.1), out_dir=tmp_path / "out")
    assert not r.with_weights and r.weights == {}
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == [
        "model.wir",
        "plan.json",
        "report.txt",
        "training.json",
    ]


MEMORY_PROBE = """
import resource, torch
from runtime.optim import SGD
from wafercc.frontend.training import capture_training
with torch.device("meta"):
    table = torch.nn.Embedding(262144, 2048)  # 2 GiB of fp32 were it real
    head = torch.nn.Linear(2048, 8)
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.table, self.head = table, head
    def forward(self, ids, y):
        return torch.nn.functional.cross_entropy(self.head(self.table(ids)), y)
ids = torch.zeros(4, dtype=torch.long, device="meta")
capture_training(M(), (ids, ids.clone()))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_a_meta_capture_allocates_no_weight_sized_tensor():
    """The embedding's backward makes zeros of the table's shape from no tensor: inside the fake mode, not
    2 GiB of real memory (the 1T model's table is 5 GB)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", MEMORY_PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    peak_kib = int(r.stdout.split()[-1])
    assert peak_kib < 1024 * 1024, f"peak RSS {peak_kib / 2**20:.2f} GiB"
