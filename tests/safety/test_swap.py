"""The output swap under fault injection: a writer killed at every step leaves the old output or the new one
in place, and the next writer cleans up what it left; two writers on one target: one wins, one fails cleanly.

The writer is a forked child that ``os._exit``s at the named step
(``WAFERCC_TEST_KILL_AT``); ``WAFERCC_TEST_NO_EXCHANGE`` takes the two-rename path of systems without
``renameat2``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from runtime.artifacts import MARKER_FILE, read_marker, write_atomic, write_dir_atomic
from runtime.errors import OutputError


class Writer:
    """A writer in a forked child (the parent has imported everything: a fork costs milliseconds). ``wait``
    gives its exit code: 0 written, 2 an OutputError (its message in ``err``), 86 killed at the step."""

    def __init__(self, target: Path, tag: str, *, kill_at: str = "", exchange: bool = True, sleep: float = 0.0):
        self.errfile = target.parent.parent / f"err-{tag}-{os.getpid()}.txt"
        self.pid = os.fork()
        if self.pid == 0:
            os.environ.pop("WAFERCC_TEST_KILL_AT", None)
            os.environ.pop("WAFERCC_TEST_NO_EXCHANGE", None)
            if kill_at:
                os.environ["WAFERCC_TEST_KILL_AT"] = kill_at
            if not exchange:
                os.environ["WAFERCC_TEST_NO_EXCHANGE"] = "1"
            os._exit(_child(target, tag, sleep, self.errfile))

    def wait(self) -> int:
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])

    @property
    def err(self) -> str:
        return self.errfile.read_text() if self.errfile.exists() else ""


def _child(target: Path, tag: str, sleep: float, errfile: Path) -> int:
    def fill(tmp: Path) -> None:
        for name in ("a.txt", "b.txt", "c.txt"):
            (tmp / name).write_text(tag)
            if os.environ.get("WAFERCC_TEST_KILL_AT") == "mid-fill" and name == "b.txt":
                os._exit(86)
            time.sleep(sleep)

    try:
        if target.name.endswith(".out"):
            write_atomic(target, tag)
        else:
            write_dir_atomic(target, fill, "test output")
    except OutputError as e:
        errfile.write_text(str(e))
        return 2
    except BaseException as e:  # noqa: BLE001 - the child reports and leaves; pytest must not go on in it
        errfile.write_text(f"Traceback: {e!r}")
        return 1
    return 0


DIR_STEPS = ["locked", "recovered", "tmp-made", "mid-fill", "filled", "marked", "swapped", "old-removed"]
FALLBACK_STEPS = DIR_STEPS + ["old-moved"]


def run(target: Path, tag: str, **kw) -> subprocess.CompletedProcess:
    w = Writer(target, tag, **kw)
    code = w.wait()
    return subprocess.CompletedProcess([], code, "", w.err)


def state(target: Path) -> str | None:
    """'old' or 'new' when ``target`` is a whole output of that version; None when it is missing."""
    if not target.exists():
        return None
    marker = read_marker(target)
    assert marker is not None and marker["kind"] == "test output", f"{target} has no valid marker"
    contents = {(target / f).read_text() for f in marker["files"]}
    assert sorted(marker["files"]) == ["a.txt", "b.txt", "c.txt"]
    assert sorted(p.name for p in target.iterdir()) == sorted(marker["files"] + [MARKER_FILE])
    assert len(contents) == 1, f"{target} mixes versions: {contents}"
    return contents.pop()


def leftovers(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir() if p.name != target.name)


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
@pytest.mark.parametrize("step", FALLBACK_STEPS)
def test_kill_at_every_step_leaves_old_or_new(tmp_path, step, exchange):
    if exchange and step == "old-moved":
        pytest.skip("the exchange has no such step")
    target = tmp_path / "t" / "out"
    assert run(target, "old").returncode == 0
    assert state(target) == "old"
    r = run(target, "new", kill_at=step, exchange=exchange)
    assert r.returncode == 86, r.stderr  # it was killed where we said
    if exchange:  # the exchange: the target is whole at every instant
        assert state(target) in ("old", "new")
        expected = "new" if step in ("swapped", "old-removed") else "old"
        assert state(target) == expected
    # The next writer recovers (two renames: puts the old output back) and cleans up what the killed one left.
    r = run(target, "third", exchange=exchange)
    assert r.returncode == 0, r.stderr
    assert state(target) == "third"
    assert leftovers(target) == []


@pytest.mark.parametrize("step", FALLBACK_STEPS)
def test_without_exchange_a_kill_is_recovered_before_anything_else(tmp_path, step):
    """Two renames leave a moment with no target; the next writer puts the old one back before it checks."""
    target = tmp_path / "t" / "out"
    assert run(target, "old", exchange=False).returncode == 0
    assert run(target, "new", kill_at=step, exchange=False).returncode == 86
    from runtime.artifacts import _locked, _recover

    with _locked(target):
        _recover(target)
    assert state(target) == ("new" if step in ("swapped", "old-removed") else "old")
    assert leftovers(target) == []


@pytest.mark.parametrize("step", ["locked", "recovered", "tmp-made", "filled", "marked", "swapped"])
def test_kill_of_a_first_write_leaves_nothing_or_the_output(tmp_path, step):
    target = tmp_path / "t" / "out"
    assert run(target, "new", kill_at=step).returncode == 86
    assert state(target) in (None, "new")
    assert run(target, "again").returncode == 0 and state(target) == "again"
    assert leftovers(target) == []


def test_kill_while_writing_a_file_keeps_the_old_file_and_the_next_write_cleans_up(tmp_path):
    target = tmp_path / "t" / "x.out"
    assert run(target, "old").returncode == 0
    assert run(target, "new", kill_at="file-written").returncode == 86
    assert target.read_text() == "old"
    assert len(leftovers(target)) == 1  # the killed writer's temp file
    assert run(target, "third").returncode == 0
    assert target.read_text() == "third" and leftovers(target) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_two_writers_one_wins_the_other_fails_cleanly(tmp_path, exchange):
    target = tmp_path / "t" / "out"
    first = Writer(target, "first", sleep=0.3, exchange=exchange)
    for _ in range(500):  # until the first writer holds the lock
        if (target.parent / ".out.wafercc-lock").exists():
            break
        time.sleep(0.005)
    second = run(target, "second", exchange=exchange)
    first.returncode = first.wait()
    assert first.returncode == 0, first.err
    assert second.returncode == 2 and "being written by another wafercc process" in second.stderr
    assert "Traceback" not in second.stderr
    assert state(target) == "first"
    assert leftovers(target) == []


def test_marker_names_the_kind_and_files(tmp_path):
    target = tmp_path / "t" / "out"
    assert run(target, "x").returncode == 0
    marker = json.loads((target / MARKER_FILE).read_text())
    assert marker == {"format": "wafercc-output/1", "kind": "test output", "files": ["a.txt", "b.txt", "c.txt"]}
