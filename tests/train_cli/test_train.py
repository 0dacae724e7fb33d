"""``wafercc train``: batches in order, checkpoints, resume ending with the bytes of an uninterrupted run, kills
at any point of a checkpoint, the loss log, and one clear message (exit 2, nothing written) per mistake."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runtime.training import TrainStep
from runtime.training_store import CHECKPOINT_FILE
from tests.train_cli.util import make_data, store_state, wafercc
from wafercc.cli import main


def train(d: Path, *args) -> int:
    return main(["train", str(d), *map(str, args)])


def test_trains_the_data_in_order_and_logs_every_loss(mlp_dir, tmp_path, capsys):
    data = make_data(tmp_path / "data.npz", samples=40)  # 2 batches of 16, 8 samples unused
    ref = tmp_path / "ref"
    shutil.copytree(mlp_dir, ref)
    log = tmp_path / "losses.csv"
    assert train(mlp_dir, "--data", data, "--steps", 3, "--log", log) == 0
    out, err = capsys.readouterr()
    assert "steps 1-3 on" in out and "40 samples, 2 micro-batches of 16 per step" in out and "8 unused" in out
    assert "wafercc: step 3/3 loss" in err

    # The same steps by hand: each step's micro-batches are batches 0 and 1 of the data, in order.
    arrays = np.load(data)
    x, y = arrays["x"], arrays["labels"]
    with TrainStep(ref) as step:
        losses = [step.run([[x[:16], y[:16]], [x[16:32], y[16:32]]]) for _ in range(3)]
        step.store.commit()
    assert log.read_text() == "step,loss\n" + "".join(f"{i},{v!r}\n" for i, v in enumerate(losses, 1))
    got, want = store_state(mlp_dir), store_state(ref)
    assert got[0] == want[0] == 3
    assert got[1] == want[1]  # every tensor's sha256: weights, AdamW state
    doc = json.loads((mlp_dir / "store" / CHECKPOINT_FILE).read_text())["data"]["train"]
    assert doc["losses"] == losses and doc["batch"] == 16 and doc["next_batch"] == 0


def test_without_data_trains_on_the_example_inputs(mlp_dir, capsys):
    inputs = np.load(mlp_dir / "inputs.npz")
    assert sorted(inputs.files) == ["labels", "x"] and inputs["x"].shape == (16, 784)
    assert train(mlp_dir, "--steps", 2) == 0
    assert "on the example inputs (inputs.npz)" in capsys.readouterr().out
    with TrainStep(mlp_dir) as step:
        assert step.store.step == 2


def test_without_steps_trains_one_pass_over_the_data(mlp_dir, tmp_path, capsys):
    """No --steps: one pass, each batch once. 88 samples are 5 batches of 16; a step takes this model's 2
    micro-batches, so 2 steps, and the fifth batch waits for the next pass."""
    data = make_data(tmp_path / "data.npz", samples=88)
    assert train(mlp_dir, "--data", data) == 0
    assert "steps 1-2 on" in capsys.readouterr().out
    with TrainStep(mlp_dir) as step:
        assert step.store.step == 2


def test_without_steps_or_data_takes_one_step(mlp_dir, capsys):
    assert train(mlp_dir) == 0
    assert "step 1 on the example inputs" in capsys.readouterr().out
    # resumed without --steps, the run is the same one pass: the store is past it
    assert train(mlp_dir, "--steps", 2, "--resume") == 0
    capsys.readouterr()
    err = refused(capsys, mlp_dir, "--resume")
    assert "is at step 2, past one pass over the data (1 step(s): no --steps given)" in err


def test_resume_ends_with_the_bytes_of_an_uninterrupted_run(mlp_dir, tmp_path, capsys):
    data = make_data(tmp_path / "data.npz", samples=48)  # 3 batches: steps straddle the epoch
    whole = tmp_path / "whole"
    shutil.copytree(mlp_dir, whole)
    assert train(whole, "--data", data, "--steps", 6, "--checkpoint-every", 2, "--log", tmp_path / "w.csv") == 0
    assert train(mlp_dir, "--data", data, "--steps", 3, "--log", tmp_path / "r.csv") == 0
    assert train(mlp_dir, "--data", data, "--steps", 6, "--resume", "--log", tmp_path / "r.csv") == 0
    assert "steps 4-6" in capsys.readouterr().out
    (step_a, shas_a, arrays_a), (step_b, shas_b, arrays_b) = store_state(whole), store_state(mlp_dir)
    assert step_a == step_b == 6 and shas_a == shas_b
    assert arrays_a.keys() == arrays_b.keys()
    for name in arrays_a:
        assert arrays_a[name].tobytes() == arrays_b[name].tobytes(), name
    assert (tmp_path / "w.csv").read_bytes() == (tmp_path / "r.csv").read_bytes()
    # Resuming a finished run again: nothing to train, the same bytes.
    assert train(mlp_dir, "--data", data, "--steps", 6, "--resume") == 0
    assert "nothing to train" in capsys.readouterr().out
    assert store_state(mlp_dir)[1] == shas_a


@pytest.fixture(scope="module")
def uninterrupted(compiled_mlp, tmp_path_factory):
    """6 steps with checkpoints at 2, 4, 6: the store's tensors and the log."""
    root = tmp_path_factory.mktemp("whole")
    data = make_data(root / "data.npz", samples=48)
    d = root / "mlp"
    shutil.copytree(compiled_mlp, d)
    assert train(d, "--data", data, "--steps", 6, "--checkpoint-every", 2, "--log", root / "log.csv") == 0
    return data, store_state(d)[1], (root / "log.csv").read_text()


