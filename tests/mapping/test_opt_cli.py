"""The mapping passes one at a time through ``wafercc opt`` (subprocess): a module stopped at any stage and
finished by ``opt`` is the module a full compile writes; pass options reach the pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wafercc.ir import parse_file

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["layers", "tiled", "routed"]


# issue 14: the recalibrated cost model (sustained rate, tree latency, exposed chunk) picks another tiling
RECALIBRATED = "cost model recalibrated (issue 14); expectations not yet re-derived by hand"


def wafercc(*args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "wafercc.cli", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def _compile_stages(out: Path, model: str, target: str, mode: str) -> dict[str, Path]:
    files = {}
    for emit in STAGES:
        r = wafercc(
            "compile",
            f"examples/{model}.py",
            "--target",
            target,
            "--mode",
            mode,
            "--emit",
            emit,
            "-o",
            out / emit,
            "-q",
        )
        assert r.returncode == 0, r.stderr
        files[emit] = out / emit / "model.wir"
    return files


@pytest.fixture(scope="module")
def mlp_stages(tmp_path_factory):
    return _compile_stages(tmp_path_factory.mktemp("mlp"), "mlp", "mesh8", "stream")


@pytest.fixture(scope="module")
def cnn_pipeline_stages(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn")
    files = {}
    for emit in ("tiled", "routed"):
        r = wafercc(
            "compile",
            "examples/cnn.py",
            "--target",
            "mesh16",
            "--mode",
            "pipeline",
            "--emit",
            emit,
            "-o",
            out / emit,
            "-q",
        )
        assert r.returncode == 0, r.stderr
        files[emit] = out / emit / "model.wir"
    return files


def test_opt_finishes_a_tiled_module_like_compile(mlp_stages, tmp_path):
    r = wafercc("opt", mlp_stages["tiled"], "--passes", "place,route,memplan,cost", "-o", tmp_path / "o.wir")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o.wir").read_text() == mlp_stages["routed"].read_text()


def test_opt_maps_a_layers_module_like_compile(mlp_stages, tmp_path):
    r = wafercc("opt", mlp_stages["layers"], "--passes", "tile,place,route,memplan,cost", "-o", tmp_path / "o.wir")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o.wir").read_text() == mlp_stages["routed"].read_text()


def test_opt_finishes_a_pipeline_module_like_compile(cnn_pipeline_stages, tmp_path):
    r = wafercc("opt", cnn_pipeline_stages["tiled"], "--passes", "place,route,memplan,cost", "-o", tmp_path / "o.wir")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o.wir").read_text() == cnn_pipeline_stages["routed"].read_text()


@pytest.mark.xfail(strict=True, reason=RECALIBRATED)
def test_opt_tile_max_sram_option(mlp_stages, tmp_path):
    r = wafercc("opt", mlp_stages["layers"], "--passes", "tile{max-sram-kib=16}", "-o", tmp_path / "t.wir")
    assert r.returncode == 0, r.stderr
    m = parse_file(tmp_path / "t.wir")
    budget = 16 * 1024 - 2048  # the runtime keeps its 2 KiB of every PE
    assert m.layers
    for layer in m.layers.values():
        assert layer.attrs["memory"]["budget"] == budget
        assert layer.attrs["memory"]["total"] <= budget, layer.name
    default = parse_file(mlp_stages["tiled"])
    assert any(layer.attrs["memory"]["total"] > budget for layer in default.layers.values())  # the cap mattered


def test_opt_bad_pass_option_exits_2(mlp_stages):
    r = wafercc("opt", mlp_stages["layers"], "--passes", "tile{max-sram-kib=lots}")
    assert r.returncode == 2
    assert "option 'max-sram-kib' of pass 'tile' must be a number, got 'lots'" in r.stderr
    assert "Traceback" not in r.stderr


def test_compile_unknown_target_exits_2(tmp_path):
    r = wafercc("compile", "examples/mlp.py", "--target", "wse9", "-o", tmp_path / "out", "-q")
    assert r.returncode == 2
    assert "error: unknown target 'wse9' (presets: wse2, wse3, mesh4, mesh8, mesh16, mesh32; or mesh:WxH)" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
