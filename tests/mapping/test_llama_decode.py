"""Pipelined LLM decode (issue 14): a LLaMA3-8B-shaped decode step (bf16, one token, a KV cache) places and
routes on full wse2 within the color budget.

The full 32-block model takes about three minutes to plan (the commit that added this test records its
figures); the suite plans 12 blocks (about 40 s), which exercise the same flows: every block's residual and KV
transfers, and the constants CSE shares between blocks. (4 blocks do not route yet: with every layer a
full-height strip, PathFinder sends one residual transfer's 47 lanes round the mesh's bottom edge, where they
cross each other; see docs/hardware.md.)
"""

from __future__ import annotations

import pytest

import wafercc
from bench.fidelity import llama_decode
from tests.mapping.util import linear_wir, map_text, only_layer
from wafercc.ir import DType
from wafercc.mapping.route import _transfers
from wafercc.mapping.tiling import DoesNotFit, Shape, search
from wafercc.target import parse_target


@pytest.fixture(scope="module")
def decode_plan():
    model, inputs = llama_decode(12, context=4096)
    return wafercc.compile(model, inputs, target="wse2", mode="pipeline", with_weights=False).module


def test_llama_decode_pipelines_on_wse2_within_the_color_budget(decode_plan):
    wse2 = parse_target("wse2")
    totals = decode_plan.attrs["plan.totals"]
    assert totals["max_colors"] <= wse2.usable_colors
    assert totals["layers"] == 2 + 7 * 12  # embedding and head, 7 layers per block
    assert all(
        layer.attrs["memory"]["total"] <= layer.attrs["memory"]["budget"] for layer in decode_plan.layers.values()
    )


def test_constants_are_no_transfers(decode_plan):
    """CSE leaves one copy of each block's constants (the RMSNorm epsilon, the attention's full_like) in the
    first block; a later block rematerializes it, so no transfer runs back to block 0 from later blocks:
    every transfer goes from a layer to one of the next few (within the block, or the residual into the
    next block)."""
    order = {layer.name: layer.attrs["index"] for layer in decode_plan.layers.values()}
    spans = [order[b] - order[a] for a, b, _ in _transfers(decode_plan, list(decode_plan.layers.values()))]
    assert spans and max(spans) <= 7  # the residual from one block's down to the next block's o


def test_a_pass_over_m_always_holds_tokens():
    """With M = 1, passes over M cannot shrink anything real; a tiling with 4 passes of the one token left
    3 passes empty (the plan checker refuses it) while dividing the tail's share per PE by 4 on paper. A layer
    whose tail does not fit its region is an honest DoesNotFit."""
    t = parse_target("mesh8")
    shape = Shape("matmul", 1, 1, 64, 64, DType.f32, 64 * 64 * 4, 2 * 64 * 64, tail_elements=2_000_000)
    with pytest.raises(DoesNotFit):
        search(shape, t, "pipeline", t.usable_sram, 8, 8)
    a = only_layer(map_text(linear_wir(1, 64, 64), "mesh8", "pipeline"))
    assert a["tiling"]["passes"] == 1
