"""Fixtures of the golden tests: the tiny model's golden, recorded once per session and copied into each
test that changes it (recording costs a compile; copying costs nothing)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.golden.util import write_tiny


@pytest.fixture(scope="session")
def recorded_tiny(tmp_path_factory) -> Path:
    """A root with models/tiny.py and goldens/tiny/, recorded once."""
    from wafercc import golden

    root = tmp_path_factory.mktemp("recorded")
    r = golden.record_file(write_tiny(root), root / "goldens", golden.Options())
    assert r.status is golden.Status.RECORDED, golden.format_result(r)
    return root


@pytest.fixture
def tiny_root(recorded_tiny, tmp_path) -> Path:
    """A private copy of the recorded root: a test may change the model or the golden."""
    root = tmp_path / "repo"
    shutil.copytree(recorded_tiny, root)
    return root


@pytest.fixture
def off_relu(monkeypatch):
    """The runtime's relu made slightly wrong (x 1.001): a compiler change that moves the numbers."""
    import runtime.kernels as K

    relu = K.KERNELS["relu"]
    monkeypatch.setitem(K.KERNELS, "relu", lambda op, x: relu(op, x) * x.dtype.type(1.001))
