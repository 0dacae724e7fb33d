"""Helpers of the wafercc train tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def make_data(path: Path, samples: int = 40, seed: int = 1, **override) -> Path:
    """Training data for train_mlp: x float32[N, 784], labels int64[N] in [0, 10)."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x": rng.standard_normal((samples, 784), dtype=np.float32),
        "labels": rng.integers(0, 10, samples).astype(np.int64),
    }
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def wafercc(*args, env=None):
    """The command in its own interpreter (kills must not take pytest with them)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "wafercc.cli", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def store_state(d: Path) -> tuple[int, dict, dict]:
    """(step, every tensor's sha256 by file and name, the arrays themselves) of a directory's committed store."""
    from runtime.training_store import CHECKPOINT_FILE, TrainingStore

    doc = json.loads((d / "store" / CHECKPOINT_FILE).read_text())
    shas = {f: {n: m["sha256"] for n, m in t.items()} for f, t in doc["tensors"].items()}
    with TrainingStore(d / "store") as ts:
        arrays = {n: np.array(ts.weight(n)) for n in ts.params + ts.buffers}
        arrays.update({f"{n}/master": np.array(ts.master(n)) for n in ts.params})
        arrays.update({f"{n}/{k}": np.array(v) for n in ts.params for k, v in ts.state(n).items()})
    return doc["step"], shas, arrays
