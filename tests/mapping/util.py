"""Helpers of the mapping tests: small modules written as WIR text, mapping them, and one checker that
lists every broken promise of a plan (so a failing test shows all of them at once, not the first).

Nothing here imports torch.
"""

from __future__ import annotations

from itertools import pairwise

from wafercc.ir import DType, Module, parse
from wafercc.mapping.flows import Flow, color_usage
from wafercc.mapping.layers import LAYER_ATTR
from wafercc.passes import PassManager
from wafercc.target import parse_target

MAPPING = "partition,tile,place,route,memplan,cost"
BOUNDS = ("compute", "ingress", "fabric")


def linear_wir(M: int, K: int, N: int, *, bias: bool = False, dtype: str = "f32", name: str = "lin") -> str:
    """Graph-level WIR of one nn.Linear(K, N) applied to x[M, K], as torch.export writes it."""
    w = f"tensor<{N}x{K}x{dtype}>"
    lines = [f"module @{name} {{", f"  weight @fc.weight : {w}"]
    if bias:
        lines.append(f"  weight @fc.bias : tensor<{N}x{dtype}>")
    lines += [
        f"  func @forward(%x: tensor<{M}x{K}x{dtype}>) -> (tensor<{M}x{N}x{dtype}>) {{",
        f"    %w = weight.get @fc.weight : {w}",
        f"    %wt = permute %w {{dims = [1, 0]}} : tensor<{K}x{N}x{dtype}>",
    ]
    if bias:
        lines += [
            f"    %b = weight.get @fc.bias : tensor<{N}x{dtype}>",
            f"    %h = addmm %b, %x, %wt : tensor<{M}x{N}x{dtype}>",
        ]
    else:
        lines.append(f"    %h = mm %x, %wt : tensor<{M}x{N}x{dtype}>")
    lines += ["    return %h", "  }", "}", ""]
    return "\n".join(lines)


def map_text(text: str, target: str, mode: str = "stream", passes: str = MAPPING, verify_each: bool = True) -> Module:
    """Parse graph-level WIR and run the mapping passes for ``target`` and ``mode``."""
    m = parse(text)
    m.attrs["target"] = target
    m.attrs["mode"] = mode
    return PassManager(passes, verify_each=verify_each).run(m)


def layers_in_order(m: Module) -> list:
    return sorted(m.layers.values(), key=lambda layer: layer.attrs["index"])


def only_layer(m: Module):
    (layer,) = m.layers.values()
    return layer.attrs


def route_flows(layer_name: str, routes: list[dict]) -> list[Flow]:
    """The Flow objects of a layer's recorded routes (the inverse of Flow.attrs)."""
    out = []
    for r in routes:
        box = tuple(r["box"]) if "box" in r else None
        feeds = tuple(r["feeds"]) if "feeds" in r else None
        out.append(
            Flow(
                r["flow"],
                layer_name,
                box,
                r.get("axis", "x"),
                r.get("src"),
                r.get("bytes", 0),
                feeds,
                [tuple(p) for p in r.get("path", [])],
                r["color"],
                r.get("peer", ""),
            )
        )
    return out