@pytest.mark.parametrize(
    "point, at",
    [
        ("step3:finished", 2),  # a step done, not committed
        ("commit4:hashed", 2),
        ("commit4:synced", 2),
        ("commit4:written", 2),  # the new record written, not renamed over the old
        ("commit4:renamed", 4),  # committed; the log not yet rewritten
        ("file-written", 2),  # the first log rewrite's temp file written, not renamed
    ],
)
def test_killed_at_a_checkpoint_resumes_to_the_same_bytes(uninterrupted, mlp_dir, tmp_path, point, at):
    data, shas, log_text = uninterrupted
    log = tmp_path / "log.csv"
    args = ("train", mlp_dir, "--data", data, "--steps", 6, "--checkpoint-every", 2, "--log", log)
    r = wafercc(*args, env={"WAFERCC_TEST_KILL_AT": point})
    assert r.returncode == 86, r.stderr
    step, _, _ = store_state(mlp_dir)  # opens: checksums verified
    assert step == at
    lines = log.read_text().splitlines() if log.exists() else ["step,loss"]
    assert lines == log_text.splitlines()[: len(lines)] and len(lines) - 1 <= at  # never ahead of the store
    assert train(mlp_dir, "--data", data, "--steps", 6, "--checkpoint-every", 2, "--resume", "--log", log) == 0
    assert store_state(mlp_dir)[1] == shas
    assert log.read_text() == log_text
    assert not [p.name for p in tmp_path.iterdir() if "wafercc-tmp" in p.name]  # the killed temp is gone


# -- mistakes: one message each, exit 2, nothing trained or written -------------------------------------------


def refused(capsys, d: Path, *args) -> str:
    before = (d / "store" / CHECKPOINT_FILE).read_bytes() if (d / "store" / CHECKPOINT_FILE).exists() else None
    assert train(d, *args) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert out == ""
    if before is not None:
        assert (d / "store" / CHECKPOINT_FILE).read_bytes() == before
    return err


def test_not_a_training_directory(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "is not a compiled training model" in refused(capsys, tmp_path / "empty", "--steps", 1)


def test_an_inference_directory(tmp_path, capsys):
    r = wafercc("compile", "examples/mlp.py", "-o", tmp_path / "inf", "-q")
    assert r.returncode == 0, r.stderr
    assert "is not a compiled training model" in refused(capsys, tmp_path / "inf", "--steps", 1)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"labels": None}, "must be named like the model's inputs (x, labels): missing labels"),
        ({"y": np.zeros(40, np.int64)}, "unknown y"),
        ({"x": np.zeros((40, 784), np.float64)}, "array 'x' is float64[40, 784]; input %x takes samples of "),
        ({"x": np.zeros((40, 28, 28), np.float32)}, "give float32[N, 784]"),
        ({"labels": np.zeros((40, 1), np.int64)}, "takes samples of int64 scalars: give int64[N]"),
        ({"labels": np.zeros(39, np.int64)}, "different numbers of samples (dim 0: x 40, labels 39)"),
    ],
)
def test_bad_data(mlp_dir, tmp_path, capsys, override, message):
    data = make_data(tmp_path / "data.npz", **override)
    log = tmp_path / "log.csv"
    err = refused(capsys, mlp_dir, "--data", data, "--steps", 1, "--log", log)
    assert message in err and "--data" in err
    assert not log.exists()


def test_batch_larger_than_the_data(mlp_dir, tmp_path, capsys):
    data = make_data(tmp_path / "data.npz", samples=8)
    assert "holds 8 sample(s), fewer than one batch of 16" in refused(capsys, mlp_dir, "--data", data, "--steps", 1)


def test_data_that_is_not_an_npz_or_not_there(mlp_dir, tmp_path, capsys):
    (tmp_path / "d.npz").write_text("x,labels\n")
    assert "is not a valid .npz" in refused(capsys, mlp_dir, "--data", tmp_path / "d.npz", "--steps", 1)
    assert "does not exist" in refused(capsys, mlp_dir, "--data", tmp_path / "none.npz", "--steps", 1)


def test_a_batch_the_model_was_not_compiled_for(mlp_dir, capsys):
    err = refused(capsys, mlp_dir, "--steps", 1, "--batch", 8)
    assert "compiled for batches of 16" in err and "--batch 8" in err


