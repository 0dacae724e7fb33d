"""verify --train --bisect: a broken backward kernel is named, with the model's line, and the first gradient
it spoils; a run that matches prints nothing extra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import runtime.kernels as K
from wafercc.frontend import load_model_file
from wafercc.numerics.train_bisect import bisect_training

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "train_mlp.py"
RELU2_LINE = "x = torch.relu(self.fc2(x))"
# The relu backward of fc2 (aten.where on the [16, 64] gradient; the relu's mask) off by half, that shape only.
BROKEN_WHERE = (
    "import sys, runtime.kernels as K; where = K.KERNELS['where']; "
    "K.KERNELS['where'] = lambda op, *a: (lambda r: r * r.dtype.type(1.5) if r.shape == (16, 64) else r)"
    "(where(op, *a)); "
    "from wafercc.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _line(text: str) -> int:
    return next(i for i, s in enumerate(MLP.read_text().splitlines(), start=1) if s.strip() == text)


def wafercc(*args, broken: bool = False):
    head = ["-c", BROKEN_WHERE] if broken else ["-m", "wafercc.cli"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, *head, *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env)


def test_bisect_names_the_broken_relu_backward_and_its_line():
    r = wafercc("verify", "examples/train_mlp.py", "--train", "--steps", 1, "--bisect", broken=True)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "MISMATCH" in out
    # fc2's relu backward feeds fc2's gradients first (the backward runs the last layer first), then fc1's
    assert "first diverging gradient: fc2.bias" in out and "also fc2.weight, fc1.bias, fc1.weight" in out
    assert "the backward op behind it" in out
    assert "compared with FX node 'where_4' (aten.where.self)" in out
    assert f"at examples/train_mlp.py:{_line(RELU2_LINE)}:  {RELU2_LINE}" in out
    assert "Traceback" not in r.stderr


def test_bisect_prints_nothing_when_training_matches():
    r = wafercc("verify", "examples/train_mlp.py", "--train", "--steps", 1, "--bisect")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "bisect" not in r.stdout and "match: every step's loss" in r.stdout


def test_bisect_names_a_broken_matmul_for_one_shape(monkeypatch):
    """The mm kernel wrong for the input gradient of fc3 ([16, 10] x [10, 64]) only: the op is that mm, the
    line fc3's, and every gradient below fc3 diverges while fc3's own are right."""
    mm = K.KERNELS["mm"]

    def broken(op, a, b):
        r = mm(op, a, b)
        return r + r.dtype.type(1e-3) if a.shape == (16, 10) and b.shape == (10, 64) else r

    monkeypatch.setitem(K.KERNELS, "mm", broken)
    model, inputs = load_model_file(MLP)
    r = bisect_training(model, inputs, name="train_mlp", source="examples/train_mlp.py", cwd=str(ROOT))
    first = r.bisect.first
    assert r.phase == "backward" and first.target == "aten.mm" and "= mm " in first.op
    fc3_line = "return F.cross_entropy(self.fc3(x), labels)"
    assert (first.loc.line, first.source_line) == (_line(fc3_line), fc3_line)
    grads = [o.target for o in r.outputs if o.role == "grad"]
    assert grads[0] == "fc2.bias" and "fc3.weight" not in grads and "fc3.bias" not in grads
    assert not any(o.role == "loss" for o in r.outputs)  # the forward is right
    assert "the backward op behind it" in r.text()


def test_bisect_of_a_correct_runtime_finds_nothing():
    model, inputs = load_model_file(MLP)
    r = bisect_training(model, inputs, name="train_mlp", source="examples/train_mlp.py", cwd=str(ROOT))
    assert r.bisect.first is None and not r.outputs and r.bisect.compared > 50
    assert "the joint graph's step-1 values all match" in r.text()


def test_a_broken_forward_op_is_named_as_forward_with_the_loss(monkeypatch):
    """relu wrong on fc2's [16, 64] activations: a forward op, so the loss diverges too, and the op is named
    at the relu line as the forward op behind the gradients."""
    relu = K.KERNELS["relu"]
    monkeypatch.setitem(
        K.KERNELS, "relu", lambda op, x: relu(op, x) * (x.dtype.type(1.5) if x.shape == (16, 64) else 1)
    )
    model, inputs = load_model_file(MLP)
    r = bisect_training(model, inputs, name="train_mlp", source="examples/train_mlp.py", cwd=str(ROOT))
    first = r.bisect.first
    assert r.phase == "forward" and first.target == "aten.relu"
    assert (first.loc.line, first.source_line) == (_line(RELU2_LINE), RELU2_LINE)
    assert any(o.role == "loss" for o in r.outputs) and r.first_grad is not None
    assert "the loss diverges too" in r.text() and "the forward op behind it" in r.text()
