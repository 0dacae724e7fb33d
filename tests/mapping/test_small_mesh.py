"""Plans on small meshes, checked by hand.

Every expected number below is worked out from the formulas in ``wafercc/mapping/tiling.py``'s docstring (per
PE: activation mt*kt*e, output mt*ceil(nt/cx)*e, accumulators 2*mt*nc*4, weight chunk 2*kt*nc*e), from the
flows ``wafercc/mapping/route.py`` describes (ingress along the port row, broadcast down the columns, a ring
reduce each way along the rows) and from the target's numbers (WSE-2 per-PE figures: 48 KiB SRAM less 2 KiB
for the runtime = 47,104 bytes, 2 FLOP/cycle in f32 at peak and FPC = 2 x fmac_sustained = 0.73 sustained,
4 bytes per link per cycle, 150 GB/s at 0.85 GHz = 176.47 bytes of I/O per cycle; small meshes have one I/O
port per edge, on row height // 2). Latency = (rows + columns // 2) hops + the reduction tree's relay stages
(ceil(2 * sqrt(columns) / 2), 5 cycles each) + one chunk of the smaller of compute and fabric (exposed: the
chunks overlap each other's transfers, not the first's or the last's).
"""

from __future__ import annotations

import pytest

from tests.mapping.util import linear_wir, map_text, only_layer, plan_problems, resident_weight_shortfall

BUDGET = 48 * 1024 - 2048  # 47,104 bytes per PE
FPC = 2 * 0.365  # sustained fp32 FLOP per PE per cycle


