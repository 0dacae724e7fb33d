"""Every error the mapping gives a user, with its text: layers too large, SRAM overflow, unroutable colors,
bad targets, pipeline mode without room for the weights, and each rule of the plan verifier on hand-edited
WIR."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import wafercc
from tests.mapping.util import linear_wir, map_text
from wafercc.errors import UsageError
from wafercc.ir import VerifyError, WaferError, parse, print_module
from wafercc.passes import run_pipeline
from wafercc.target import parse_target

HERE = Path(__file__).resolve().parent
MAPPED_MLP = HERE / "data" / "mlp_mesh4_mapped.wir"  # a fully mapped 2-layer MLP on mesh4 (stream mode)


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(WaferError) as info:
        fn(*args, **kwargs)
    return str(info.value)


# -- layers too large -------------------------------------------------------------------------


def test_layer_too_large_for_the_whole_mesh_names_it_and_by_how_much():
    """x[4, 65536] @ W[65536, 8] on mesh4. K can only be split over the 4 columns, so each PE holds 16,384
    activations of a token: 64 KiB, over the 46 KiB budget on its own. Passes over M and row groups over N
    cannot shrink that row. Smallest tiling (1 token, one output column per chunk, 4 row groups): activation
    16384*4 = 65,536 + output 1*ceil(2/4)*4 = 4 + accumulators 2*1*1*4 = 8 + weight chunks 2*16384*1*4 =
    131,072: 196,620 bytes, 149,516 (317%) over 47,104."""
    msg = _error(map_text, linear_wir(4, 65536, 8), "mesh4")
    # (with every buffer rounded up to memplan's 16-byte alignment: 196,640 bytes, 149,536 over)
    assert re.search(
        r"layer @L0_fc \(matmul, dims B=1 M=4 K=65536 N=8\) does not fit on the whole 4x4 mesh "
        r"of mesh4: its smallest tiling needs 196,6[24]0 bytes per PE, 149,5[13]6 bytes \(317%\) over the "
        r"47,104-byte budget",
        msg,
    ), msg


def test_layer_too_large_in_pipeline_mode_names_it():
    """The same layer in pipeline mode on 8x8 PEs of 64 KiB (63,488 bytes each after the runtime): its 2 MiB
    of weights fit in the mesh's 3.9 MiB, but on every region K is split over at most 8 columns, so a PE
    holds 8,192 activations (32 KiB) and 8,192 x 1 resident weights (32 KiB): over budget anywhere. The
    region sizing's bisection marks such a layer with the sentinel area pes + 1, and the error reads
    "pipeline mode needs 65 PEs to keep every layer resident, ... has 64", as if one more PE would do,
    without naming the layer."""
    msg = _error(map_text, linear_wir(4, 65536, 8), "mesh:8x8,sram-kib=64", "pipeline")
    assert "@L0_fc" in msg and "bytes" in msg, msg
    assert "--mode stream" in msg


# -- SRAM overflow in memplan -----------------------------------------------------------------


def test_memplan_overflow_prints_the_map():
    """mesh4 under 16 KiB: M=8 in 4 row parts (2 rows), K=64 in 4 column parts (16), N=32 streamed in chunks of
    4 over the 4 columns. Per PE: activation 2x16 fp32 = 128, output 2x(32/4) = 64, accumulator double-buffered
    2x2x4 = 64, weight double-buffered 2x16x4 fp32 = 512."""
    tiled = map_text(linear_wir(8, 64, 32), "mesh4", passes="partition,tile{max-sram-kib=16}")
    text = print_module(tiled)
    assert "memory = {activation = 128, output = 64, accumulator = 64, weight = 512," in text
    # A person moves the tiled plan to a target with less SRAM (2.5 KiB): the buffers no longer fit.
    edited = parse(text.replace('target = "mesh4"', 'target = "mesh:4x4,sram-kib=2.5"', 1))
    msg = _error(run_pipeline, edited, "memplan")
    # runtime 2048 | activation 128 @2048 | output 64 @2176 | accumulator 64 @2240 | weight 512 @2304
    assert "layer @L0_fc needs 2,816 bytes per PE, 256 over the 2,560 bytes of SRAM of mesh:4x4,sram-kib=2.5:" in msg
    table = [line.split() for line in msg.splitlines()[1:]]
    assert table == [
        ["offset", "bytes", "buffer"],
        ["0", "2048", "runtime"],
        ["2048", "128", "activation"],
        ["2176", "64", "output"],
        ["2240", "64", "accumulator"],
        ["2304", "512", "weight"],
    ]


# -- colors -----------------------------------------------------------------------------------


def test_unroutable_names_the_router_and_its_flows():
    """3 usable colors: a streamed layer needs 5 at its busiest router. The tiling is M in 4 row parts, K in 8
    column parts, N over time in 2 groups; the I/O port row is row 4 (ports evenly spaced), so router (0,4), where
    the west port's ingress enters, also carries the column broadcast, the activation copy to the second row group
    and both reduce rings."""
    msg = _error(map_text, linear_wir(8, 64, 32), "mesh:8x8,colors=6,reserved-colors=3")
    assert re.search(
        r"router \(0,4\) needs 5 colors but mesh:8x8,colors=6,reserved-colors=3 has 3 "
        r"usable; flows through it: ",
        msg,
    ), msg
    flows = msg.split("flows through it: ")[1].split(", ")
    assert sorted(flows) == [
        "broadcast of @L0_fc",
        "ingress of @L0_fc",
        "reduce of @L0_fc",
        "reduce of @L0_fc",
        "replicate of @L0_fc",
    ]


def test_color_error_names_a_router_that_is_really_over(graph_text):
    """route colors the conflict graph greedily (largest_first); when the coloring needs more colors than
    usable it blames the busiest router, even if that router is within budget. The ResNet's pipeline on
    24x24 with 5 usable colors: no router carries more than 5 flows, a DSatur coloring
    (networkx strategy="saturation_largest_first") fits in 5, yet route fails with "router (6,0) needs 5
    colors but ... has 5 usable"."""
    target = "mesh:24x24,colors=8,reserved-colors=3"
    try:
        m = map_text(graph_text("resnet"), target, "pipeline", verify_each=False)
    except WaferError as e:
        found = re.search(r"needs (\d+) colors but .* has (\d+) usable", str(e))
        assert found and int(found.group(1)) > int(found.group(2)), str(e)
        return
    wafercc.verify(m)


