"""--precision bf16 training: bf16 weights streamed from fp32 masters, the step computed in bf16 storage, against
eager PyTorch on a bf16 copy of the model with fp32 masters and torch.optim (wafercc/numerics/training.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from runtime.errors import RuntimeExecutionError
from runtime.optim import AdamW, SGD
from runtime.training import TrainStep
from tests.train_cli.util import wafercc
from wafercc.driver import compile_training
from wafercc.errors import UsageError
from wafercc.frontend import load_model_file
from wafercc.numerics.training import compare_runs, compare_training

ROOT = Path(__file__).resolve().parents[2]
BF16 = np.dtype(ml_dtypes.bfloat16)


def _is_bf16(x: float) -> bool:
    return float(np.float32(x).astype(BF16)) == float(np.float32(x))


@pytest.mark.parametrize(
    "example,opt,k",
    [("train_mlp", SGD(lr=0.05, momentum=0.9), 1), ("train_mlp", AdamW(lr=1e-3), 2), ("train_gpt", AdamW(lr=1e-3), 1)],
)
def test_bf16_training_matches_eager_bf16_with_fp32_masters(example, opt, k):
    model, inputs = load_model_file(ROOT / "examples" / f"{example}.py")
    v = compare_training(model, inputs, opt, steps=3, precision="bf16", micro_batches_per_step=k)
    assert v.passed, v.failures()
    assert all(_is_bf16(a) for a, _ in v.losses) or k > 1  # the runtime's loss is a bf16 value
    (a1, b1), (a3, b3) = v.losses[0], v.losses[-1]
    assert abs(a1 - b1) <= 2.0**-7 * abs(b1) and a3 < a1 and b3 < b1  # step 1: at most one bf16 ulp
    assert all(c.max_abs <= 0.5 * c.bound for c in v.grads)  # gradients: measured up to 0.3 of their bound


def test_bf16_store_streams_the_masters_rounded(tmp_path):
    model, (x, y) = load_model_file(ROOT / "examples" / "train_mlp.py")
    want = model.fc1.weight.detach().numpy().copy()
    out = tmp_path / "bf16"
    compile_training(model, (x, y), SGD(lr=0.1), precision="bf16", out_dir=out)
    assert json.loads((out / "training.json").read_text())["precision"] == "bf16"
    with TrainStep(out) as step:
        assert step.precision == "bf16" and step.interp.precision == "bf16"
        assert step.store.weight("fc1.weight").dtype == BF16
        assert np.array_equal(step.store.master("fc1.weight"), want)  # the fp32 master is the model's weight
        step.run([x.numpy(), y.numpy()])
        master = np.array(step.store.master("fc1.weight"))
        assert master.dtype == np.float32 and not np.array_equal(master, want)
        assert np.array_equal(
            np.array(step.store.weight("fc1.weight")).view(np.uint16), master.astype(BF16).view(np.uint16)
        )


def test_the_bf16_policy_fails_a_wrong_gradient_weight_or_loss():
    g = np.linspace(-1, 1, 9, dtype=np.float32).reshape(3, 3)
    good = {"losses": [2.0, 1.9], "grads": {"w": g}, "weights": {"w": g}}
    opt = SGD(lr=0.1)
    assert compare_runs(good, good, 2, opt, {}, "bf16").passed
    assert not compare_runs({**good, "grads": {"w": g * 1.1}}, good, 2, opt, {}, "bf16").passed  # 10% of max|g|
    assert compare_runs({**good, "grads": {"w": g * 1.05}}, good, 2, opt, {}, "bf16").passed  # 5%: within 2^-4
    small = {**good, "grads": {"w": g * 1e-3}}  # no floor of 1: a small gradient is judged on its own scale
    assert not compare_runs({**small, "grads": {"w": g * 1.1e-3}}, small, 2, opt, {}, "bf16").passed
    assert not compare_runs({**good, "weights": {"w": g + 0.02}}, good, 2, opt, {}, "bf16").passed  # > 2·2^-7
    assert not compare_runs({**good, "losses": [2.0, 1.9 + 0.07]}, good, 2, opt, {}, "bf16").passed  # > 2·2^-6·1.9


def test_cli_compile_train_and_verify_in_bf16(tmp_path):
    out = tmp_path / "m"
    r = wafercc("compile", "examples/train_mlp.py", "--train", "--precision", "bf16", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "6 parameters streamed as bf16 from fp32 masters, SGD lr 0.001" in r.stdout
    r = wafercc("train", out, "--steps", 2, "--log", tmp_path / "log.csv")
    assert r.returncode == 0, r.stderr
    losses = [float(line.split(",")[1]) for line in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    assert len(losses) == 2 and all(_is_bf16(v) for v in losses)
    r = wafercc("verify", "examples/train_mlp.py", "--train", "--precision", "bf16", "--steps", 2)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--train --precision bf16: 2 step(s)" in r.stdout and "tolerance (bf16): loss 2^-6" in r.stdout


def test_bf16_mistakes(tmp_path, compiled_training):
    r = wafercc("compile", "examples/mlp.py", "--precision", "bf16", "-o", tmp_path / "x")
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: --precision is a training option of compile: add --train (an inference model runs in the "
        "precision wafercc run --precision or verify --precision choose)"
    )
    assert not (tmp_path / "x").exists()
    model, inputs = load_model_file(ROOT / "examples" / "train_mlp.py")
    with pytest.raises(UsageError, match=r"training runs in fp32 or bf16 \(--precision\), not fp16: fp16 would need"):
        compile_training(model, inputs, SGD(lr=0.1), precision="fp16")
    d = tmp_path / "p"
    shutil.copytree(compiled_training("train_mlp", "sgd"), d)
    (d / "training.json").write_text(json.dumps({"micro_batches": 1, "clip_norm": None, "precision": "fp8"}))
    with pytest.raises(RuntimeExecutionError, match="training.json: precision must be one of fp32, bf16"):
        TrainStep(d)
    with pytest.raises(UsageError, match="in fp32; not SGD.*in bf16"):
        compare_training(model, inputs, SGD(lr=0.05, momentum=0.9), steps=1, precision="bf16",
                         compiled=compiled_training("train_mlp", "sgd"))  # fmt: skip
