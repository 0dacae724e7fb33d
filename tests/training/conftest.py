"""Compiled training examples, shared by the session: each (example, optimizer) compiles once."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def compiled_training(tmp_path_factory):
    """compiled_training(example, optimizer_key) -> the compiled directory (a fresh copy's path is the
    caller's business: steps change the store, so tests that step copy it first)."""
    from runtime.optim import AdamW, SGD
    from wafercc.driver import compile_training
    from wafercc.frontend import load_model_file

    optimizers = {"sgd": SGD(lr=0.05, momentum=0.9), "adamw": AdamW(lr=1e-3)}
    cache: dict[tuple[str, str], Path] = {}

    def get(example: str, opt: str = "sgd") -> Path:
        key = (example, opt)
        if key not in cache:
            model, inputs = load_model_file(ROOT / "examples" / f"{example}.py")
            out = tmp_path_factory.mktemp(f"{example}_{opt}") / "out"
            compile_training(model, inputs, optimizers[opt], name=example, out_dir=out)
            cache[key] = out
        return cache[key]

    return get