def test_linear_on_mesh4_by_hand():
    # nn.Linear(64, 32) on x[8, 64], f32, on a 4x4 mesh.
    m = map_text(linear_wir(8, 64, 32, bias=True), "mesh4")
    assert plan_problems(m) == []
    a = only_layer(m)
    # K = 64 over the 4 columns: 16 each; M = 8 over the 4 rows: 2 tokens each; the 32 outputs in 8 chunks of
    # 4: one chunk would leave its 520 broadcast cycles exposed (total 2813.5 + 16 + 520 = 3349.5), 8 chunks
    # expose an eighth (2869.5 + 16 + 65 = 2950.5), 16 chunks pay more pipeline fills than they hide (2981).
    assert a["tiling"] == {
        "M": {"axis": "y", "parts": 4, "tile": 2},
        "K": {"axis": "x", "parts": 4, "tile": 16},
        "N": {"axis": "time", "groups": 1, "chunk": 4, "steps": 8},
        "passes": 1,
        "pes": 16,
        "size": [4, 4],
        "region": [4, 4],
    }
    assert a["memory"] == {
        "activation": 2 * 16 * 4,  # 128
        "output": 2 * (32 // 4) * 4,  # 64: this column's quarter of the 32 outputs of its 2 tokens
        "accumulator": 2 * 2 * 4 * 4,  # 64
        "weight": 2 * 16 * 4 * 4,  # 512: two chunks of 16 x 4
        "tail": 0,
        "total": 768,
        "budget": BUDGET,
    }
    # Buffers from address 0, 16-byte aligned, the runtime's 2 KiB first.
    assert [(e["buffer"], e["offset"], e["bytes"]) for e in a["memmap"]] == [
        ("runtime", 0, 2048),
        ("activation", 2048, 128),
        ("output", 2176, 64),
        ("accumulator", 2240, 64),
        ("weight", 2304, 512),
        ("free", 2816, 48 * 1024 - 2816),
    ]
    # Weights + bias = 32*64*4 + 32*4 = 8320 bytes; each of the 4 columns gets a quarter.
    assert a["weight_bytes"] == 8320
    ingress = [r for r in a["routes"] if r["flow"] == "ingress"]
    assert [(r["box"], r["feeds"], r["bytes"]) for r in ingress] == [
        ([0, 2, 1, 2], [0, 1], 8320 // 4),
        ([2, 2, 3, 2], [2, 3], 8320 // 4),
    ]
    assert sum(r["bytes"] * (r["feeds"][1] - r["feeds"][0] + 1) for r in ingress) == a["weight_bytes"]
    # The busiest link: west port (0,2) eastward carries column 1's share (2080) and the eastward half of
    # row 2's reduce ring: 2 tokens x 32 partial sums x 4 B x 3/4 forwarded / 2 directions = 96.
    assert a["links"] == {"busiest": [0, 2, "E"], "bytes": 2080 + 96, "cycles": (2080 + 96) / 4}
    # Two reduce directions, ingress, broadcast: 4 colors.
    assert a["colors"] == 4
    assert sorted({(r["flow"], r["color"]) for r in a["routes"]}) == [
        ("broadcast", 3),
        ("ingress", 2),
        ("reduce", 0),
        ("reduce", 1),
    ]
    c = a["cost"]
    compute = 8 * (2 * 16 * 4 * 2 / FPC + 8)  # 2869.5: 8 chunks of mt*kt*nc FMACs + a pipeline fill each
    assert c["compute"] == round(compute, 1)
    assert c["ingress"] == round(8320 / (150e9 / 0.85e9), 1)  # 47.1
    assert c["fabric"] == 544.0
    # (4 rows + 2) hops, 2 relay stages of 5, and one of the 8 chunks' broadcast (tile's 520) exposed
    assert c["latency"] == round(4 + 2 + 2 * 5 + 520 / 8, 1)  # 81
    assert (c["total"], c["bound"]) == (round(compute + 81, 1), "compute")
    assert c["utilization"] == round(8 * 64 * 32 * 2 / (2950.5 * 16 * 2), 4)


def test_linear_module_maps_like_its_wir():
    """The same Linear through the real frontend gives the plan worked out above."""
    import torch

    import wafercc

    torch.manual_seed(0)
    model = torch.nn.Linear(64, 32).eval()
    got = only_layer(wafercc.compile(model, (torch.randn(8, 64),), target="mesh4").module)
    want = only_layer(map_text(linear_wir(8, 64, 32, bias=True), "mesh4"))
    for key in ("dims", "tiling", "memory", "memmap", "routes", "links", "colors", "cost", "weight_bytes"):
        assert got[key] == want[key], key


def test_more_tokens_than_rows_on_mesh4():
    """x[64, 64] @ W[64, 32]: 64 tokens on 4 rows, so every row holds a tile of 16 tokens; K over the 4
    columns, 16 each. Compute is 16 x 16 x 32 x 2 / FPC = 22,443.8 cycles whatever the chunk, plus a fill of
    8 per chunk. The fabric term is 512 cycles: each column's K-slice of the weights (16 x 32 x 4 B = 2,048 B)
    down its links, which is also what the west port's row carries into column 1; the ring moves 16 x 32 x 4
    x 3/4 = 1,536 B per PE (384 cycles). So total = 22,443.8 + 8 s + (4 rows + 2) hops + 2 relay stages x 5
    + 512 / s exposed: s = 8 chunks of 4 (64 + 64 = 128) beats s = 4 or 16 (32 + 128 or 128 + 32: 160),
    s = 2 or 32 (16 + 256 or 256 + 16: 272), and one chunk of all 32 (8 + 512 = 520): the whole broadcast of a
    single chunk would be exposed."""
    a = only_layer(map_text(linear_wir(64, 64, 32), "mesh4"))
    assert a["tiling"]["M"] == {"axis": "y", "parts": 4, "tile": 16}
    assert a["tiling"]["K"] == {"axis": "x", "parts": 4, "tile": 16}
    assert a["tiling"]["N"] == {"axis": "time", "groups": 1, "chunk": 4, "steps": 8}
    assert a["memory"] == {
        "activation": 16 * 16 * 4,
        "output": 16 * 8 * 4,
        "accumulator": 2 * 16 * 4 * 4,
        "weight": 2 * 16 * 4 * 4,
        "tail": 0,
        "total": 2560,
        "budget": BUDGET,
    }
    # ring: 16 tokens x 32 partial sums x 4 B x 3/4 / 2 = 768, on top of column 1's 8192/4 = 2048
    assert a["links"]["bytes"] == 2048 + 768
    compute = 8 * (16 * 16 * 4 * 2 / FPC + 8)
    assert a["estimate"]["compute"] == round(compute, 1)  # 22,507.8
    assert a["estimate"]["latency"] == 4 + 2 + 2 * 5 + 512 / 8
    # the link load (704 cycles) stays under compute: the cost pass keeps the estimate
    assert (a["cost"]["compute"], a["cost"]["total"]) == (round(compute, 1), round(compute + 80, 1))


def test_activations_too_big_for_the_mesh_take_passes_over_m():
    """tile's docstring: a layer whose activations do not fit even on the whole mesh is split into passes
    over M. x[4096, 64] on mesh4 needs 1024 tokens x 16 K-values x 4 B = 64 KiB of activations per PE in one
    pass; in 4 passes 16 KiB (plus 8 KiB of outputs) fits. The search never shrinks the M tile below
    M / rows, so passes cannot help and the layer is reported as too large."""
    m = map_text(linear_wir(4096, 64, 32), "mesh4", passes="partition,tile")
    a = only_layer(m)
    assert a["tiling"]["passes"] > 1
    assert a["memory"]["total"] <= BUDGET
    assert plan_problems(map_text(linear_wir(4096, 64, 32), "mesh4")) == []


def test_port_row_bounds_a_small_layer_on_mesh8():
    # x[3, 64] @ W[64, 10] on 8x8: K over the 8 columns (tiles of 8; fewer columns only lengthen the port run:
    # 3 columns' worth at cx = 4 or 7 too, of bigger slices). The one west port (row 4) feeds columns 0..3 and
    # its row's first link carries the weights of columns 1..3: 3 x 320 B = 960 B, 240 cycles. Every tiling's
    # fabric term is those 240 cycles (the columns' own 80 and the replicate's 24 are less), so
    # total = max(compute, 240) + rows + 4 + 3 relay stages x 5 + one chunk's min(compute, 240).
    # A chunk of mt tokens x nc outputs costs mt x 8 x nc x 2 / FPC + 8 = 21.9 mt nc + 8. The fastest:
    #   1 token per row (3 rows), 2 row groups of 5 outputs (6 rows), chunks of 1: compute 5 x 29.9 = 149.6,
    #     total 240 + 6 + 19 + 29.9 = 294.9;
    #   one row group (3 rows): 10 chunks = 299 > 240, total 299 + 3 + 19 + 24 = 345;
    #   2 tokens per row, 4 groups (8 rows): 3 chunks of 51.8, total 240 + 8 + 19 + 51.8 = 318.8;
    #   all 3 tokens on one row in 2 groups of 5, one chunk (the plan before the recalibration): compute
    #     3 x 8 x 5 x 2 / FPC + 8 = 336.8, total 336.8 + 2 + 19 + 240 (the lone chunk's broadcast exposed) = 597.8.
    # So the layer is 6 rows tall, and the port row (row 4) now runs inside it.
    a = only_layer(map_text(linear_wir(3, 64, 10), "mesh8"))
    assert a["tiling"]["M"] == {"axis": "y", "parts": 3, "tile": 1}
    assert a["tiling"]["K"] == {"axis": "x", "parts": 8, "tile": 8}
    assert a["tiling"]["N"] == {"axis": "time", "groups": 2, "chunk": 1, "steps": 5}
    assert a["rect"] == [0, 0, 8, 6]
    assert a["memory"] == {
        "activation": 1 * 8 * 4,
        "output": 1 * 1 * 4,
        "accumulator": 2 * 1 * 1 * 4,
        "weight": 2 * 8 * 1 * 4,
        "tail": 0,
        "total": 108,
        "budget": BUDGET,
    }
    per_column = 64 * 10 * 4 // 8  # 320
    broadcast = sorted(r["box"] for r in a["routes"] if r["flow"] == "broadcast")
    assert broadcast == [[0, 0, 3, 5], [4, 0, 7, 5]]  # from row 4 to rows 0..5
    assert all(r["bytes"] == per_column for r in a["routes"] if r["flow"] in ("ingress", "broadcast"))
    est = a["estimate"]
    assert est["compute"] == round(5 * (8 * 2 / FPC + 8), 1)  # 149.6
    assert est["broadcast"] == 3 * per_column / 4
    assert est["latency"] == round(6 + 4 + 3 * 5 + (8 * 2 / FPC + 8), 1)  # 54.9
    assert est["total"] == round(240 + est["latency"], 1)
    # The busiest link: 960 B of ingress and the eastward half of row 4's ring: 1 token x 5 partial sums x
    # 4 B x 7/8 / 2 = 8.75, rounded up to 9 bytes.
    assert a["links"] == {"busiest": [0, 4, "E"], "bytes": 3 * per_column + 9, "cycles": round(969 / 4, 1)}
    assert a["cost"]["total"] == round(a["links"]["cycles"] + est["latency"], 1)
    # The second row group's copy of the activations, down each column: its 3 rows of 1 token x 8 x 4 B.
    (replicate,) = [r for r in a["routes"] if r["flow"] == "replicate"]
    assert replicate["bytes"] == 3 * 1 * 8 * 4
    # The port row inside the rectangle: the west ingress shares routers with its broadcast, the replicate and
    # both rings, a clique of 5 flows (when the layer stood below the port row, ingress met only its broadcast).
    assert a["colors"] == 5


def test_row_groups_on_mesh16_f16():
    """x[100, 512] @ W[512, 512] in f16 on 16x16 (FPC16 = 4 x fmac_sustained = 1.46): K over the 16 columns
    (tiles of 32; on 8 columns all of them sit west and the port run doubles). The west port (row 8) feeds
    columns 0..7, so its row's first link carries 7 columns' weights: 7 x 32,768 B / 4 = 57,344 cycles, every
    tiling's fabric term, now below compute: 100 x 512 x 512 x 2 / 256 PEs / 1.46 = 140,274 cycles when the
    tokens and outputs split evenly over all 16 rows. They do with (rows, groups) = (1, 16): 100 tokens x 32
    outputs, (2, 8): 50 x 64, and (4, 4): 25 x 128 per PE (8 and 16 rows pad 100 to 104 and 112 tokens).
    total = 140,274 + 8 s + (16 rows + 8) hops + 4 relay stages x 5 + 57,344 / s (one chunk's fabric exposed),
    least at s near 85: s = 64 (512 + 896) beats 128 (1,024 + 448) and 32 (256 + 1,792); 64 chunks are
    (4, 4) with chunks of 2 or (2, 8) with chunks of 1, equally fast with the same fabric traffic, and the
    search keeps the one with less memory: 2,656 bytes against 4,128 (50 x 32 x 2 of activations)."""
    a = only_layer(map_text(linear_wir(100, 512, 512, dtype="f16"), "mesh16"))
    tl = a["tiling"]
    assert (tl["M"]["parts"], tl["M"]["tile"], tl["K"]["parts"], tl["K"]["tile"]) == (4, 25, 16, 32)
    assert tl["N"] == {"axis": "time", "groups": 4, "chunk": 2, "steps": 64}
    assert tl["size"] == [16, 16]
    assert a["memory"] == {
        "activation": 25 * 32 * 2,
        "output": 25 * (128 // 16) * 2,
        "accumulator": 2 * 25 * 2 * 4,
        "weight": 2 * 32 * 2 * 2,
        "tail": 0,
        "total": 2656,
        "budget": BUDGET,
    }
    fpc16 = 4 * 0.365
    assert a["estimate"]["compute"] == round(64 * (25 * 32 * 2 * 2 / fpc16 + 8), 1)  # 140,786
    assert a["estimate"]["latency"] == 16 + 8 + 4 * 5 + 57344 / 64  # 940
    per_column = 512 * 512 * 2 // 16  # 32768 bytes of weights per column
    assert {r["bytes"] for r in a["routes"] if r["flow"] in ("ingress", "broadcast")} == {per_column}
    # The first group's 4 rows of activations (25 tokens x 32 x 2 B each) multicast down each column to the
    # 3 other groups: a multicast crosses a link once.
    (replicate,) = [r for r in a["routes"] if r["flow"] == "replicate"]
    assert replicate["bytes"] == 4 * 25 * 32 * 2 and replicate["axis"] == "y"
    ring = 25 * 128 * 4 * 15 / 16 / 2  # 6000
    assert a["links"] == {"busiest": [0, 8, "E"], "bytes": 7 * per_column + ring, "cycles": (7 * per_column + ring) / 4}
    assert a["cost"]["total"] == a["estimate"]["total"] == round(64 * (25 * 32 * 2 * 2 / fpc16 + 8) + 940, 1)
    assert a["colors"] == 5  # ingress, broadcast, replicate, two reduce rings


def test_pipeline_weights_are_resident_somewhere():
    """Pipeline mode keeps a layer's weights on its PEs. x[1, 1024] @ W[1024, 64] in f32 is 256 KiB of
    weights: more than 5 PEs x 46 KiB can hold at all. The tiling puts K on 5 columns (205 each) of one row
    and gives each PE a weight buffer of kt * ceil(N / cx) * 4 = 205 * 13 * 4 = 10,660 bytes: 52 KiB in all,
    so 204 KiB of the weights have no home (the formula divides N by the K split cx, where the rows of a
    row group, ry, are what can share the group's outputs)."""
    a = only_layer(map_text(linear_wir(1, 1024, 64), "mesh8", "pipeline"))
    assert resident_weight_shortfall(a) == 0, (a["tiling"], a["memory"])


def test_tile_max_sram_option_caps_the_budget():
    m = map_text(linear_wir(64, 256, 128), "mesh4", passes="partition,tile{max-sram-kib=8}")
    a = only_layer(m)
    assert a["memory"]["budget"] == 8 * 1024 - 2048
    assert a["memory"]["total"] <= 8 * 1024 - 2048
    wide = only_layer(map_text(linear_wir(64, 256, 128), "mesh4", passes="partition,tile"))
    assert wide["memory"]["total"] > 8 * 1024 - 2048  # the cap changed the choice


@pytest.mark.parametrize("target", ["mesh4", "mesh8", "mesh16"])
def test_two_layers_stream_one_after_another(target):
    text = """module @two {
  weight @a.weight : tensor<48x40xf32>
  weight @b.weight : tensor<24x48xf32>
  func @forward(%x: tensor<6x40xf32>) -> (tensor<6x24xf32>) {
    %wa = weight.get @a.weight : tensor<48x40xf32>
    %wat = permute %wa {dims = [1, 0]} : tensor<40x48xf32>
    %h = mm %x, %wat : tensor<6x48xf32>
    %r = relu %h : tensor<6x48xf32>
    %wb = weight.get @b.weight : tensor<24x48xf32>
    %wbt = permute %wb {dims = [1, 0]} : tensor<48x24xf32>
    %y = mm %r, %wbt : tensor<6x24xf32>
    return %y
  }
}
"""
    m = map_text(text, target)
    assert plan_problems(m) == []
    a, b = sorted(m.layers.values(), key=lambda layer: layer.attrs["index"])
    assert (a.attrs["step"], b.attrs["step"]) == (0, 1)
    assert a.attrs["rect"][:2] == b.attrs["rect"][:2] == [0, 0]
    assert a.attrs["stream"]["prefetch"] is False and b.attrs["stream"]["prefetch"] is True
    assert m.attrs["plan.totals"]["cycles"] == pytest.approx(a.attrs["cost"]["total"] + b.attrs["cost"]["total"])
    assert m.attrs["plan.totals"]["weight_bytes_streamed"] == (48 * 40 + 24 * 48) * 4
    # relu is the tail of the first layer: 6 x 48 elements, spread over its PEs.
    assert a.attrs["tail_elements"] == 6 * 48