def _router_rects(f: Flow) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) inclusive rectangles of the routers a flow passes."""
    return [(c.start, r.start, c.stop - 1, r.stop - 1) for r, c in f.routers()]


def router_color_usage(flows: list[Flow], width: int, height: int, colors: int) -> int:
    """The most colors any router uses, by ``color_usage`` on a coordinate-compressed mesh: the count is
    constant between rectangle edges, so the grid of edges gives the same maximum as the whole mesh
    without allocating colors x height x width for every step of a 750x994 wafer."""
    rects = [(f, rc) for f in flows for rc in _router_rects(f)]
    if not rects:
        return 0
    xs = sorted({0, width} | {rc[0] for _, rc in rects} | {rc[2] + 1 for _, rc in rects})
    ys = sorted({0, height} | {rc[1] for _, rc in rects} | {rc[3] + 1 for _, rc in rects})
    ix = {x: i for i, x in enumerate(xs)}
    iy = {y: i for i, y in enumerate(ys)}
    small = [
        Flow(f.kind, f.layer, (ix[x0], iy[y0], ix[x1 + 1] - 1, iy[y1 + 1] - 1), color=f.color)
        for f, (x0, y0, x1, y1) in rects
    ]
    return int(color_usage(small, len(xs) - 1, len(ys) - 1, colors).max())


def same_color_conflicts(flows: list[Flow]) -> list[tuple[str, str, int]]:
    """Pairs of distinct flows that pass a common router on the same color."""
    by_color: dict[int, list[Flow]] = {}
    for f in flows:
        by_color.setdefault(f.color, []).append(f)
    out = []
    for color, group in by_color.items():
        rects = [_router_rects(f) for f in group]
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                if any(
                    a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3] for a in rects[i] for b in rects[j]
                ):
                    out.append(
                        (f"{group[i].kind} of @{group[i].layer}", f"{group[j].kind} of @{group[j].layer}", color)
                    )
    return out


def tiling_problems(name: str, a: dict, t) -> list[str]:
    """Does the tiling cover each dimension exactly once, and fit the memory budget?"""
    bad = []
    tl, mem = a["tiling"], a["memory"]
    dims = a.get("dims")
    if dims:
        K, M, N = dims["K"], dims["M"], dims["N"]
        k, m, n, passes = tl["K"], tl["M"], tl["N"], tl["passes"]
        if not (k["parts"] * k["tile"] >= K > (k["parts"] - 1) * k["tile"]):
            bad.append(f"@{name}: K={K} not covered exactly once by {k['parts']} x {k['tile']}")
        per_pass = m["tile"] * passes  # a row holds `tile` tokens in each of `passes` passes
        if not (m["parts"] * per_pass >= M > (m["parts"] - 1) * per_pass):
            bad.append(f"@{name}: M={M} not covered exactly once by {m['parts']} x {m['tile']} x {passes} passes")
        if n["chunk"] * n["steps"] * n["groups"] < N:
            bad.append(f"@{name}: N={N} not covered: chunk {n['chunk']} x steps {n['steps']} x groups {n['groups']}")
        if k["parts"] > tl["region"][0] or m["parts"] * n["groups"] > tl["region"][1]:
            bad.append(f"@{name}: tiling {k['parts']}x{m['parts'] * n['groups']} larger than its region {tl['region']}")
    parts = sum(v for key, v in mem.items() if key not in ("total", "budget"))
    if mem["total"] != parts:
        bad.append(f"@{name}: memory total {mem['total']} is not the sum of its buffers {parts}")
    if not mem["total"] <= mem["budget"] <= t.usable_sram:
        bad.append(f"@{name}: memory {mem['total']} over budget {mem['budget']} (usable {t.usable_sram})")
    return bad


def plan_problems(m: Module, check_colors: bool = True) -> list[str]:
    """Every broken promise of a mapped module, as readable lines (empty: the plan is sound)."""
    t = parse_target(str(m.attrs["target"]))
    bad = []
    for op in m.func().ops:
        ref = op.attrs.get(LAYER_ATTR)
        if ref is None or ref.name not in m.layers:
            bad.append(f"op %{op.results[0].name if op.results else op.name} has no layer ({ref})")
    steps: dict[int, list] = {}
    for layer in layers_in_order(m):
        bad += tiling_problems(layer.name, layer.attrs, t) + _layer_problems(layer.name, layer.attrs, t)
        steps.setdefault(layer.attrs["step"], []).append(layer)
    for step, group in steps.items():
        bad += _step_problems(step, group, t, check_colors)
    tot = m.attrs["plan.totals"]
    if not tot["cycles"] > 0 or not 0 <= tot["utilization"] <= 1 or tot["layers"] != len(m.layers):
        bad.append(f"totals {tot}")
    return bad


def _layer_problems(name: str, a: dict, t) -> list[str]:
    """One layer's rectangle, routes, memory map and cost."""
    bad = []
    x, y, w, h = a["rect"]
    if x < 0 or y < 0 or x + w > t.width or y + h > t.height or w < 1 or h < 1:
        bad.append(f"@{name}: rect {a['rect']} leaves the {t.width}x{t.height} mesh")
    if a["tiling"]["size"][0] > w or a["tiling"]["size"][1] > h:
        bad.append(f"@{name}: tiling size {a['tiling']['size']} larger than rect {a['rect']}")
    for r in a["routes"]:
        bad += _route_problems(name, r, t)
    end = max(e["offset"] + e["bytes"] for e in a["memmap"])
    if end != t.sram_bytes or any(e["offset"] % 16 for e in a["memmap"]):
        bad.append(f"@{name}: memory map ends at {end}, not at the {t.sram_bytes}-byte SRAM, or is unaligned")
    c = a["cost"]
    if not c["total"] > 0 or c["bound"] not in BOUNDS or not 0 <= c["utilization"] <= 1:
        bad.append(f"@{name}: cost {c}")
    return bad


def _route_problems(name: str, r: dict, t) -> list[str]:
    bad = []
    pts = [tuple(r["box"][:2]), tuple(r["box"][2:])] if "box" in r else [tuple(p) for p in r["path"]]
    if any(not (0 <= px < t.width and 0 <= py < t.height) for px, py in pts):
        bad.append(f"@{name}: {r['flow']} route {pts} leaves the mesh")
    if "box" in r and (r["box"][0] > r["box"][2] or r["box"][1] > r["box"][3]):
        bad.append(f"@{name}: {r['flow']} box {r['box']} is empty")
    if "path" in r and any(ax != bx and ay != by for (ax, ay), (bx, by) in pairwise(pts)):
        bad.append(f"@{name}: {r['flow']} path {pts} is not rectilinear")
    return bad


def _step_problems(step: int, group: list, t, check_colors: bool) -> list[str]:
    """The layers of one step: their rectangles are disjoint and their routes fit the colors."""
    bad = []
    rects = [(layer.name, layer.attrs["rect"]) for layer in group]
    for i, (na, ra) in enumerate(rects):
        for nb, rb in rects[i + 1 :]:
            if ra[0] < rb[0] + rb[2] and rb[0] < ra[0] + ra[2] and ra[1] < rb[1] + rb[3] and rb[1] < ra[1] + ra[3]:
                bad.append(f"step {step}: @{na} {ra} overlaps @{nb} {rb}")
    if not check_colors:
        return bad
    flows = [f for layer in group for f in route_flows(layer.name, layer.attrs["routes"])]
    if any(not 0 <= f.color < t.usable_colors for f in flows):
        bad.append(f"step {step}: a color outside 0..{t.usable_colors - 1}")
    else:
        most = router_color_usage(flows, t.width, t.height, t.usable_colors)
        if most > t.usable_colors:
            bad.append(f"step {step}: a router uses {most} colors, {t.usable_colors} usable")
    for a_, b_, color in same_color_conflicts(flows):
        bad.append(f"step {step}: {a_} and {b_} share a router on color {color}")
    return bad


def resident_weight_shortfall(a: dict) -> int:
    """Pipeline mode: bytes of the layer's K x N weight that no PE's weight buffer has room for."""
    dims = a["dims"]
    dtype = a["dtype"] if isinstance(a["dtype"], DType) else DType(a["dtype"])
    need = dims["B"] * dims["K"] * dims["N"] * dtype.itemsize
    have = a["memory"]["weight"] * a["tiling"]["pes"]
    return max(0, need - have)
