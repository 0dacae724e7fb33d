"""plan.json as `wafercc report` and `wafercc viz` read it, damaged the ways the plan.json fuzzer
(tests/fuzz/planjson.py) found: each is one clear message and exit 2, never a traceback."""

from __future__ import annotations

import json

import pytest

from runtime.artifacts import PLAN_FILE
from tests.fuzz.planjson import seed
from wafercc.cli import main


@pytest.fixture
def plan_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    (d / PLAN_FILE).write_bytes(seed("mlp"))
    return d


def _edit(d, change):
    doc = json.loads((d / PLAN_FILE).read_text())
    change(doc)
    (d / PLAN_FILE).write_text(json.dumps(doc))


def _report(capsys, d, *extra):
    code = main(["report", str(d), *extra])
    err = capsys.readouterr().err
    return code, err


def test_deeply_nested_plan_json(capsys, plan_dir):
    (plan_dir / PLAN_FILE).write_text('{"format": ' + "[" * 100_000 + "]" * 100_000 + "}")
    code, err = _report(capsys, plan_dir)
    assert code == 2 and "is not a plan (nested too deeply)" in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("width", [1, 2], "target.width: [1, 2] is not a count (an integer >= 0)"),
        ("height", 0, "target.height: 0 must be at least 1"),
        ("clock_hz", None, "target.clock_hz: None is not a positive number"),
        ("clock_hz", -1.0, "target.clock_hz: -1.0 is not a positive number"),
        ("name", 3, "target.name: 3 is not a string"),
        ("flops_per_cycle", 7, "target.flops_per_cycle: 7 is not FLOPs per cycle by dtype (with f32)"),
        ("flops_per_cycle", {"bf16": 8}, "is not FLOPs per cycle by dtype (with f32)"),
        ("reserved_colors", 24, "target.reserved_colors: leaves no usable color"),
    ],
)
def test_target_facts_are_checked(capsys, plan_dir, field, value, message):
    _edit(plan_dir, lambda doc: doc["target"].__setitem__(field, value))
    for extra in ([], ["--layer", "L0"]):
        code, err = _report(capsys, plan_dir, *extra)
        assert code == 2 and message in err and "Traceback" not in err, err


def test_viz_of_a_damaged_target_exits_2(capsys, plan_dir, tmp_path):
    _edit(plan_dir, lambda doc: doc["target"].__setitem__("colors", "many"))
    code = main(["viz", str(plan_dir), "-o", str(tmp_path / "p.svg")])
    err = capsys.readouterr().err
    assert code == 2 and "target.colors: 'many' is not a count" in err, err
    assert not (tmp_path / "p.svg").exists()


def test_the_undamaged_seed_reports(capsys, plan_dir):
    assert main(["report", str(plan_dir)]) == 0
    assert "stream mode: 3 layers" in capsys.readouterr().out
