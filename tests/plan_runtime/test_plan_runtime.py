"""The runtime executes the lowered plan: per-PE tiles, the routed reduction, chunked streaming and 16-bit
storage; its numbers match eager PyTorch on every plan, its counters equal the plan's predictions, and a
deliberately wrong plan gives wrong numbers (so the check can fail)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import wafercc
from runtime import Interpreter, Store
from wafercc.ir.plan import PlanFormatError

CASES = [
    ("mlp", "mesh4"),
    ("mlp", "mesh8"),
    ("cnn", "mesh8"),
    ("cnn", "wse2"),
    ("gpt", "mesh16"),
    ("gpt", "wse2"),
    ("gpt", "wse3"),
    ("transformer_block", "mesh:12x20"),
    ("cnn", "mesh:8x8,sram-kib=8"),
]


@pytest.fixture(scope="module")
def plans(example_models, tmp_path_factory):
    """(model, target, mode) -> (CompileResult, Store, eager output, inputs)."""
    out = {}

    def get(name, target, mode="stream"):
        key = (name, target, mode)
        if key not in out:
            model, inputs = example_models[name]
            d = tmp_path_factory.mktemp(name)
            r = wafercc.compile(model, inputs, name=name, target=target, mode=mode, out_dir=d)
            with torch.no_grad():
                ref = model(*inputs).numpy()
            out[key] = (r, Store(d), ref, [x.numpy() for x in inputs])
        return out[key]

    return get


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize("name, target", CASES)
def test_plan_runtime_matches_eager(plans, name, target):
    r, store, ref, inputs = plans(name, target)
    res = Interpreter(r.module, store).run(inputs)
    assert rel_err(res.outputs[0], ref) < 1e-5  # fp32: only the summation order differs from eager


@pytest.mark.parametrize("name, target", [("mlp", "mesh8"), ("gpt", "mesh16"), ("cnn", "wse2")])
def test_ring_order_matches_eager(plans, name, target):
    r, store, ref, inputs = plans(name, target)
    res = Interpreter(r.module, store, order="ring").run(inputs)
    assert rel_err(res.outputs[0], ref) < 1e-5


@pytest.mark.parametrize("name, target", [("mlp", "mesh8"), ("cnn", "mesh8"), ("gpt", "mesh16")])
@pytest.mark.parametrize("precision, tol", [("bf16", 2e-2), ("fp16", 4e-3)])
def test_reduced_precision_within_its_policy(plans, name, target, precision, tol):
    # 16-bit storage with fp32 accumulation: a few ulps of the storage type per layer (bf16 has 8 mantissa
    # bits, 2^-8 = 3.9e-3; fp16 has 11, 2^-11 = 4.9e-4), compounded over the model's layers.
    r, store, ref, inputs = plans(name, target)
    out = Interpreter(r.module, store, precision=precision).run(inputs).outputs[0]
    assert rel_err(out, ref) < tol
    pcc = np.corrcoef(out.ravel(), ref.ravel())[0, 1]
    assert pcc > 0.999


@pytest.mark.parametrize("name, target", CASES)
def test_counters_equal_the_plan(plans, name, target):
    r, store, _, inputs = plans(name, target)
    res = Interpreter(r.module, store).run(inputs)
    seen = 0
    for ls in res.stats.layers:
        layer = r.module.layers[ls.name]
        assert ls.weight_bytes == layer.attrs["stream"]["bytes"], ls.name
        if ls.per_pe:
            seen += 1
            for buf, nbytes in ls.per_pe.items():
                assert layer.attrs["memory"][buf] == nbytes, (ls.name, buf)
        tl = layer.attrs["tiling"]
        budget = layer.attrs["memory"].get("weight", 0) * tl["pes"]
        assert ls.peak_chunk_bytes <= max(budget, 1), ls.name  # never more weights than the wafer holds
    assert seen > 0
    assert res.stats.weight_bytes_streamed == r.module.attrs["plan.totals"]["weight_bytes_streamed"]


def test_placement_invariance(plans):
    outs = [
        Interpreter(plans("gpt", t)[0].module, plans("gpt", t)[1]).run(plans("gpt", t)[3]).outputs[0]
        for t in ("mesh4", "mesh8", "mesh16", "wse2")
    ]
    ref = plans("gpt", "wse2")[2]
    for o in outs:
        assert rel_err(o, ref) < 1e-5


def test_forced_tilings_agree(plans):
    # The same model under different forced tilings (a tight SRAM cap forces smaller tiles and more steps).
    r, store, ref, inputs = plans("mlp", "mesh8")
    from wafercc.passes import run_pipeline

    for cap in (48, 12, 6):
        m = wafercc.parse(wafercc.print(r.module))
        m = run_pipeline(m, f"tile{{max-sram-kib={cap}}},place,route,memplan,cost")
        out = Interpreter(m, store).run(inputs).outputs[0]
        assert rel_err(out, ref) < 1e-5, cap


def _anchor_layer(module):
    return next(
        layer
        for layer in module.layers.values()
        if layer.attrs["kind"] == "matmul" and layer.attrs["tiling"]["K"]["parts"] > 2
    )


def test_a_missing_partial_sum_is_refused(plans):
    """A reduction that no longer reaches the first column would drop its partial sums: the plan is refused
    before anything runs (it used to run to wrong numbers)."""
    r, store, ref, inputs = plans("mlp", "mesh8")
    m = copy.deepcopy(r.module)
    layer = _anchor_layer(m)
    for route in layer.attrs["routes"]:
        if route["flow"] == "reduce":
            route["box"][0] += 1
            route["src"] = max(route["src"], route["box"][0])
    with pytest.raises(PlanFormatError, match=rf"layer @{layer.name}: routes: no reduce route .*\[plan-route\]"):
        Interpreter(m, store).run(inputs)


def test_a_dropped_tile_is_refused(plans):
    r, store, ref, inputs = plans("mlp", "mesh8")
    m = copy.deepcopy(r.module)
    layer = _anchor_layer(m)
    layer.attrs["tiling"]["K"]["parts"] -= 1  # one column's K tile would not be computed anywhere
    with pytest.raises(PlanFormatError, match=rf"layer @{layer.name}: tiling.K: .* cover .*\[plan-cover\]"):
        Interpreter(m, store).run(inputs)


def test_plan_needs_tiled_layers(example_models):
    model, inputs = example_models["mlp"]
    r = wafercc.compile(model, inputs, emit="graph")
    from runtime import RuntimeExecutionError

    with pytest.raises(RuntimeExecutionError, match="has no tiled layers to follow"):
        Interpreter(r.module, None, plan=True)


def test_unknown_precision():
    from runtime import RuntimeExecutionError

    m = wafercc.parse("module @m {\n  func @forward(%x: tensor<2xf32>) -> (tensor<2xf32>) {\n    return %x\n  }\n}\n")
    with pytest.raises(RuntimeExecutionError, match="unknown precision 'fp8'"):
        Interpreter(m, None, precision="fp8")


def _cli(*args):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "wafercc.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        timeout=600,
    )


def test_verify_bf16_reports_plan_stages():
    r = _cli("verify", "examples/mlp.py", "--target", "mesh8", "--precision", "bf16", "--bisect")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tolerance: f32 rtol 0.01" in r.stdout  # judged by the storage precision's policy
    assert "plan stages: graph ok" in r.stdout and "routed ok" in r.stdout


def test_run_precision_and_no_plan(tmp_path):
    assert _cli("compile", "examples/mlp.py", "--target", "mesh8", "-o", tmp_path / "m", "-q").returncode == 0
    for flags in (["--precision", "fp16"], ["--no-plan"]):
        r = _cli("run", tmp_path / "m", "-o", tmp_path / "o.npz", *flags)
        assert r.returncode == 0, r.stderr
    r = _cli("run", tmp_path / "m", "--precision", "fp8")
    assert r.returncode == 2 and "invalid choice: 'fp8'" in r.stderr


@pytest.mark.parametrize("target", ["mesh4", "mesh8", "wse2"])
def test_transposed_convolution_follows_its_plan(target, tmp_path):
    class Up(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.up = torch.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2)
            self.conv = torch.nn.Conv2d(4, 5, 3, padding=1)

        def forward(self, x):
            return self.conv(torch.relu(self.up(x)))

    torch.manual_seed(0)
    model, x = Up().eval(), torch.randn(2, 6, 5, 5)
    r = wafercc.compile(model, (x,), name="up", target=target, out_dir=tmp_path / "up")
    with torch.no_grad():
        ref = model(x).numpy()
    res = Interpreter(r.module, Store(tmp_path / "up")).run([x.numpy()])
    assert rel_err(res.outputs[0], ref) < 1e-5
    up = next(layer for layer in r.module.layers.values() if layer.attrs["kind"] == "conv")
    ls = next(s for s in res.stats.layers if s.name == up.name)
    assert ls.per_pe is not None and ls.weight_bytes == up.attrs["stream"]["bytes"]


@pytest.mark.parametrize("name", ["resnet", "mobilenet", "vit", "moe", "encoder"])
def test_zoo_counters_and_numbers_follow_the_plan(name, tmp_path):
    # Depthwise convolutions (groups = channels), weights broadcast over a batch (expand + bmm), top-k routing.
    from tests.conftest import ROOT
    from wafercc.frontend import load_model_file

    model, inputs = load_model_file(ROOT / "examples" / f"{name}.py")
    r = wafercc.compile(model, inputs, name=name, target="mesh8", out_dir=tmp_path / name)
    with torch.no_grad():
        ref = model(*inputs).numpy()
    res = Interpreter(r.module, Store(tmp_path / name)).run([x.numpy() for x in inputs])
    assert rel_err(res.outputs[0], ref) < 1e-5
    for ls in res.stats.layers:
        layer = r.module.layers[ls.name]
        assert ls.weight_bytes == layer.attrs["stream"]["bytes"], ls.name
        for buf, nbytes in (ls.per_pe or {}).items():
            assert layer.attrs["memory"][buf] == nbytes, (ls.name, buf)


def test_small_m_row_groups_of_any_count_follow_the_plan(tmp_path):
    """One token (a GEMV, a decode step) spreads N over as many rows as pays, not only a power of two or
    every spare row: x[1, 64] @ W[64, 100] on a 4 x 80 mesh in pipeline mode takes 50 row groups of 2 outputs
    (100 = 50 x 2, no padding; 64 groups would pad N to 128, 80 would leave groups of 1 and 2). The runtime
    follows that plan to eager's numbers, as it does the same layer's plan on mesh8 (8 groups)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 100).eval()
    x = torch.randn(1, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    outs = []
    for target in ("mesh:4x80", "mesh8"):
        r = wafercc.compile(model, (x,), target=target, mode="pipeline", out_dir=tmp_path / target.replace(":", "_"))
        (layer,) = r.module.layers.values()
        if target == "mesh:4x80":
            assert layer.attrs["tiling"]["N"] == {"axis": "y", "groups": 50, "chunk": 2, "steps": 1}
            assert layer.attrs["tiling"]["size"] == [4, 50]
        outs.append(Interpreter(r.module, Store(tmp_path / target.replace(":", "_"))).run([x.numpy()]).outputs[0])
    for o in outs:
        assert rel_err(o, ref) < 1e-5  # fp32: only the summation order differs from eager
