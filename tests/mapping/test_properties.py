"""Properties of every plan: the tiling search on random shapes and targets, the tile pass on random layers,
whole models on random mesh sizes, and determinism. Hypothesis runs derandomized with bounded examples so the
suite stays fast and a failure reproduces."""

from __future__ import annotations

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

import wafercc
from tests.mapping.util import MAPPING, linear_wir, map_text, only_layer, plan_problems, tiling_problems
from wafercc.ir import DType, WaferError
from wafercc.mapping.tiling import DoesNotFit, Shape, search
from wafercc.target import parse_target

PRESETS = ["mesh4", "mesh8", "mesh16", "mesh32", "wse2", "wse3"]
small_meshes = st.builds(
    lambda w, h, kib: f"mesh:{w}x{h}" + (f",sram-kib={kib}" if kib else ""),
    st.integers(1, 48),
    st.integers(1, 48),
    st.sampled_from([0, 8, 16, 96]),
)
targets = st.one_of(st.sampled_from(PRESETS), small_meshes)
dims = st.one_of(st.integers(1, 64), st.integers(1, 100_000))
dtypes = st.sampled_from([DType.f32, DType.f16])
SEARCH = settings(max_examples=100, deadline=None, derandomize=True)


def ceil(a: int, b: int) -> int:
    return -(-a // b)


def _shape(B, M, K, N, dtype) -> Shape:
    return Shape(
        "matmul", B, M, K, N, dtype, weight_bytes=B * K * N * dtype.itemsize, flops=2 * B * M * K * N, tail_elements=0
    )


@SEARCH
@given(target=targets, B=st.sampled_from([1, 1, 2, 3]), M=dims, K=dims, N=dims, dtype=dtypes)
def test_search_stream_tiling_fits_covers_and_costs_at_least_the_roofline(target, B, M, K, N, dtype):
    t = parse_target(target)
    try:
        tl = search(_shape(B, M, K, N, dtype), t, "stream")
    except DoesNotFit as e:
        event("does not fit")
        assert e.have == t.usable_sram and e.need > e.have
        return
    event(f"fits, {'one pass' if tl.passes == 1 else 'passes'}, {'preset' if target in PRESETS else 'mesh:WxH'}")
    e = dtype.itemsize
    assert tl.cx * tl.bg <= t.width and tl.ry * tl.rn <= t.height
    assert tl.cx * tl.kt >= K > (tl.cx - 1) * tl.kt
    assert tl.ry * tl.mt * tl.passes >= M > (tl.ry - 1) * tl.mt * tl.passes
    assert 1 <= tl.rn <= N and 1 <= tl.nc <= ceil(N, tl.rn)
    assert tl.bg * tl.bt >= B > (tl.bg - 1) * tl.bt  # batch groups side by side over the columns cover B
    # The per-PE buffers are the docstring's formulas (for the bt products of a PE's batch group), and they fit.
    nt = ceil(N, tl.rn)
    assert dict(tl.memory) == {
        "activation": tl.mt * tl.kt * e * tl.bt,
        "output": tl.mt * ceil(nt, tl.cx) * e * tl.bt,
        "accumulator": 2 * tl.mt * tl.nc * 4,
        "weight": 2 * tl.kt * tl.nc * e,
        "tail": 0,
    }
    assert tl.memory_bytes <= t.usable_sram
    c = tl.cost_dict()
    assert c["total"] > 0 and c["total"] >= c["roofline"]
    assert 0 <= c["utilization"] <= 1
    assert c["bound"] in ("compute", "ingress", "broadcast", "reduce")


@SEARCH
@example(target="wse2", B=1, M=8, K=784, N=256, dtype=DType.f32)  # examples/mlp.py's fc1
@given(target=targets, B=st.just(1), M=dims, K=dims, N=dims, dtype=dtypes)
def test_search_pipeline_costs_at_least_the_roofline(target, B, M, K, N, dtype):
    """In pipeline mode nothing streams in (ingress = 0), yet the roofline still charges the weights at
    the I/O bandwidth, so a layer's cost can come out below its own lower bound."""
    t = parse_target(target)
    try:
        tl = search(_shape(B, M, K, N, dtype), t, "pipeline")
    except DoesNotFit:
        return
    c = tl.cost_dict()
    assert c["total"] >= c["roofline"], c


@SEARCH
@example(target="mesh8", B=1, M=1, K=1024, N=64, dtype=DType.f32)
@given(target=targets, B=st.just(1), M=dims, K=dims, N=dims, dtype=dtypes)
def test_search_pipeline_tiling_has_room_for_every_weight(target, B, M, K, N, dtype):
    """Pipeline mode keeps the K x N weights resident: the weight buffers of the tiling's PEs together must
    hold them."""
    t = parse_target(target)
    try:
        tl = search(_shape(B, M, K, N, dtype), t, "pipeline")
    except DoesNotFit:
        return
    pes = tl.cx * tl.ry * tl.rn
    assert dict(tl.memory)["weight"] * pes >= B * K * N * dtype.itemsize, tl


@settings(max_examples=60, deadline=None, derandomize=True)
@example(target="mesh4", M=1, K=2974, N=311, dtype="f32")  # N in 2 row groups: 156 columns each, not 155
@given(
    target=st.one_of(st.sampled_from(["mesh4", "mesh8", "mesh16", "mesh32"]), small_meshes),
    M=st.integers(1, 600),
    K=st.integers(1, 5000),
    N=st.integers(1, 5000),
    dtype=st.sampled_from(["f32", "f16"]),
)
def test_tile_covers_every_dimension_within_the_budget(target, M, K, N, dtype):
    """What the tile pass records: parts x tile covers M and K exactly once, chunk x steps x groups covers N,
    and the buffers fit the budget."""
    try:
        m = map_text(linear_wir(M, K, N, dtype=dtype), target, passes="partition,tile", verify_each=False)
    except WaferError as e:
        assert "does not fit" in str(e)
        return
    t = parse_target(target)
    assert tiling_problems("L0", only_layer(m), t) == []


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(["mlp", "gpt2", "cnn"]),
    w=st.integers(1, 40),
    h=st.integers(1, 40),
    mode=st.sampled_from(["stream", "pipeline"]),
    extra=st.sampled_from(["", ",sram-kib=16", ",colors=10"]),
)
def test_random_meshes_give_sound_plans_or_a_plan_error(graph_text, name, w, h, mode, extra):
    target = f"mesh:{w}x{h}{extra}"
    try:
        m = map_text(graph_text(name), target, mode, verify_each=False)
    except WaferError as e:  # a clear error, never a crash
        event("plan error")
        assert str(e) and not str(e).startswith("error"), str(e)
        return
    event(f"mapped ({mode})")
    wafercc.verify(m)
    assert plan_problems(m) == []