# -- targets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, message",
    [
        ("wse9", "unknown target 'wse9' (presets: wse2, wse3, mesh4, mesh8, mesh16, mesh32; or mesh:WxH)"),
        ("", "unknown target ''"),
        ("mesh:4", "bad mesh 'mesh:4': write mesh:WxH, e.g. mesh:16x16"),
        ("mesh:axb", "bad mesh 'mesh:axb'"),
        ("mesh:4x4x4", "bad mesh 'mesh:4x4x4'"),
        ("mesh:0x4", "mesh 0x4 is out of range (1 to 4,000,000 PEs)"),
        ("mesh:3000x3000", "mesh 3000x3000 is out of range"),
        ("wse2,foo=1", "unknown target option 'foo=1' (known: sram-kib=, sram-bytes=, colors="),
        ("mesh:4x4,colors", "unknown target option 'colors'"),
        ("wse2,colors=abc", "target option 'colors' needs a number, got 'abc'"),
        ("mesh:4x4,sram-kib=nan", "target option 'sram-kib' needs a number, got 'nan'"),
        ("mesh:4x4,colors=4", "target 'mesh:4x4,colors=4' leaves 1 routable colors; a layer needs at least 3"),
        ("mesh:4x4,sram-kib=1", "target 'mesh:4x4,sram-kib=1' has no SRAM left after the runtime's 2048 bytes"),
    ],
)
def test_bad_target_specs(spec, message):
    with pytest.raises(UsageError) as info:
        parse_target(spec)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "spec, option",
    [
        ("mesh:4x4,sram-kib=inf", "sram-kib"),  # OverflowError: cannot convert float infinity to integer
        ("mesh:4x4,clock-ghz=0", "clock-ghz"),  # accepted; tile then dies with ZeroDivisionError
        ("mesh:4x4,clock-ghz=-1", "clock-ghz"),  # accepted; plans take negative seconds
        ("mesh:4x4,io-gbps=0", "io-gbps"),  # accepted; tile: ZeroDivisionError
        ("mesh:4x4,link-bytes=0", "link-bytes"),  # accepted; route: ZeroDivisionError
        ("mesh:4x4,reserved-colors=-10", "reserved-colors"),  # accepted: 34 usable colors of 24
    ],
)
def test_target_options_out_of_range_are_usage_errors(spec, option):
    with pytest.raises(UsageError) as info:
        parse_target(spec)
    assert option in str(info.value)