@pytest.mark.parametrize("flag", ["--steps", "--batch", "--checkpoint-every"])
def test_counts_below_one(mlp_dir, capsys, flag):
    args = ["--steps", 1, flag, 0] if flag != "--steps" else ["--steps", 0]
    assert f"{flag} must be at least 1, got 0" in refused(capsys, mlp_dir, *args)


def test_resume_without_a_checkpoint(mlp_dir, capsys):
    assert "has no checkpoint to resume" in refused(capsys, mlp_dir, "--steps", 2, "--resume")


def test_a_trained_store_without_resume_is_never_retrained(mlp_dir, capsys):
    assert train(mlp_dir, "--steps", 2) == 0
    capsys.readouterr()
    err = refused(capsys, mlp_dir, "--steps", 4)
    assert "has trained 2 step(s) already" in err and "pass --resume" in err
    err = refused(capsys, mlp_dir, "--steps", 1)  # --steps at or below the store's step, without --resume
    assert "pass --resume" in err


def test_resume_past_steps(mlp_dir, capsys):
    assert train(mlp_dir, "--steps", 2) == 0
    capsys.readouterr()
    assert "is at step 2, past --steps 1" in refused(capsys, mlp_dir, "--steps", 1, "--resume")


def test_resume_on_other_data(mlp_dir, tmp_path, capsys):
    assert train(mlp_dir, "--steps", 1, "--data", make_data(tmp_path / "a.npz", seed=1)) == 0
    capsys.readouterr()
    err = refused(capsys, mlp_dir, "--steps", 2, "--resume", "--data", make_data(tmp_path / "b.npz", seed=2))
    assert "was trained on other data" in err and "resume with the same --data" in err


def test_resume_of_a_store_trained_elsewhere(mlp_dir, capsys):
    with TrainStep(mlp_dir) as step:
        inputs = np.load(mlp_dir / "inputs.npz")
        step.run([[inputs["x"], inputs["labels"]]] * 2)
        step.store.commit()
    err = refused(capsys, mlp_dir, "--steps", 2, "--resume")
    assert "was trained to step 1 outside wafercc train (its checkpoint records no data position)" in err


def test_no_example_inputs(mlp_dir, capsys):
    (mlp_dir / "inputs.npz").unlink()
    err = refused(capsys, mlp_dir, "--steps", 1)
    assert "has no inputs.npz (the example inputs; compile --train writes it): pass --data" in err


def test_a_log_wafercc_did_not_write_is_never_replaced(mlp_dir, tmp_path, capsys):
    log = tmp_path / "notes.csv"
    log.write_text("my notes\n")
    err = refused(capsys, mlp_dir, "--steps", 1, "--log", log)
    assert "is not a step,loss log that wafercc wrote" in err
    assert log.read_text() == "my notes\n"
    with TrainStep(mlp_dir) as step:
        assert step.store.step == 0


@pytest.mark.parametrize(
    "signature, message",
    [
        ("%x: tensor<4x8xf32>, %t: tensor<f32>", "input %t of @forward is a scalar: training data is cut"),
        ("%x: tensor<4x8xf32>, %y: tensor<3xi64>", "the inputs of @forward do not share a batch size (dim 0: %x 4"),
    ],
)
def test_inputs_that_cannot_be_cut_into_batches(signature, message):
    from runtime.trainer import TrainRunError, compiled_batch
    from wafercc.ir import parse

    func = parse(f"module @m {{\n  func @forward({signature}) -> () {{\n    return\n  }}\n}}\n").funcs[0]
    with pytest.raises(TrainRunError) as e:
        compiled_batch(func)
    assert message in str(e.value)


def test_damaged_example_inputs(mlp_dir, capsys):
    (mlp_dir / "inputs.npz").write_bytes(b"not a zip")
    err = refused(capsys, mlp_dir, "--steps", 1)
    assert "the example inputs of" in err and "are damaged: compile again" in err


def test_sigkill_at_any_moment_then_resume(uninterrupted, mlp_dir, tmp_path):
    """A real SIGKILL wherever it lands (after the first checkpoint, mid-step or mid-commit): the store opens at
    a checkpoint and resuming ends with the uninterrupted run's bytes and log."""
    data, shas, log_text = uninterrupted
    log = tmp_path / "log.csv"
    args = ["train", mlp_dir, "--data", data, "--steps", 6, "--checkpoint-every", 1, "--log", log, "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "wafercc.cli", *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = mlp_dir / "store" / CHECKPOINT_FILE
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if json.loads(ckpt.read_text())["step"] >= 1:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step, _, _ = store_state(mlp_dir)
    assert 1 <= step <= 6
    assert train(mlp_dir, "--data", data, "--steps", 6, "--resume", "--log", log) == 0
    assert store_state(mlp_dir)[1] == shas
    assert log.read_text() == log_text
