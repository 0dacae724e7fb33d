"""A 250 MB training store (18M parameters streamed as bf16, fp32 masters, AdamW) takes two steps (the first
accumulating two micro-batches and clipping, the second streaming) and two commits in a process whose peak
RSS grows by a small fraction of the store: the update holds chunks, never tensors (measured: +28 MB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux) to read VmHWM")
def test_peak_rss_growth_is_a_fraction_of_the_store(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    probe = [sys.executable, "-m", "tests.training.memory_probe"]
    subprocess.run(probe + ["create", str(tmp_path / "s"), "18000000"], cwd=ROOT, env=env, check=True, timeout=600)
    r = subprocess.run(
        probe + ["train", str(tmp_path / "s")],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=900,
        capture_output=True,
        text=True,
    )
    m = json.loads(r.stdout)
    assert m["store"] > 240e6
    growth = m["peak"] - m["base"]
    assert growth < 0.25 * m["store"], f"peak RSS grew by {growth / 1e6:.0f} MB for a {m['store'] / 1e6:.0f} MB store"
