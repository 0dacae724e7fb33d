"""Kill the trainer at every point where it writes (chunk updates, accumulation, copies, each stage of a
commit, store creation) and check that the store then opens at the last checkpoint, checksums intact, and
that resuming ends with the bytes of an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from runtime.training_store import CHECKPOINT_FILE, TrainingStore
from tests.training.driver import train

ROOT = Path(__file__).resolve().parents[2]
KILL, TRACE = "WAFERCC_TEST_KILL_AT", "WAFERCC_TEST_TRACE_POINTS"
RUN = dict(steps=3, every=2, chunk=1024, piece=1024)  # commits at steps 2 and 3


def tensors(store: Path) -> tuple[int, dict]:
    doc = json.loads((store / CHECKPOINT_FILE).read_text())
    return doc["step"], doc["tensors"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The checkpoints an uninterrupted run commits (creation = step 0), and every kill point it passes."""
    root = tmp_path_factory.mktemp("ref")
    ckpts = {}
    for steps in (0, 2, 3):
        train(root / f"s{steps}", **{**RUN, "steps": steps})
        step, t = tensors(root / f"s{steps}")
        assert step == steps
        ckpts[steps] = t
    trace = root / "points.txt"
    os.environ[TRACE] = str(trace)
    try:
        train(root / "traced", **RUN)
    finally:
        del os.environ[TRACE]
    points = trace.read_text().split()
    assert len(points) == len(set(points))
    return ckpts, points


def run_killed(store: Path, point: str) -> int:
    """Run the driver in a forked child that os._exit(86)s at ``point``; its exit code."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.environ[KILL] = point
            train(store, **RUN)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_the_points_cover_every_stage(reference):
    _, points = reference
    stages = {p.split(":")[1].rstrip("0123456789") for p in points if p.startswith(("step", "commit"))}
    assert {"chunk", "finished", "hashed", "synced", "written", "renamed"} <= stages
    assert "create:written" in points and "create:renamed" in points
    assert len(points) >= 40


def test_kill_at_every_point_then_resume(reference, tmp_path):
    ckpts, points = reference
    seen = set()
    for i, point in enumerate(points):
        store = tmp_path / f"k{i}" / "s"
        assert run_killed(store, point) == 86, point
        if point == "create:written":  # killed before the store existed: nothing there but the temp dir
            assert not store.exists()
        else:
            with TrainingStore(store) as ts:  # opens, checksums verified
                assert ts.step in ckpts, point
                assert tensors(store)[1] == ckpts[ts.step], point
                assert ts.data.get("pos", 0) == ts.step
                seen.add(ts.step)
        train(store, **RUN)  # --resume
        assert tensors(store) == (3, ckpts[3]), point
    assert seen == {0, 2, 3}  # kills landed before, between and after the commits


@pytest.mark.parametrize("point", ["step3:chunk5", "commit3:written"])
def test_kill_a_real_process(reference, tmp_path, point):
    """The same with a separate interpreter (no fork): killed, reopened at a checkpoint, resumed."""
    ckpts, points = reference
    assert point in points
    store = tmp_path / "s"
    code = f"from pathlib import Path; from tests.training.driver import train; train(Path({str(store)!r}), **{RUN!r})"
    env = {**os.environ, KILL: point, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 86, r.stderr
    assert tensors(store) == (2, ckpts[2])
    train(store, **RUN)
    assert tensors(store) == (3, ckpts[3])
