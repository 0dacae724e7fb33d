"""FileCheck tests of the passes: tests/passes/<pass>/*.wir.

Each file is an input module with FileCheck directives in its comments (``// CHECK:``, ``// CHECK-NEXT:``,
``// CHECK-NOT:``, ``// CHECK-LABEL:``...). The runner parses the file, runs the pipeline (the directory's
name, or the file's ``// pipeline: a,b{opt=1}`` line), prints the result and hands it to FileCheck with the
file itself as the check file, as MLIR and xDSL test their passes. A test states only the lines its behaviour
is about, so a change elsewhere (the cost model, the printer's layout of an unrelated attribute) does not
rewrite it. See docs/passes.md, "Testing a pass".
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from wafercc.driver import verify_module
from wafercc.ir import Module, parse, print_module
from wafercc.passes import available_passes, run_pipeline

HERE = Path(__file__).parent
TESTS = sorted(HERE.glob("*/*.wir"))
PIPELINE = re.compile(r"^// pipeline:(.*)$", re.MULTILINE)


def pipeline_of(path: Path) -> str:
    found = PIPELINE.search(path.read_text())
    return found.group(1).strip() if found else path.parent.name


def run(text: str, pipeline: str, source: str = "<wir>") -> Module:
    """The pipeline's output. The input and every pass's output are verified as ``wafercc opt`` does, plan
    promises included, so a pass that breaks one fails here and is named."""
    return run_pipeline(parse(text, source), pipeline, verifier=verify_module)


def filecheck(check_file: Path, output: str) -> subprocess.CompletedProcess:
    """FileCheck through its command line: the package's one documented interface (its main() exits)."""
    return subprocess.run(
        [sys.executable, "-m", "filecheck", str(check_file)], input=output, capture_output=True, text=True
    )


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@pytest.mark.parametrize("path", TESTS, ids=_id)
def test_filecheck(path: Path) -> None:
    pipeline = pipeline_of(path)
    output = print_module(run(path.read_text(), pipeline, str(path)))
    result = filecheck(path, output)
    if result.returncode != 0:
        pytest.fail(
            f"{path.relative_to(HERE)} after '{pipeline}': FileCheck failed\n{result.stderr}{result.stdout}"
            f"\n--- output of '{pipeline}' ---\n{output}",
            pytrace=False,
        )


@pytest.mark.parametrize("path", TESTS, ids=_id)
def test_output_verifies_round_trips_and_is_a_fixpoint(path: Path) -> None:
    """What the CHECK lines leave out still holds: the output reads back as the same module, and the
    pipeline leaves it unchanged (one run reaches the fixpoint; run() verifies both)."""
    pipeline = pipeline_of(path)
    module = run(path.read_text(), pipeline, str(path))
    text = print_module(module)
    assert parse(text) == module
    assert print_module(run(text, pipeline)) == text


def test_every_pass_has_goldens() -> None:
    """Every pass is covered by at least one test file (the name is historic: they are FileCheck tests now)."""
    assert set(available_passes()) <= {p.parent.name for p in TESTS}


def test_a_wrong_check_line_fails(tmp_path: Path) -> None:
    """The runner's FileCheck really rejects output that a CHECK line does not describe."""
    check = tmp_path / "t.wir"
    check.write_text("// CHECK: return %x\n// CHECK-NOT: relu\n")
    assert filecheck(check, "  return %x\n").returncode == 0
    assert filecheck(check, "  return %y\n").returncode != 0
    assert filecheck(check, "  return %x\n  relu\n").returncode != 0