def test_compile_rejects_a_bad_target_before_capturing(monkeypatch, example_models):
    """driver.compile says "a bad target is a usage error before any work", but checks it after capture,
    import and the cleanup passes (the CLI spends ~2.6 s on examples/mlp.py before saying 'wse9' is unknown)."""
    import wafercc.frontend

    def no_capture(*args, **kwargs):
        raise AssertionError("captured the model before checking the target")

    monkeypatch.setattr(wafercc.frontend, "capture", no_capture)
    model, inputs = example_models["mlp"]
    with pytest.raises(UsageError, match="unknown target 'wse9'"):
        wafercc.compile(model, inputs, target="wse9")


def test_unknown_mode_and_missing_target():
    assert "unknown mode 'sideways' (use stream or pipeline)" in _error(
        run_pipeline, parse(linear_wir(8, 64, 32)), "partition{target=mesh4 mode=sideways}"
    )
    assert "names no target" in _error(run_pipeline, parse(linear_wir(8, 64, 32)), "partition,tile")


def test_passes_out_of_order_say_what_must_run_first():
    layers = print_module(map_text(linear_wir(8, 64, 32), "mesh4", passes="partition"))
    assert "place needs the 'tile' pass to have run first" in _error(run_pipeline, parse(layers), "place")
    assert "route needs the 'place' pass to have run first" in _error(run_pipeline, parse(layers), "tile,route")
    assert "tile needs layers: run partition first" in _error(
        run_pipeline, parse(linear_wir(8, 64, 32)), "tile{target=mesh4}"
    )


# -- pipeline mode without room for the weights ----------------------------------------------


def test_pipeline_weights_that_do_not_fit(graph_text):
    """examples/mlp.py holds 784*256*4 + 256*4 + 256*128*4 + 128*4 + 128*10*4 + 10*4 = 940,584 bytes of
    weights; mesh4's SRAM is 16 x 47,104 = 753,664 bytes after the runtime's share."""
    msg = _error(map_text, graph_text("mlp"), "mesh4", "pipeline")
    assert "pipeline mode keeps every weight on the wafer" in msg
    assert "940,584 bytes" in msg or "0.9 MiB" in msg
    assert "753,664 bytes" in msg or "0.7 MiB" in msg
    assert "SRAM" in msg and "use --mode stream" in msg


# -- the plan verifier on hand-edited WIR -----------------------------------------------------


@pytest.fixture(scope="module")
def mapped_mlp() -> str:
    """A fully mapped 2-layer MLP on mesh4 (stream mode), as the cost pass writes it."""
    text = MAPPED_MLP.read_text()
    wafercc.verify(parse(text))
    return text


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _violation(text: str) -> VerifyError:
    with pytest.raises(VerifyError) as info:
        wafercc.verify(parse(text))
    return info.value


def test_verifier_rect_outside_the_mesh(mapped_mlp):
    e = _violation(_edit(mapped_mlp, "rect = [0, 0, 4, 4]", "rect = [0, 0, 5, 4]"))
    assert str(e) == "layer @L0_fc1: rect [0, 0, 5, 4] leaves the 4x4 mesh [plan-rect]"


