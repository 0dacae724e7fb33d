"""verify --train: the runtime's training steps (runtime/training.py) against eager PyTorch with torch.optim,
for the three training examples; the command's exit codes and messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime.optim import AdamW, SGD
from runtime.training import TrainingRunError, TrainStep
from tests.cli_runner import run_cli
from wafercc.frontend import load_model_file
from wafercc.numerics.training import compare_runs, compare_training

ROOT = Path(__file__).resolve().parents[2]
OPTIMIZERS = {"sgd": SGD(lr=0.05, momentum=0.9), "adamw": AdamW(lr=1e-3)}


@pytest.mark.parametrize(
    "example,opt",
    [
        ("train_mlp", "sgd"),
        ("train_mlp", "adamw"),
        ("train_cnn", "sgd"),
        ("train_gpt", "adamw"),
        ("train_bert", "adamw"),
    ],
)
def test_examples_train_like_eager_pytorch(compiled_training, example, opt):
    model, inputs = load_model_file(ROOT / "examples" / f"{example}.py")
    v = compare_training(model, inputs, OPTIMIZERS[opt], steps=3, compiled=compiled_training(example, opt))
    assert v.passed, [c for c in v.failures()]
    # well inside the policy: the first loss is the same forward, and it moves (the model trains)
    (a1, b1), (a3, b3) = v.losses[0], v.losses[-1]
    assert abs(a1 - b1) <= 1e-6 * abs(b1) and a3 < a1 and b3 < b1
    assert all(c.max_abs <= 0.1 * c.bound for c in v.grads)  # step-1 gradients: 10x inside their bound


def test_tied_embedding_and_batch_norm_statistics_are_checked(compiled_training):
    model, inputs = load_model_file(ROOT / "examples" / "train_cnn.py")
    v = compare_training(model, inputs, OPTIMIZERS["sgd"], steps=2, compiled=compiled_training("train_cnn", "sgd"))
    names = {c.name for c in v.weights}
    assert {"bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"} <= names
    counter = next(c for c in v.weights if c.name == "bn1.num_batches_tracked")
    assert counter.passed and counter.bound == 0.0  # integers: exactly


def test_a_wrong_weight_or_loss_fails_the_comparison():
    """The comparison can fail: a weight off by more than its bound, a loss off by more than its bound."""
    w = np.ones((3, 3), np.float32)
    good = {"losses": [1.0, 0.9], "grads": {"w": w}, "weights": {"w": w}}
    assert compare_runs(good, good, 2, OPTIMIZERS["sgd"], {}).passed
    bad_w = {**good, "weights": {"w": w + 1e-3}}
    assert not compare_runs(bad_w, good, 2, OPTIMIZERS["sgd"], {}).passed
    bad_loss = {**good, "losses": [1.0, 0.9 + 1e-3]}
    v = compare_runs(bad_loss, good, 2, OPTIMIZERS["sgd"], {})
    assert not v.passed and v.failures()[0].name == "loss step 2"


def test_train_step_api(compiled_training, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(compiled_training("train_mlp", "sgd"), d)
    _, (x, y) = load_model_file(ROOT / "examples" / "train_mlp.py")
    with TrainStep(d) as step:
        first = step.run([x.numpy(), y.numpy()])
        second = step.run({"x": x.numpy(), "labels": y.numpy()})
        assert second < first and step.store.step == 2
        step.store.commit()
    with TrainStep(d) as step:  # reopening is resuming: at the last commit
        assert step.store.step == 2


def test_train_step_refuses_an_inference_directory(tmp_path):
    with pytest.raises(TrainingRunError, match="not a compiled training model.*--train"):
        TrainStep(tmp_path)


def wafercc(*args, cwd=None):
    return run_cli(*args, cwd=cwd or ROOT)


def test_cli_verify_train_with_accumulation_and_clipping(tmp_path):
    out = tmp_path / "out"
    r = wafercc(
        "verify", "examples/train_mlp.py", "--train", "--steps", 2, "--optimizer", "adamw", "--lr", "1e-3",
        "--grad-accum", 2, "--clip-grad-norm", 0.5, "-o", out,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "match: every step's loss and every weight within tolerance" in r.stdout
    assert (out / "store" / "checkpoint.json").is_file() and (out / "training.json").is_file()


DROPOUT = """
import torch
from torch import nn
class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.drop = nn.Dropout(0.2)
    def forward(self, x):
        return self.drop(self.fc(x)).sum()
model = M()
example_inputs = (torch.randn(3, 4),)
"""


@pytest.mark.parametrize(
    "args,message",
    [
        (["compile", "{model}", "--train", "-o", "{out}"], "dropout with p=0.2 at 'drop' (Dropout)"),
        (
            ["compile", "examples/train_mlp.py", "--momentum", "0.9", "-o", "{out}"],
            "--momentum is a training option: add --train",
        ),
        (
            ["compile", "examples/train_mlp.py", "--train", "--optimizer", "adamw", "--betas", "0.9", "-o", "{out}"],
            "--betas takes two numbers, B1,B2 (like 0.9,0.999), got '0.9'",
        ),
        (
            ["compile", "examples/train_mlp.py", "--train", "--mode", "pipeline", "-o", "{out}"],
            "--train plans the whole training step in stream mode",
        ),
        (
            ["compile", "examples/train_mlp.py", "--train", "--eps", "1e-6", "-o", "{out}"],
            "--eps is not an option of sgd",
        ),
        (["compile", "examples/train_mlp.py", "--train", "--lr", "-1", "-o", "{out}"], "SGD: lr must be"),
        (["compile", "examples/mlp.py", "--train", "-o", "{out}"], "one scalar loss"),
        (["verify", "examples/train_mlp.py", "--train", "--steps", "0"], "--steps must be at least 1"),
        (["verify", "examples/train_mlp.py", "--train", "--seed", "3"], "--seed does not apply to verify --train"),
        (["verify", "examples/mlp.py", "--steps", "2"], "--steps is a training option"),
    ],
)
def test_cli_mistakes_exit_2_with_one_message_and_write_nothing(tmp_path, args, message):
    model = tmp_path / "dropout.py"
    model.write_text(DROPOUT)
    out = tmp_path / "out"
    r = wafercc(*[a.format(model=model, out=out) for a in args])
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