def test_tile_budget_agrees_with_memplan():
    """tile accepts a tiling whose buffers add up to 47,100 of the 47,104 bytes; memplan then aligns each
    buffer to 16 bytes (4 -> 16, 8 -> 16) and finds 47,120: 16 bytes over. The layer: x[4, 15696] @ W[15696, 1]
    on mesh4, so each PE holds 3924 K-values: activation 15,696 + output 4 + accumulators 8 + weights 31,392.
    Whichever pass is right, they must agree: tile rejects the layer, or memplan accepts it."""
    try:
        map_text(linear_wir(4, 15696, 1), "mesh4", passes="partition,tile")
    except WaferError as e:
        assert "does not fit" in str(e)
        return
    mapped = map_text(linear_wir(4, 15696, 1), "mesh4")  # raises: memplan overflows by 16 bytes
    assert plan_problems(mapped) == []


def test_same_model_compiles_to_the_same_bytes(example_models):
    from wafercc.mapping.report import plan_json

    model, inputs = example_models["cnn"]
    first = wafercc.compile(model, inputs, name="cnn", target="mesh16")
    second = wafercc.compile(model, inputs, name="cnn", target="mesh16")
    assert first.text == second.text
    assert plan_json(first.module) == plan_json(second.module)


@pytest.mark.parametrize(
    "name, target, mode", [("gpt2", "mesh16", "pipeline"), ("resnet", "mesh32", "pipeline"), ("gpt2", "wse2", "stream")]
)
def test_mapping_is_deterministic(graph_text, name, target, mode):
    from wafercc.mapping.report import plan_json

    a = map_text(graph_text(name), target, mode, MAPPING, verify_each=False)
    b = map_text(graph_text(name), target, mode, MAPPING, verify_each=False)
    assert wafercc.print_module(a) == wafercc.print_module(b)
    assert plan_json(a) == plan_json(b)
