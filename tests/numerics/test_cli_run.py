"""`wafercc run` through subprocess: outputs, stats, -o, and one clear message + exit 2 (and no output file)
for every kind of bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.cli_runner import run_cli

ROOT = Path(__file__).resolve().parents[2]


def wafercc(*args, cwd=ROOT):
    return run_cli(*args, cwd=cwd)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """examples/mlp.py compiled to a directory, with eager PyTorch's output on its example inputs."""
    import torch

    import wafercc
    from wafercc.frontend import load_model_file

    model, inputs = load_model_file(ROOT / "examples" / "mlp.py")
    out = tmp_path_factory.mktemp("run") / "mlp"
    wafercc.compile(model, inputs, name="mlp", out_dir=out)
    with torch.no_grad():
        want = model(*inputs).numpy()
    return out, inputs[0].numpy(), want


def test_run_with_inputs_writes_outputs(mlp, tmp_path):
    out, x, want = mlp
    np.savez(tmp_path / "in.npz", x=x)
    r = wafercc("run", out, "--inputs", tmp_path / "in.npz", "-o", tmp_path / "out.npz")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # inputs were given: no note about random ones
    with np.load(tmp_path / "out.npz") as z:
        got = z["out0"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    assert "out0  %" in r.stdout and "[8, 10]  f32" in r.stdout
    for label in (
        "weights streamed from MemoryX",
        "peak resident weights",
        "peak live activations",
        "wall time",
        "layers (top 3 of 3 by time)",
        "total (3 layers)",
    ):
        assert label in r.stdout, label
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_run_by_position_and_on_a_wir_file(mlp, tmp_path):
    out, x, _ = mlp
    np.savez(tmp_path / "in.npz", arg0=x)
    r = wafercc("run", out / "model.wir", "--inputs", tmp_path / "in.npz")
    assert r.returncode == 0, r.stderr


def test_run_without_inputs_says_they_are_random_and_is_seeded(mlp, tmp_path):
    out, _, _ = mlp
    runs = [wafercc("run", out, "--seed", 5, "-o", tmp_path / f"o{i}.npz") for i in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert "seeded random inputs (seed 5)" in runs[0].stderr and "%x: tensor<8x784xf32>" in runs[0].stderr
    assert (tmp_path / "o0.npz").read_bytes() == (tmp_path / "o1.npz").read_bytes()


def bad_npz(tmp_path, **arrays):
    np.savez(tmp_path / "in.npz", **arrays)
    return tmp_path / "in.npz"


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            {"y": np.zeros((8, 784), np.float32)},
            "inputs do not match @forward(%x: tensor<8x784xf32>): missing %x; unknown %y",
        ),
        (
            {"x": np.zeros((8, 783), np.float32)},
            "input %x must be tensor<8x784xf32> (float32[8, 784]), got float32[8, 783]",
        ),
        (
            {"x": np.zeros((8, 784), np.float64)},
            "input %x must be tensor<8x784xf32> (float32[8, 784]), got float64[8, 784]",
        ),
    ],
)
def test_bad_inputs(mlp, tmp_path, arrays, message):
    r = wafercc("run", mlp[0], "--inputs", bad_npz(tmp_path, **arrays), "-o", tmp_path / "out.npz")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and not (tmp_path / "out.npz").exists()


def damaged(mlp, tmp_path, how) -> Path:
    d = tmp_path / "m"
    shutil.copytree(mlp[0], d)
    how(d)
    return d


def flip_last_byte(d: Path) -> None:
    p = d / "weights.safetensors"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0x40
    p.write_bytes(bytes(data))


def unparsable(d: Path) -> None:
    p = d / "model.wir"
    p.write_text(p.read_text().replace("->", "=>", 1))


def unverifiable(d: Path) -> None:
    # A result type the op's own rule rejects: the generic verifier (all the runtime runs) accepts it.
    p = d / "model.wir"
    p.write_text(p.read_text().replace("tensor<8x10xf32>", "tensor<8x11xf32>"))


@pytest.mark.parametrize(
    "how, message",
    [
        (lambda d: (d / "weights.safetensors").unlink(), "no MemoryX store: "),
        (flip_last_byte, "does not match its sha256 in manifest.json: the store is corrupted"),
        (unparsable, "model.wir:"),
        (unverifiable, "[result-type]"),
        (lambda d: (d / "model.wir").unlink(), "is not a compiled model directory: it has no model.wir"),
    ],
)
def test_bad_model_dirs(mlp, tmp_path, how, message):
    r = wafercc("run", damaged(mlp, tmp_path, how), "-o", tmp_path / "out.npz")
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out.npz").exists()


def test_missing_path_and_exclusive_options(mlp, tmp_path):
    r = wafercc("run", tmp_path / "nothing")
    assert r.returncode == 2 and "does not exist (give a compiled model directory or a .wir file)" in r.stderr
    r = wafercc("run", mlp[0], "--inputs", "x.npz", "--seed", "1")
    assert r.returncode == 2 and "not allowed with argument --inputs" in r.stderr
