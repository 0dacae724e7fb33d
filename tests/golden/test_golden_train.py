"""Training goldens (issue 15 item 6): record N steps' loss curve and final weights' hashes from a run that matches
eager PyTorch with torch.optim; check retrains and reports pass, the weights' bits changed within tolerance (as
what it is), a drift, or eager moving; golden.json's training part is validated; the CLI and the plugin."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from runtime.optim import SGD, AdamW
from wafercc import golden
from wafercc.cli import main
from wafercc.golden import files as F

TRAIN_TINY = textwrap.dedent("""\
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)


    class TinyClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(8, 16)
            self.fc2 = nn.Linear(16, 4)

        def forward(self, x, labels):
            return F.cross_entropy(self.fc2(torch.relu(self.fc1(x))), labels)


    model = TinyClassifier().train()
    example_inputs = (torch.randn(4, 8), torch.randint(0, 4, (4,)))
    """)
OPTS = golden.TrainOptions(AdamW(lr=1e-2), steps=2, micro_batches=2, clip_norm=1.0, target="wse2")


def write_model(root: Path) -> Path:
    path = root / "models" / "train_tiny.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TRAIN_TINY)
    return path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train_golden")
    r = golden.record_file(write_model(root), root / "goldens", golden.Options(), train=OPTS)
    assert r.status is golden.Status.RECORDED, golden.format_result(r)
    return root


@pytest.fixture
def root(recorded, tmp_path) -> Path:
    shutil.copytree(recorded, tmp_path / "r")
    return tmp_path / "r"


def check(root: Path) -> golden.GoldenResult:
    return golden.check_golden(root / "goldens" / "train_tiny")


def test_record_keeps_the_loss_curve_and_the_weights_hashes(recorded):
    g = recorded / "goldens" / "train_tiny"
    assert sorted(p.name for p in g.iterdir() if not p.name.startswith(".")) == [
        "eager.npz",
        "golden.json",
        "inputs.npz",
    ]
    data = F.read_golden_json(g)
    tr = data["train"]
    assert tr["steps"] == 2 and tr["micro_batches"] == 2 and tr["clip_norm"] == 1.0
    assert tr["optimizer"] == AdamW(lr=1e-2).to_dict()
    assert len(tr["losses"]) == len(tr["runtime_losses"]) == 2 and tr["losses"][1] < tr["losses"][0]
    assert [w["name"] for w in tr["weights"]] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    eager = np.load(g / "eager.npz")
    for w in tr["weights"]:
        assert eager[w["name"]].shape == tuple(w["shape"]) and len(w["sha256"]) == 64
    assert tr["tolerance"] == {"loss": 1e-5, "weight": 2e-5, "weight_abs": 2 * 1e-2 * 2, "buffer": 2e-5}
    # The same measurements give the same bytes.
    again = recorded / "again"  # the same root: golden.json's model path is the same
    r = golden.record_file(recorded / "models" / "train_tiny.py", again, golden.Options(), train=OPTS)
    assert r.status is golden.Status.RECORDED
    for name in ("golden.json", "eager.npz", "inputs.npz"):
        assert (again / "train_tiny" / name).read_bytes() == (g / name).read_bytes(), name
    shutil.rmtree(again)


def test_check_retrains_and_passes(root):
    r = check(root)
    assert r.status is golden.Status.PASS, golden.format_result(r)
    text = "\n".join(r.details)
    assert "loss step 2" in text and "fc2.bias" in text and "same" in text
    assert "the same as the one recorded, bit for bit" in text


def _nudged(monkeypatch, by):
    """The runtime's final fc1.bias moved by ``by(x)``: a compiler change the check must see."""
    from wafercc.numerics import training as NT

    run = NT.train_in_runtime

    def nudged(*a, **k):
        out = run(*a, **k)
        out["weights"]["fc1.bias"] = by(out["weights"]["fc1.bias"])
        return out

    monkeypatch.setattr(NT, "train_in_runtime", nudged)


def test_bits_that_moved_within_tolerance_are_reported_as_such(root, monkeypatch):
    _nudged(monkeypatch, lambda b: np.nextafter(b, np.float32(np.inf)))  # one ulp
    r = check(root)
    assert r.status is golden.Status.WEIGHTS_CHANGED and r.ok
    assert "bytes differ from the recorded sha256 (1 of 4: fc1.bias)" in r.message
    assert "within the training tolerance" in r.message
    out = golden.format_result(r)
    assert "weights' bits changed" in out and "moved" in out
    assert golden.exit_code([r]) == 0


def test_a_drift_fails(root, monkeypatch):
    _nudged(monkeypatch, lambda b: b + np.float32(0.1))
    r = check(root)
    assert r.status is golden.Status.DRIFTED and not r.ok
    assert "fc1.bias by 0.1" in r.message and "eager PyTorch still reproduces the golden" in r.message
    assert "FAIL" in golden.format_result(r)
    assert golden.exit_code([r]) == 1


def test_eager_that_moved_is_not_blamed_on_the_compiler(root):
    model = root / "models" / "train_tiny.py"
    model.write_text(TRAIN_TINY.replace("torch.manual_seed(0)", "torch.manual_seed(1)"))
    r = check(root)
    assert r.status is golden.Status.EAGER_CHANGED, golden.format_result(r)
    assert "the runtime's training matches today's eager PyTorch: re-record" in r.message


