"""Real models on the wafer presets: GPT-2 (the zoo's tiny config, and GPT-2 small built on the meta device),
the CNN example and the zoo's ResNet, in weight-streaming mode and, where the weights fit, layer-pipelined.
Each (model, target, mode) is mapped once per session by the ``plan`` fixture."""

from __future__ import annotations

import re

import pytest

import wafercc
from tests.mapping.util import layers_in_order, plan_problems
from wafercc.ir import WaferError, parse
from wafercc.mapping.check import check_plan
from wafercc.target import parse_target

TARGETS = ["wse2", "wse3"]
STREAM = [(name, t, "stream") for name in ("gpt2", "gpt2_small", "cnn", "resnet") for t in TARGETS]
PIPELINE = [(name, t, "pipeline") for name in ("gpt2", "cnn", "resnet") for t in TARGETS]
CASES = STREAM + PIPELINE


def _id(case) -> str:
    return "-".join(case)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_plan_verifies_and_is_sound(plan, case):
    m = plan(*case)
    wafercc.verify(m)
    check_plan(m)
    assert plan_problems(m) == []
    assert all(op.attrs.get("plan.layer") is not None for op in m.func().ops)
    totals = m.attrs["plan.totals"]
    assert totals["cycles"] > 0 and 0 < totals["utilization"] <= 1
    assert totals["layers"] == len(m.layers) and totals["max_colors"] <= parse_target(case[1]).usable_colors
    for layer in layers_in_order(m):
        assert layer.attrs["cost"]["bound"] in ("compute", "ingress", "fabric")
        assert layer.attrs["cost"]["total"] > 0


def _mapped(plan, cases):
    """The plans of ``cases`` that map (the ones that do not fail test_plan_verifies_and_is_sound)."""
    for case in cases:
        try:
            yield case, plan(*case)
        except WaferError:
            continue


def test_stream_layers_cost_at_least_their_roofline(plan):
    low = [
        (_id(case), layer.name, layer.attrs["cost"]["total"], layer.attrs["cost"]["roofline"])
        for case, m in _mapped(plan, STREAM)
        for layer in layers_in_order(m)
        if layer.attrs["cost"]["total"] < layer.attrs["cost"]["roofline"]
    ]
    assert low == []


def test_pipeline_layers_cost_at_least_their_roofline(plan):
    """examples/mlp.py on wse2: fc1's weights are resident, so nothing streams (ingress 0), but the roofline
    still counts 803,840 bytes at 176 B/cycle = 4,555 cycles, above the layer's whole cost."""
    m = plan("mlp", "wse2", "pipeline")
    low = [
        (layer.name, layer.attrs["cost"]["total"], layer.attrs["cost"]["roofline"])
        for layer in layers_in_order(m)
        if layer.attrs["cost"]["total"] < layer.attrs["cost"]["roofline"]
    ]
    assert low == []


def test_every_layer_doing_work_has_positive_utilization(plan):
    """utilization is rounded to 4 decimal places: on a 745,500-PE wafer a small layer (the CNN's 32 -> 10
    classifier, 1,280 FLOPs in ~100 cycles: 8.5e-6) reads 0.0, as if it did nothing."""
    zero = []
    for case, m in _mapped(plan, CASES):
        for layer in layers_in_order(m):
            if layer.attrs["flops"] > 0 and not layer.attrs["cost"]["utilization"] > 0:
                zero.append(f"{_id(case)} @{layer.name}: {layer.attrs['flops']} FLOPs, utilization 0")
    assert zero == []


def test_gpt2_small_streams_every_block(plan):
    m = plan("gpt2_small", "wse3", "stream")
    kinds = [layer.attrs["kind"] for layer in layers_in_order(m)]
    assert kinds.count("gather") >= 2  # token and position embeddings
    assert kinds.count("attention") == 2 * 12  # Q @ K^T and P @ V in each of the 12 blocks
    assert sum(1 for k in kinds if k == "matmul") >= 4 * 12 + 1  # qkv, proj, fc, fc2 per block, and lm_head
    assert m.attrs["plan.totals"]["weight_bytes_streamed"] >= 124_000_000 * 4


def test_gpt2_small_pipeline_on_wse2_fits_or_says_why(plan, graph_text):
    """GPT-2 small holds ~124M f32 parameters (472 MiB as declared); wse2's SRAM is 745,500 PEs x 47,104 bytes
    (33,489 MiB). Whichever way it goes, the outcome must match the arithmetic: when the weights do not fit,
    an error that says weights vs SRAM; when they do, a plan, or an error naming a real limit, not a layer
    that "does not fit on a 1x994 region" the floorplan chose for it (the region sizing gives each layer
    the area its tiling needs on a square, then hands it out as a 1-column strip on a 994-row shelf: the
    50257 x 768 embedding then has K = 50,257 on one column)."""
    t = parse_target("wse2")
    weights = sum(w.type.nbytes for w in parse(graph_text("gpt2_small")).weights.values())
    capacity = t.pes * t.usable_sram
    try:
        m = plan("gpt2_small", "wse2", "pipeline")
    except WaferError as e:
        msg = str(e)
        if weights > capacity:
            assert "weights" in msg and "SRAM" in msg, msg
            return
        region = re.search(r"does not fit on a (\d+)x(\d+) region", msg)
        assert region is None, (
            f"the weights ({weights / 2**20:,.0f} MiB) fit in wse2's SRAM "
            f"({capacity / 2**20:,.0f} MiB), yet the floorplan gives a layer a region "
            f"{region.group(1)}x{region.group(2)} it cannot fit in: {msg}"
        )
        return
    assert weights <= capacity
    wafercc.verify(m)
    assert plan_problems(m) == []
