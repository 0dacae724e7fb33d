"""Golden WIR tests: tests/passes/<pass>/*.wir.

Each file holds an input module, a line ``// ----- expected`` and the module the pass must print. The pass
is the directory's name unless the input has a ``// pipeline: a,b{opt=1}`` line. Run with
``WAFERCC_UPDATE_GOLDENS=1`` to rewrite the expected parts (then read the diff before committing it).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from wafercc.ir import parse, print_module
from wafercc.ops import verify
from wafercc.passes import run_pipeline

HERE = Path(__file__).parent
SEPARATOR = "// ----- expected"
PIPELINE_PREFIX = "// pipeline:"
UPDATE = os.environ.get("WAFERCC_UPDATE_GOLDENS") == "1"
GOLDENS = sorted(HERE.glob("*/*.wir"))


def split_golden(path: Path) -> tuple[str, str, str]:
    """(input text, expected text, pipeline) of a golden file."""
    text = path.read_text()
    if SEPARATOR not in text:
        raise AssertionError(f"{path}: no '{SEPARATOR}' line")
    source, expected = text.split(SEPARATOR + "\n", 1)
    pipeline = path.parent.name
    for line in source.splitlines():
        if line.startswith(PIPELINE_PREFIX):
            pipeline = line[len(PIPELINE_PREFIX) :].strip()
    return source, expected, pipeline


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@pytest.mark.parametrize("path", GOLDENS, ids=_id)
def test_golden(path: Path) -> None:
    source, expected, pipeline = split_golden(path)
    module = verify(parse(source, str(path)))
    got = print_module(run_pipeline(module, pipeline))  # verify_each checks the output too
    if UPDATE and got != expected:
        path.write_text(source + SEPARATOR + "\n" + got)
        return
    if got != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), got.splitlines(True), "expected", "got"))
        pytest.fail(
            f"{path.name} after '{pipeline}' differs from the golden (WAFERCC_UPDATE_GOLDENS=1 rewrites it):\n{diff}"
        )


@pytest.mark.parametrize("path", GOLDENS, ids=_id)
def test_golden_expected_is_a_fixpoint(path: Path) -> None:
    """The expected output verifies, round-trips, and the pipeline leaves it unchanged."""
    _, expected, pipeline = split_golden(path)
    module = verify(parse(expected, str(path)))
    assert print_module(module) == expected
    assert print_module(run_pipeline(module, pipeline)) == expected


def test_every_pass_has_goldens() -> None:
    from wafercc.passes import available_passes

    dirs = {p.parent.name for p in GOLDENS}
    assert set(available_passes()) <= dirs
