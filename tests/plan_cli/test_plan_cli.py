"""`wafercc report` and `wafercc viz` through subprocess: outputs, exit codes and messages, determinism.

Two small plans are compiled once per module (in parallel): the MLP in stream mode on mesh8, and the GPT
example in pipeline mode on mesh16 (a floorplan with routed transfers between layers).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONWARNINGS="ignore")


def _cmd(*args) -> list[str]:
    return [sys.executable, "-m", "wafercc.cli", *map(str, args)]


def wafercc(*args):
    return subprocess.run(_cmd(*args), cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=300, check=False)


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """{"stream": mlp on mesh8, "pipeline": gpt on mesh16}: output directories of `wafercc compile`."""
    base = tmp_path_factory.mktemp("plans")
    jobs = {
        "stream": ("examples/mlp.py", "--target", "mesh8", "-o", base / "mlp"),
        "pipeline": ("examples/gpt.py", "--target", "mesh16", "--mode", "pipeline", "-o", base / "gpt"),
    }
    procs = {
        k: subprocess.Popen(
            _cmd("compile", *a, "-q"), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for k, a in jobs.items()
    }
    for p in procs.values():
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    return {k: a[-1] for k, a in jobs.items()}


# -- report -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["stream", "pipeline"])
def test_report_plain_is_report_txt(plans, mode):
    r = wafercc("report", plans[mode])
    assert r.returncode == 0, r.stderr
    assert r.stdout == (plans[mode] / "report.txt").read_text()


def test_report_json_is_the_plan(plans):
    r = wafercc("report", plans["stream"], "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json.loads((plans["stream"] / "plan.json").read_text())


def test_report_layer_detail(plans):
    plan = json.loads((plans["pipeline"] / "plan.json").read_text())
    layer = next(layer for layer in plan["layers"] if layer["kind"] == "matmul")
    r = wafercc("report", plans["pipeline"], "--layer", layer["name"])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith(f"layer @{layer['name']}: matmul")
    assert f"M  on y     {layer['tiling']['M']['parts']} parts, {layer['tiling']['M']['tile']} per PE" in out
    for entry in layer["memmap"]:  # the memory map, every buffer at its offset
        assert f"{entry['offset']:>7,}  {entry['bytes']:>7,}  {entry['buffer']}" in out
    for color in {r["color"] for r in layer["routes"]}:
        assert f"  color {color:>2}: " in out
    assert "transfer" in out and "(from @" in out  # pipeline transfers are routed paths from a producer
    for term in ("compute", "ingress", "fabric", "latency", "tail", "total", "bound", "roofline", "utilization"):
        assert f"\n  {term:<11} " in out, term
    assert f"{layer['cost']['total']:>12,.1f}" in out


def test_report_layer_by_index_prefix_and_json(plans):
    r = wafercc("report", plans["stream"], "--layer", "L1", "--json")
    assert r.returncode == 0, r.stderr
    layer = json.loads(r.stdout)
    assert layer["index"] == 1 and {"tiling", "memmap", "routes", "cost"} <= set(layer)


def test_report_txt_and_the_terminal_show_one_table(plans):
    """One renderer: report.txt and the rich table have the same columns and cells."""
    from rich.console import Console

    from wafercc.cli.report import load_plan, rich_report
    from wafercc.mapping.report import COLUMNS, table_rows

    plan = load_plan(plans["stream"])
    report = (plans["stream"] / "report.txt").read_text()
    rows, total = table_rows(plan)
    with open(os.devnull, "w") as sink:
        console = Console(width=400, record=True, file=sink)
        console.print(rich_report(plan))
    text = console.export_text()
    for cell in {c for r in [COLUMNS, total, *rows] for c in r if c}:
        assert cell in report and cell in text, cell


def test_report_rich_table_has_every_layer_and_totals(plans):
    from rich.console import Console

    from wafercc.cli.report import load_plan, rich_report

    plan = load_plan(plans["pipeline"])
    with open(os.devnull, "w") as sink:
        console = Console(width=240, record=True, file=sink)
        console.print(rich_report(plan))
    text = console.export_text()
    assert all(lp.name in text for lp in plan.layers)
    assert "lat+tail" in text and f"{plan.totals.layers} layers" in text
    assert f"{plan.totals.utilization:.1%}" in text


def test_report_missing_plan_exits_2(tmp_path):
    r = wafercc("report", tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"error: {tmp_path} has no plan.json: compile with the default --emit routed"


def test_report_of_a_non_plan_exits_2(tmp_path):
    (tmp_path / "plan.json").write_text('{"format": "something-else"}')
    r = wafercc("report", tmp_path)
    assert r.returncode == 2 and "is not a plan" in r.stderr and "--emit routed" in r.stderr
    (tmp_path / "plan.json").write_text("{not json")
    r = wafercc("report", tmp_path)
    assert r.returncode == 2 and "is not a plan" in r.stderr and "Traceback" not in r.stderr


def test_report_unknown_layer_exits_2(plans):
    r = wafercc("report", plans["stream"], "--layer", "L0_fc")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "has no layer 'L0_fc'; did you mean L0_fc1" in r.stderr


def test_report_of_an_output_without_plan_says_how_to_get_one(plans, tmp_path):
    """What `compile --emit tiled` leaves: the WIR and the store, no plan.json."""
    import shutil

    partial = tmp_path / "tiled"
    shutil.copytree(plans["stream"], partial)
    (partial / "plan.json").unlink()
    r = wafercc("report", partial)
    assert r.returncode == 2 and "has no plan.json: compile with the default --emit routed" in r.stderr


# -- viz --------------------------------------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("mode", ["stream", "pipeline"])
def test_viz_png_is_valid_and_deterministic(plans, mode, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for out in (a, b):
        r = wafercc("viz", plans[mode], "-o", out)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"wrote {out}"
    data = a.read_bytes()
    w, h = _png_size(data)
    assert w >= 600 and h >= 400 and len(data) > 20_000
    assert data == b.read_bytes()
    assert b"Software" not in data and b"matplotlib" not in data.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temp files left


def test_viz_svg_is_deterministic(plans, tmp_path):
    outs = [tmp_path / "a.svg", tmp_path / "b.svg"]
    for out in outs:
        r = wafercc("viz", plans["pipeline"], "-o", out, "--layer", "L6", "--show", "all")
        assert r.returncode == 0, r.stderr
    text = outs[0].read_text()
    assert text.startswith("<?xml") and "<svg" in text and "<dc:date>" not in text
    assert outs[0].read_bytes() == outs[1].read_bytes()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--layer", "L99_nothing"), "has no layer 'L99_nothing'"),
        (("--show", "colors"), "invalid choice: 'colors'"),
    ],
)
def test_viz_bad_arguments_exit_2(plans, tmp_path, args, message):
    out = tmp_path / "m.png"
    r = wafercc("viz", plans["stream"], "-o", out, *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_viz_unknown_extension_exits_2(plans, tmp_path):
    r = wafercc("viz", plans["stream"], "-o", tmp_path / "m.jpg")
    assert r.returncode == 2 and "must end in .png or .svg" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_viz_missing_plan_exits_2(tmp_path):
    r = wafercc("viz", tmp_path, "-o", tmp_path / "m.png")
    assert r.returncode == 2 and "has no plan.json: compile with the default --emit routed" in r.stderr
    assert not (tmp_path / "m.png").exists()


# -- the library, in process (every view, both modes) -------------------------------------------


@pytest.mark.parametrize("mode", ["stream", "pipeline"])
@pytest.mark.parametrize("show", ["regions", "routes", "load", "sram", "all"])
def test_render_every_view(plans, mode, show):
    from wafercc.cli.report import load_plan
    from wafercc.mapping.viz import render

    plan = load_plan(plans[mode])
    for layer in ("all", plan.layers[-1].name):
        data = render(plan, "png", layer=layer, show=show)
        assert _png_size(data)[0] > 300


def test_link_load_recomputed_from_routes_matches_the_plan(plans):
    """LinkLoad over plan.json's routes finds the busiest link, and its load, that the route pass recorded."""
    from wafercc.cli.report import load_plan
    from wafercc.mapping.viz import link_load

    for mode in ("stream", "pipeline"):
        plan = load_plan(plans[mode])
        for layer in plan.layers:
            load = link_load(plan, [layer])
            best, _ = load.busiest()
            x, y, d = layer.links.busiest
            # plan.json keeps each route's bytes rounded to an integer: allow for that, nothing more
            assert best == pytest.approx(layer.links.bytes, rel=0.01, abs=2), layer.name
            assert load.load[d][y, x] == pytest.approx(best, rel=0.01, abs=2), layer.name


def test_pool_max_keeps_hot_spots():
    import numpy as np

    from wafercc.mapping.viz import pool_max

    a = np.zeros((7, 10))
    a[6, 9] = 5.0
    a[0, 0] = 1.0
    p = pool_max(a, 4)
    assert p.shape == (2, 3) and p[1, 2] == 5.0 and p[0, 0] == 1.0 and p.sum() == 6.0


def test_cli_view_choices_match_the_library():
    from wafercc.cli import report as commands_plan
    from wafercc.mapping import viz

    assert commands_plan.SHOWS == viz.SHOWS