def test_verifier_overlapping_rects_of_one_step(mapped_mlp):
    text = _edit(mapped_mlp, "step = 1,", "step = 0,")  # both layers at once, both on [0, 0, 4, 4]
    e = _violation(text)
    assert "[plan-overlap]" in str(e)
    assert "rect [0, 0, 4, 4] overlaps @L1_fc2's [0, 0, 4, 4], and both run at once" in str(e)


def test_verifier_route_leaving_the_mesh(mapped_mlp):
    e = _violation(_edit(mapped_mlp, "box = [2, 2, 3, 2]", "box = [2, 2, 4, 2]"))
    assert str(e) == "layer @L0_fc1: ingress route leaves the mesh at (4,2) [plan-route]"


def test_verifier_path_that_jumps(mapped_mlp):
    text = _edit(
        mapped_mlp,
        '{flow = "reduce", color = 0, bytes = 24, box = [0, 0, 3, 3], axis = "x", src = 0}',
        '{flow = "transfer", color = 0, bytes = 24, path = [[0, 0], [3, 3]]}',
    )
    e = _violation(text)
    assert str(e) == "layer @L0_fc1: routes[4].path: transfer path jumps from (0,0) to (3,3) [plan-route]"


def test_verifier_color_over_budget(mapped_mlp):
    text = _edit(_edit(mapped_mlp, "color = 2,", "color = 21,"), "\n    colors = 4,", "\n    colors = 5,")
    text = _edit(text, "max_colors = 4,", "max_colors = 5,")  # one more color, counted everywhere
    e = _violation(text)
    assert str(e) == "layer @L0_fc1: ingress uses color 21; mesh4 has 21 usable colors [plan-colors]"


def test_verifier_two_flows_on_one_color_through_one_router(mapped_mlp):
    """Both reduce rings of @L0_fc1 cover every router of the 4x4 layer; giving them the same color makes
    the routers carry two flows on one color. The verifier counts only distinct colors per router (which
    can never exceed the usable count once each color index is below it), so it accepts the plan."""
    text = _edit(mapped_mlp, '{flow = "reduce", color = 1,', '{flow = "reduce", color = 0,')
    e = _violation(text)
    assert "[plan-colors]" in str(e)


def test_verifier_memory_over_budget(mapped_mlp):
    e = _violation(_edit(mapped_mlp, "total = 1216, budget = 47104", "total = 47105, budget = 47104"))
    assert str(e) == "layer @L0_fc1: memory.total: 47,105 is not the sum of the buffers, 1,216 [plan-memory]"
    text = _edit(
        mapped_mlp,
        "weight = 1024, tail = 16, total = 1216, budget = 47104",
        "weight = 1024, tail = 16, total = 1216, budget = 1215",
    )
    e = _violation(text)
    assert str(e) == "layer @L0_fc1: memory.total: needs 1,216 bytes per PE, the budget is 1,215 [plan-memory]"


def test_verifier_memory_map_past_sram(mapped_mlp):
    e = _violation(
        _edit(
            mapped_mlp,
            '{buffer = "free", offset = 3264, bytes = 45888}',
            '{buffer = "free", offset = 3264, bytes = 45889}',
        )
    )
    assert str(e) == "layer @L0_fc1: memory map ends at 49,153, past 49,152 bytes [plan-memory]"


def test_verifier_op_naming_a_missing_layer(mapped_mlp):
    """The generic IR verifier sees the dangling symbol first and calls it a weight ("attribute 'plan.layer'
    references unknown weight @L7_gone [symbol-defined]"); the plan verifier's [plan-layer] rule, which says
    "names no layer", is never reached."""
    e = _violation(_edit(mapped_mlp, "relu %h {plan.layer = @L0_fc1}", "relu %h {plan.layer = @L7_gone}"))
    assert "@L7_gone" in str(e) and "mlp.py:11" in str(e)
    assert "no layer" in str(e) or "unknown layer" in str(e), str(e)
