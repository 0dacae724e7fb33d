"""Batch groups: a batched product's B (attention's heads) split into groups side by side over the columns,
each tiled as a matmul of its own (K over its columns, M over rows) and reduced within its own columns.
The tiler takes them when the cost model says they are cheaper; the typed plan refuses groups that do not
cover B or whose reductions reach into another group's columns; the router gives each group its own ring;
the runtime runs each group on its own tiles to eager PyTorch's numbers, whatever the grouping."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import wafercc
from runtime import Interpreter, Store
from wafercc.ir import DType
from wafercc.ir.plan import PlanFormatError
from wafercc.mapping import tiling
from wafercc.mapping.tiling import Shape, search
from wafercc.target.target import parse_target

GROUPED = ("transformer_block", "mesh:12x20")  # heads in 4 groups of 2, K (16) on 3 columns each


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


@pytest.fixture(scope="module")
def grouped(example_models, tmp_path_factory):
    name, target = GROUPED
    model, inputs = example_models[name]
    d = tmp_path_factory.mktemp("grouped")
    r = wafercc.compile(model, inputs, name=name, target=target, out_dir=d)
    with torch.no_grad():
        ref = model(*inputs).numpy()
    return r.module, Store(d), [x.numpy() for x in inputs], ref


def _grouped_layers(module):
    return [layer for layer in module.layers.values() if "B" in layer.attrs.get("tiling", {})]


def _one_group(monkeypatch):
    """The tiler without batch groups (today's tiling before them): every product on the same tiles."""
    monkeypatch.setattr(tiling, "_batch_tiles", lambda shape, width, mode="stream": np.array([max(shape.B, 1)]))
    tiling._search.cache_clear()


# -- the tiler --------------------------------------------------------------------------------------------


def test_prefill_attention_spreads_its_heads(monkeypatch):
    """LLaMA3-8B's Q.K^T at 4K tokens (32 heads, K = 128) on 480 x 480 PEs: with K on 128 columns and the
    heads one after another it ran at 4.0x its roofline; heads in groups side by side over the columns
    bring it within 1.3x (the rest: ragged tiles and one chunk's exposed fabric)."""
    t = parse_target("mesh:480x480,clock-ghz=1.1")
    B, M, K, N = 32, 4096, 128, 4096
    shape = Shape("attention", B, M, K, N, DType.bf16, 0, 2 * B * M * K * N, B * M * N)
    tiling._search.cache_clear()
    tl = search(shape, t, "stream")
    cost = tl.cost_dict()
    assert tl.bg > 1 and tl.bg * tl.bt >= B > (tl.bg - 1) * tl.bt
    assert tl.columns == tl.cx * tl.bg <= t.width
    assert cost["total"] < 1.3 * cost["roofline"]
    _one_group(monkeypatch)
    alone = search(shape, t, "stream")
    tiling._search.cache_clear()
    assert alone.bg == 1 and alone.cost_dict()["total"] > 3 * cost["total"]


def test_a_weight_shared_by_the_batch_keeps_one_group():
    """expand + bmm: one [K, N] weight for all B products streams once; a group of its own would stream it
    again, so the tiler never splits such a batch."""
    t = parse_target("mesh:64x64")
    B, M, K, N = 16, 64, 32, 32
    shared = Shape("matmul", B, M, K, N, DType.f32, K * N * 4, 2 * B * M * K * N, 0)
    assert search(shared, t, "stream").bg == 1
    own = Shape("matmul", B, M, K, N, DType.f32, B * K * N * 4, 2 * B * M * K * N, 0)
    assert search(own, t, "stream").bg > 1


def test_pipeline_mode_keeps_one_group():
    """Not in pipeline mode yet (tiling._batch_tiles says why): the same product that takes groups when
    its weights stream keeps one group when they are resident."""
    t = parse_target("mesh:64x64")
    B, M, K, N = 16, 64, 32, 32
    own = Shape("matmul", B, M, K, N, DType.f32, B * K * N * 4, 2 * B * M * K * N, 0)
    assert search(own, t, "stream").bg > 1
    assert search(own, t, "pipeline").bg == 1


def test_groups_are_taken_only_when_cheaper(grouped, monkeypatch, example_models):
    module, *_ = grouped
    layers = _grouped_layers(module)
    assert layers
    _one_group(monkeypatch)
    model, inputs = example_models[GROUPED[0]]
    alone = wafercc.compile(model, inputs, name=GROUPED[0], target=GROUPED[1])
    tiling._search.cache_clear()
    for layer in layers:
        tl, dims = layer.attrs["tiling"], layer.attrs["dims"]
        assert tl["size"][0] == tl["K"]["parts"] * tl["B"]["parts"]
        assert tl["B"]["parts"] * tl["B"]["tile"] >= dims["B"]
        assert layer.attrs["memory"]["activation"] == tl["M"]["tile"] * tl["K"]["tile"] * tl["B"]["tile"] * 4
        other = alone.module.layers[layer.name]
        assert "B" not in other.attrs["tiling"]
        assert layer.attrs["estimate"]["total"] < other.attrs["estimate"]["total"]


# -- the router -------------------------------------------------------------------------------------------


def test_each_group_reduces_within_its_own_columns(grouped):
    module, *_ = grouped
    for layer in _grouped_layers(module):
        tl = layer.attrs["tiling"]
        x0 = layer.attrs["rect"][0]
        cx = tl["K"]["parts"]
        spans = {(x0 + g * cx, x0 + (g + 1) * cx - 1) for g in range(tl["B"]["parts"])}
        rings = [r for r in layer.attrs["routes"] if r["flow"] == "reduce"]
        assert {(r["box"][0], r["box"][2]) for r in rings} == spans
        assert len(rings) == 2 * len(spans)  # one ring each way per group


# -- the runtime ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["grouped", "ring"])
def test_grouped_plan_runs_to_eager(grouped, order):
    module, store, xs, ref = grouped
    res = Interpreter(module, store, order=order).run(xs)
    assert rel_err(res.outputs[0], ref) < 1e-5  # fp32: only the summation order differs from eager
    for ls in res.stats.layers:
        layer = module.layers[ls.name]
        assert ls.weight_bytes == layer.attrs["stream"]["bytes"], ls.name
        for buf, nbytes in (ls.per_pe or {}).items():
            assert layer.attrs["memory"][buf] == nbytes, (ls.name, buf)


def test_grouping_does_not_change_the_numbers(example_models, tmp_path, monkeypatch):
    """The same model under different batch groupings (8 groups of 1 on mesh16, 4 of 2 on 12 x 20, none)
    agrees with eager to fp32 rounding."""
    name = GROUPED[0]
    model, inputs = example_models[name]
    with torch.no_grad():
        ref = model(*inputs).numpy()
    xs = [x.numpy() for x in inputs]
    seen = set()
    for target, single in (("mesh16", False), ("mesh:12x20", False), ("mesh:12x20", True)):
        if single:
            _one_group(monkeypatch)
        d = tmp_path / f"{target.replace(':', '_')}{single}"
        r = wafercc.compile(model, inputs, name=name, target=target, out_dir=d)
        seen |= {tuple(layer.attrs["tiling"]["B"].values()) for layer in _grouped_layers(r.module)}
        assert bool(_grouped_layers(r.module)) != single
        assert rel_err(Interpreter(r.module, Store(d)).run(xs).outputs[0], ref) < 1e-5
    tiling._search.cache_clear()
    assert len(seen) >= 2


def test_a_group_left_out_of_the_runtime_gives_wrong_numbers(grouped, monkeypatch):
    """The check can fail: a runtime that skipped the last batch group would leave its heads at zero."""
    from runtime import plan as rplan

    module, store, xs, ref = grouped
    real = rplan.PlanMatmul._by_batch_group

    def skip_last(self, x, w, streamed, counters, *causal):
        p = self.p
        y = real(self, x, w, streamed, counters, *causal)
        y[(p.bg - 1) * p.bt :] = 0
        return y

    monkeypatch.setattr(rplan.PlanMatmul, "_by_batch_group", skip_last)
    assert rel_err(Interpreter(module, store).run(xs).outputs[0], ref) > 1e-3


# -- the typed plan refuses what the runtime could not run faithfully ------------------------------------


def _refused(grouped, edit, match):
    module, store, xs, _ = grouped
    m = copy.deepcopy(module)
    layer = _grouped_layers(m)[0]
    edit(layer.attrs)
    with pytest.raises(PlanFormatError, match=match.format(name=layer.name)):
        Interpreter(m, store).run(xs)


def test_groups_that_miss_part_of_the_batch_are_refused(grouped):
    def fewer(a):
        a["tiling"]["B"]["parts"] -= 1
        a["tiling"]["size"][0] -= a["tiling"]["K"]["parts"]
        a["tiling"]["pes"] = a["tiling"]["size"][0] * a["tiling"]["size"][1]

    _refused(grouped, fewer, r"layer @{name}: tiling.B: 3 parts of 2 cover 6 of B = 8 \[plan-cover\]")


def test_an_empty_group_is_refused(grouped):
    def empty(a):
        a["tiling"]["B"]["tile"] = 3  # 4 groups of 3: the last holds none of the 8 heads

    _refused(grouped, empty, r"layer @{name}: tiling.B: 4 parts of 3: the last part holds none of B = 8")


def test_groups_that_overlap_on_the_columns_are_refused(grouped):
    def squeezed(a):
        a["tiling"]["size"][0] -= 1  # the last group would share a column with its neighbour
        a["tiling"]["pes"] = a["tiling"]["size"][0] * a["tiling"]["size"][1]

    _refused(grouped, squeezed, r"layer @{name}: tiling.size: \[11, 16\] is not \[K.parts x B.parts, M.parts")


def test_a_ring_across_two_groups_is_refused(grouped):
    def merged(a):
        ring = next(r for r in a["routes"] if r["flow"] == "reduce")
        ring["box"][2] += 1  # reaches the next group's first column: its heads' partial sums would mix

    _refused(grouped, merged, r"layer @{name}: routes: reduce route .* crosses batch group 0's columns 0-2")


def test_a_group_without_its_west_ring_is_refused(grouped):
    def one_way(a):
        cx = a["tiling"]["K"]["parts"]
        for r in a["routes"]:
            if r["flow"] == "reduce" and r["box"][0] == cx:
                r["src"] = r["box"][2]  # both of group 1's flows start at its east column

    _refused(
        grouped,
        one_way,
        r"layer @{name}: routes: the reduction ring of batch group 1 \(columns 3-5\) needs a reduce flow "
        r"from its west column x=3",
    )


def test_an_elementwise_layer_with_batch_groups_is_refused(grouped):
    module, store, xs, _ = grouped
    m = copy.deepcopy(module)
    layer = next(x for x in m.layers.values() if x.attrs["kind"] == "elementwise")
    layer.attrs["tiling"]["B"] = {"axis": "x", "parts": 1, "tile": 1}
    with pytest.raises(PlanFormatError, match=r"tiling.B: an elementwise layer has no batch to split"):
        Interpreter(m, store).run(xs)


# -- what people read -------------------------------------------------------------------------------------


def test_report_shows_the_batch_groups(example_models, tmp_path):
    from tests.cli_runner import run_cli

    out = tmp_path / "tb"
    r = run_cli("compile", "examples/transformer_block.py", "--target", GROUPED[1], "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    name = _grouped_layers(wafercc.parse((out / "model.wir").read_text()))[0].name
    r = run_cli("report", out, "--layer", name)
    assert r.returncode == 0, r.stderr
    assert "  B  on x     4 batch groups of 2 products side by side, 3 columns each" in r.stdout
    table = (out / "report.txt").read_text()
    assert " b4x2" in next(line for line in table.splitlines() if line.startswith(name + " "))
