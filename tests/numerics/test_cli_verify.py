"""`wafercc verify` through subprocess: exit 0 on a match, 1 on a real mismatch, 2 on a user error."""

from __future__ import annotations

import numpy as np
import pytest

from tests.numerics.test_cli_run import ROOT, wafercc

MODELS = ROOT / "tests" / "numerics" / "models"


@pytest.mark.parametrize("example", ["mlp", "cnn"])
def test_verify_examples_match(example):
    r = wafercc("verify", f"examples/{example}.py")
    assert r.returncode == 0, r.stdout + r.stderr
    row = next(line for line in r.stdout.splitlines() if line.strip().startswith("out0"))
    assert row.split()[-1] == "ok" and "f32" in row
    assert "max abs" in r.stdout and "pcc" in r.stdout and "match: 1 of 1 output(s) within tolerance" in r.stdout
    assert "bisect" not in r.stdout  # only on a mismatch or --bisect


def test_verify_with_seed_npz_and_bisect(tmp_path):
    r = wafercc("verify", "examples/mlp.py", "--seed", "3", "--bisect", "-o", tmp_path / "build")
    assert r.returncode == 0, r.stderr
    assert "on seeded random inputs (seed 3)" in r.stdout and "no divergence" in r.stdout
    assert (tmp_path / "build" / "model.wir").is_file()  # -o keeps the compiled model
    np.savez(tmp_path / "in.npz", x=np.ones((8, 784), np.float32))
    r = wafercc("verify", "examples/mlp.py", "--inputs", tmp_path / "in.npz")
    assert r.returncode == 0 and f"on {tmp_path / 'in.npz'}" in r.stdout, r.stderr


def test_verify_mismatch_exits_1_and_bisects():
    r = wafercc("verify", MODELS / "drifting.py")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL" in r.stdout and "MISMATCH: 0 of 1 output(s)" in r.stdout and "worst at [" in r.stdout
    assert "bisect: compared" in r.stdout  # ran by itself
    assert "the captured graph itself differs from eager PyTorch" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        ([MODELS / "no_model.py"], "defines no 'model' or 'get_model()'"),
        (["examples/mlp.py", "--inputs", "missing.npz"], "cannot read inputs from 'missing.npz'"),
        (["examples/mlp.py", "--rtol", "-1"], "--rtol must be a number >= 0"),
    ],
)
def test_verify_user_errors_exit_2(args, message, tmp_path):
    r = wafercc("verify", *args, "-o", tmp_path / "build")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "build").exists() or "--inputs" in args
