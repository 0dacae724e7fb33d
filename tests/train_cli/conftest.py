"""One compiled training directory for the session (the MLP classifier, AdamW, 2 micro-batches per step, clipping:
every kind of optimizer state and the accumulator); tests train copies of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def compiled_mlp(tmp_path_factory) -> Path:
    from runtime.optim import AdamW
    from wafercc.driver import compile_training
    from wafercc.frontend import load_model_file

    model, inputs = load_model_file(ROOT / "examples" / "train_mlp.py")
    out = tmp_path_factory.mktemp("train_cli") / "mlp"
    compile_training(model, inputs, AdamW(lr=1e-3), micro_batches=2, clip_norm=1.0, name="train_mlp", out_dir=out)
    return out


@pytest.fixture
def mlp_dir(compiled_mlp, tmp_path) -> Path:
    """A fresh copy of the compiled directory (training changes its store)."""
    d = tmp_path / "mlp"
    shutil.copytree(compiled_mlp, d)
    return d
