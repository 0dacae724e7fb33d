"""The mapping passes one at a time through ``wafercc opt`` (run in process, tests/cli_runner.py): a module
stopped at any stage and finished by ``opt`` is the module a full compile writes; pass options reach the pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_runner import run_cli
from wafercc.ir import parse_file

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["layers", "tiled", "routed"]


def wafercc(*args):
    return run_cli(*args)


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


@pytest.fixture(scope="module")
def mlp_layers_mesh4(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlp4") / "layers"
    r = wafercc("compile", "examples/mlp.py", "--target", "mesh4", "--emit", "layers", "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    return out / "model.wir"


def test_opt_tile_max_sram_option(mlp_layers_mesh4, tmp_path):
    """``tile{max-sram-kib=8}`` reaches the pass and changes fc1's tiling (worked out by hand from
    ``tiling._memory`` / ``_cycles``; FPC = 2 x fmac_sustained = 0.73 FLOP per cycle in f32).

    fc1 is x[8, 784] @ W[784, 256] (+ bias, relu tail) on mesh4: K over the 4 columns (kt = 196), the 8 tokens
    on the 4 rows (mt = 2). Compute per PE = 2 tokens x 196 x 256 outputs x 2 / 0.73 = 274,937 cycles + a
    fill of 8 per chunk; the fabric term is the west port row's link into column 1, which carries column 1's
    quarter of the 803,840 weight bytes: 200,960 B / 4 = 50,240 cycles, below compute. So total = 274,937 +
    8 s + 50,240 / s + (4 rows + 2) hops + 2 relay stages x 5 + the relu tail, with one of the s chunks'
    fabric exposed: s = 64 (8 s + 50,240 / s = 1,297) beats s = 128 (1,416.5) and s = 32 (1,826), so the
    chunk is nc = 4 and the PE holds 1,568 (activation) + 512 (output) + 64 (accumulators) + 2 x 196 x 4 x 4
    = 6,272 (weight chunks) + 512 (tail) = 8,928 bytes. With 8 KiB (6,144 bytes after the runtime's 2 KiB) the
    weight chunks of nc = 4 alone are over; nc = 2 (3,136 bytes of weight chunks, 5,760 in all) fits and is
    the next fastest. (On mesh8 the cap would not matter: fc1 is bound there by the port row, 75,360 cycles
    over compute's 68,734, and the exposed chunk makes nc = 1, the smallest tiling, the fastest.)"""
    budget = 8 * 1024 - 2048  # the runtime keeps its 2 KiB of every PE
    capped, default = tmp_path / "capped.wir", tmp_path / "default.wir"
    r = wafercc("opt", mlp_layers_mesh4, "--passes", "tile{max-sram-kib=8}", "-o", capped)
    assert r.returncode == 0, r.stderr
    r = wafercc("opt", mlp_layers_mesh4, "--passes", "tile", "-o", default)
    assert r.returncode == 0, r.stderr
    m, d = parse_file(capped), parse_file(default)
    assert m.layers
    for layer in m.layers.values():
        assert layer.attrs["memory"]["budget"] == budget
        assert layer.attrs["memory"]["total"] <= budget, layer.name
    fc1, fc1_default = m.layers["L0_fc1"].attrs, d.layers["L0_fc1"].attrs
    assert fc1_default["tiling"]["N"] == {"axis": "time", "groups": 1, "chunk": 4, "steps": 64}
    assert fc1_default["memory"]["total"] == 1568 + 512 + 64 + 6272 + 512  # 8,928: over the cap
    assert fc1["tiling"]["N"] == {"axis": "time", "groups": 1, "chunk": 2, "steps": 128}
    assert fc1["memory"]["total"] == 1568 + 512 + 32 + 3136 + 512  # 5,760
    assert (fc1["tiling"]["K"]["tile"], fc1["tiling"]["M"]["tile"]) == (196, 2)


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