def test_update_rerecords_a_training_golden(root, monkeypatch, capsys):
    g = root / "goldens" / "train_tiny"
    data = json.loads((g / "golden.json").read_text())
    data["train"]["weights"][0]["sha256"] = "0" * 64
    (g / "golden.json").write_text(F.json_text(data))
    assert main(["golden", "check", "--dir", str(root / "goldens"), "--update", "-q"]) == 0
    assert "re-recorded (was weights' bits changed)" in capsys.readouterr().out
    assert F.read_golden_json(g)["train"]["weights"][0]["sha256"] != "0" * 64
    assert F.read_golden_json(g)["train"]["steps"] == 2  # its own training settings


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda tr: tr.update(steps=0), "train.steps must be an integer >= 1"),
        (lambda tr: tr["losses"].append(1.0), "must hold one loss per step (2)"),
        (lambda tr: tr.update(optimizer={"type": "Adam"}), "train.optimizer must be an optimizer's settings"),
        (lambda tr: tr["weights"][1].update(sha256="xyz"), "train.weights[1].sha256 must be a sha256"),
        (lambda tr: tr["weights"][0].update(kind="bias"), "train.weights[0].kind must be parameter or buffer"),
        (lambda tr: tr["tolerance"].pop("weight_abs"), "train.tolerance.weight_abs is missing"),
    ],
)
def test_a_damaged_training_golden_is_refused(root, edit, message):
    g = root / "goldens" / "train_tiny"
    data = json.loads((g / "golden.json").read_text())
    edit(data["train"])
    (g / "golden.json").write_text(F.json_text(data))
    with pytest.raises(golden.WaferError, match="the golden is damaged") as e:
        check(root)
    assert message in str(e.value)


def test_a_training_golden_has_no_other_mode_or_precision(root):
    with pytest.raises(golden.WaferError, match="is a training golden: it trains in stream mode, fp32"):
        golden.check_golden(root / "goldens" / "train_tiny", mode="pipeline")


def test_edited_eager_weights_are_refused(root):
    g = root / "goldens" / "train_tiny"
    arrays = dict(np.load(g / "eager.npz"))
    arrays["fc1.bias"] = arrays["fc1.bias"] + 1
    (g / "eager.npz").write_bytes(F.npz_bytes(arrays))
    with pytest.raises(golden.WaferError, match="differs from what golden.json recorded"):
        check(root)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "2"], "--steps is a training option: add --train"),
        (["--train", "--steps", "0"], "--steps must be at least 1, got 0"),
        (["--train", "--seed", "1"], "--seed does not apply to a training golden"),
        (["--train", "--precision", "bf16"], "--precision does not apply to a training golden"),
        (["--train", "--betas", "0.9,0.99"], "--betas is not an option of sgd"),
    ],
)
def test_record_train_flags(root, capsys, args, message):
    dest = root / "new"
    assert main(["golden", "record", str(root / "models" / "train_tiny.py"), "--dir", str(dest), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not dest.exists()


def test_record_train_from_the_command_line(root, capsys):
    dest = root / "cli"
    args = ["--train", "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9", "--steps", "2", "-q"]
    assert main(["golden", "record", str(root / "models" / "train_tiny.py"), "--dir", str(dest), *args]) == 0
    tr = F.read_golden_json(dest / "train_tiny")["train"]
    assert tr["optimizer"] == SGD(lr=0.1, momentum=0.9).to_dict() and tr["steps"] == 2
    capsys.readouterr()
    assert main(["golden", "check", "--dir", str(dest), "-q"]) == 0
    assert "1 pass" in capsys.readouterr().out


PLUGIN_TEST = """
import torch
from torch import nn
from torch.nn import functional as F

from runtime.optim import AdamW


class TinyClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x, labels):
        return F.cross_entropy(self.fc2(torch.relu(self.fc1(x))), labels)


def test_tiny_training(wafer_golden):
    torch.manual_seed(0)
    model = TinyClassifier().train()
    inputs = (torch.randn(4, 8), torch.randint(0, 4, (4,)))
    r = wafer_golden.check(model, inputs, name="tiny_train", train=True, optimizer=AdamW(lr=LR), steps=2)
    assert r.ok
"""


def test_the_plugin_records_then_checks_a_training_golden(recorded, pytester):
    pytester.makepyfile(test_train=PLUGIN_TEST.replace("LR", "1e-2"))
    first = pytester.runpytest_subprocess("-q")
    first.assert_outcomes(passed=1)
    assert "recorded 1 golden(s)" in first.stdout.str()
    data = F.read_golden_json(pytester.path / "goldens" / "tiny_train")
    assert data["train"]["steps"] == 2 and data["train"]["optimizer"]["lr"] == 1e-2
    again = pytester.runpytest_subprocess("-q")
    again.assert_outcomes(passed=1)
    assert "recorded" not in again.stdout.str()
    pytester.makepyfile(test_train=PLUGIN_TEST.replace("LR", "2e-2"))  # other settings than recorded
    other = pytester.runpytest_subprocess("-q")
    other.assert_outcomes(failed=1)
    assert "re-record it with --wafer-update-goldens" in other.stdout.str()
