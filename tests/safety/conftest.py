"""Real outputs to break: a compiled model (WIR + MemoryX store + inputs) and a recorded golden, made once."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.golden.util import write_tiny


@pytest.fixture(scope="session")
def tiny_compiled(tmp_path_factory) -> Path:
    """A compiled tiny model (graph level: no plan, so it compiles in a second) and inputs.npz beside it."""
    from wafercc.frontend import load_model_file
    from wafercc.driver import compile

    root = tmp_path_factory.mktemp("safety-compiled")
    model, inputs = load_model_file(write_tiny(root))
    compile(model, inputs, name="tiny", emit="graph", out_dir=root / "out")
    np.savez(root / "inputs.npz", x=inputs[0].numpy())
    return root / "out"


@pytest.fixture
def store_copy(tiny_compiled, tmp_path) -> Path:
    d = tmp_path / "out"
    shutil.copytree(tiny_compiled, d)
    return d


@pytest.fixture(scope="session")
def tiny_golden(tmp_path_factory) -> Path:
    """A root with models/tiny.py and goldens/tiny/, recorded once."""
    from wafercc import golden

    root = tmp_path_factory.mktemp("safety-golden")
    r = golden.record_file(write_tiny(root), root / "goldens", golden.Options(target="mesh4"))
    assert r.status is golden.Status.RECORDED, golden.format_result(r)
    return root


@pytest.fixture
def golden_copy(tiny_golden, tmp_path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(tiny_golden, root)
    return root
