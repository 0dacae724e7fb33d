"""tile: choose each layer's rectangle size and the tiling of its dimensions onto the mesh axes.

    layer @L0_fc1 {dims = {B = 1, K = 784, M = 8, N = 256}, kind = "matmul", ...}
  gains
    tiling = {K = {axis = "x", parts = 392, tile = 2}, M = {axis = "y", parts = 8, tile = 1},
              N = {axis = "time", chunk = 16, groups = 4, steps = 4}, passes = 1, pes = 12544, size = [392, 32]}
    (a batched product may add B = {axis = "x", parts = 8, tile = 4}: 8 groups of 4 products side by side,
    each K.parts columns wide; size[0] is then K.parts x B.parts; and attention under a constant causal mask
    causal = {on = "scores" | "probs", offset = 0}: its tiles above the diagonal are skipped, wafercc.ir.causal)
    memory = {accumulator = 128, activation = 8, budget = 47104, output = 4, tail = 4, total = 208, weight = 128}
    estimate = {bound = "ingress", compute = ..., total = ..., utilization = ...}

Weight streaming (the default): M on rows, K on columns (reduced along rows), N streamed in chunks down the
columns (``wafercc.mapping.tiling`` explains the model), a batched product's heads optionally in groups
side by side over the columns; the search tries every candidate under the per-PE
budget and keeps the cheapest by the cost model. A layer whose activations do not fit even on the whole
mesh is split into passes over M (re-streaming its weights each pass); one that cannot fit at all is an
error naming the layer and how far over the budget its smallest tiling is.

Layer pipelined: every layer stays resident, so the mesh is shared out: each layer gets an area in
proportion to its FLOPs (a balanced pipeline), at least what its resident weights need, on shelves of one
height; the tiling is then searched inside that rectangle.

Options: ``max-sram-kib`` caps the per-PE budget below the target's; ``target`` / ``mode`` override the
module's. Requires: partition. Guarantees: every layer has tiling, memory and estimate within the budget.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace

from wafercc.errors import PlanError
from wafercc.ir import Layer, Module
from wafercc.ir.causal import analyze, users
from wafercc.target import Target

from .plan import layers, mode_of, shape_of, target_of
from .tiling import DoesNotFit, Tiling, search


@dataclass(frozen=True)
class Tile:
    name = "tile"
    max_sram_kib: float = 0.0
    target: str = ""
    mode: str = ""

    def run(self, module: Module, stats: Counter | None = None) -> Module:
        t = target_of(module, self.target)
        mode = mode_of(module, self.mode)
        budget = t.usable_sram
        if self.max_sram_kib:
            budget = min(budget, int(self.max_sram_kib * 1024) - t.runtime_reserved_bytes)
        todo = layers(module, "partition", by="tile")
        sizes = _pipeline_sizes(todo, t, budget) if mode == "pipeline" else {}
        causal = _causal_layers(module, todo) if mode == "stream" else {}
        for layer in todo:
            w, h = sizes.get(layer.name, (t.width, t.height))
            shape = replace(shape_of(layer), causal=causal.get(layer.name))
            try:
                tiling = search(shape, t, mode, budget, w, h)
            except DoesNotFit as e:
                raise PlanError(_too_big(layer, t, mode, e, w, h)) from None
            _record(layer, tiling, budget, mode, w, h, shape.causal)
            if stats is not None:
                stats["layers tiled"] += 1
                stats["passes over M"] += tiling.passes - 1
                stats["causal layers"] += shape.causal is not None
        return module


def _causal_layers(module: Module, todo: list[Layer]) -> dict[str, tuple[str, int]]:
    """Attention layers whose product a constant causal mask makes partly useless (``wafercc.ir.causal``):
    layer name -> (on, offset). Weight streaming only for now: pipeline mode charges resident tiles, which
    this does not model."""
    wanted = {layer.attrs.get("anchor", "")[1:]: layer.name for layer in todo if layer.attrs.get("kind") == "attention"}
    if not wanted:
        return {}
    func = module.func()
    uses, memo, out = users(func), {}, {}
    for op in func.ops:
        if op.results and op.results[0].name in wanted:
            use = analyze(func, op, uses, memo)
            if use is not None:
                out[wanted[op.results[0].name]] = (use.on, use.offset)
    return out


def _record(layer: Layer, tl: Tiling, budget: int, mode: str, w: int, h: int, causal=None) -> None:
    dims = layer.attrs.get("dims", {})
    rows = tl.ry * tl.rn
    tiling = {
        "M": {"axis": "y", "parts": tl.ry, "tile": tl.mt},
        "K": {"axis": "x", "parts": tl.cx, "tile": tl.kt},
        "N": {
            "axis": "y" if mode == "pipeline" else "time",
            "groups": tl.rn,
            "chunk": tl.nc,
            "steps": -(-(-(-dims.get("N", 1) // tl.rn)) // tl.nc),
        },
    }
    if tl.bg > 1:  # batch groups side by side over the columns; absent, one group runs the whole batch
        tiling["B"] = {"axis": "x", "parts": tl.bg, "tile": tl.bt}
    if causal is not None:  # tiles above the causal diagonal are skipped (wafercc.ir.causal)
        tiling["causal"] = {"on": causal[0], "offset": causal[1]}
    layer.attrs["tiling"] = {
        **tiling,
        "passes": tl.passes,
        "pes": rows * tl.columns,
        "size": [tl.columns, rows],
        "region": [w, h],
    }
    mem = dict(tl.memory)
    layer.attrs["memory"] = {**mem, "total": sum(mem.values()), "budget": budget}
    layer.attrs["estimate"] = tl.cost_dict()


def _too_big(layer: Layer, t: Target, mode: str, e: DoesNotFit, w: int, h: int) -> str:
    over = e.need - e.have
    where = f"a {w}x{h} region" if (w, h) != (t.width, t.height) else f"the whole {t.width}x{t.height} mesh"
    msg = (
        f"layer @{layer.name} ({layer.attrs['kind']}, dims {_dims(layer)}) does not fit on {where} of "
        f"{t.name}: its smallest tiling needs {e.need:,} bytes per PE, {over:,} bytes ({over / e.have:.0%}) "
        f"over the {e.have:,}-byte budget"
    )
    if mode == "pipeline":
        msg += "; in pipeline mode every layer's weights stay resident: try --mode stream"
    return msg


def _dims(layer: Layer) -> str:
    return " ".join(f"{k}={v}" for k, v in layer.attrs.get("dims", {}).items())


def _pipeline_sizes(todo: list[Layer], t: Target, budget: int) -> dict[str, tuple[int, int]]:
    """Rectangle sizes for layer-pipelined mode: each layer gets at least the area its resident tiling
    needs, and the rest of the mesh in proportion to its FLOPs (a balanced pipeline), on shelves of one
    height."""
    total_weights = sum(layer.attrs["weight_bytes"] for layer in todo)
    capacity = t.pes * budget
    if total_weights > capacity:
        raise PlanError(
            f"pipeline mode keeps every weight on the wafer, but the model's weights are "
            f"{total_weights:,} bytes and {t.name}'s SRAM holds {capacity:,} bytes after the runtime's share "
            f"({total_weights / capacity:.2f}x over); use --mode stream"
        )
    floor = [_min_area(layer, t, budget) for layer in todo]
    for layer, f in zip(todo, floor):
        if f > t.pes:  # fits on no region of the mesh at all
            try:
                search(shape_of(layer), t, "pipeline", budget, t.width, t.height)
            except DoesNotFit as e:
                raise PlanError(_too_big(layer, t, "pipeline", e, t.width, t.height)) from None
    if sum(floor) > t.pes:
        raise PlanError(
            f"pipeline mode needs {sum(floor):,} PEs to keep every layer resident, {t.name} has "
            f"{t.pes:,}; use --mode stream"
        )
    work = [max(layer.attrs["flops"], 1) for layer in todo]
    for shelves in range(1, t.height + 1):
        h = t.height // shelves
        # Share out all the spare area first (a lone layer gets the whole mesh), then less and less of it
        # until the rounded-up widths fit the shelves: no half of the wafer is kept idle for slack.
        for share in (1.0, 0.875, 0.75, 0.5):
            widths = _widths(todo, t, budget, floor, work, h, int(max(shelves * h * t.width - sum(floor), 0) * share))
            if all(w <= t.width for w in widths) and _fits_on_shelves(widths, t.width, shelves):
                return {layer.name: (wd, h) for layer, wd in zip(todo, widths)}
    raise PlanError(
        f"pipeline mode cannot give {len(todo)} layers a region each on {t.name} "
        f"({t.width}x{t.height}); use --mode stream"
    )


def _widths(
    todo: list[Layer], t: Target, budget: int, floor: list[int], work: list[int], h: int, spare: int
) -> list[int]:
    """Each layer's width on shelves of height h: its floor area plus its FLOPs' share of ``spare``."""
    areas = [f + spare * w // sum(work) for f, w in zip(floor, work)]
    widths = [max(1, min(t.width, a // h)) for a in areas]
    # The minimum area was measured on a square; a strip of height h may need to be wider.
    return [w if _fits(layer, t, budget, w, h) else _min_width(layer, t, budget, h) for layer, w in zip(todo, widths)]


def _fits(layer: Layer, t: Target, budget: int, w: int, h: int) -> bool:
    try:
        search(shape_of(layer), t, "pipeline", budget, w, h)
        return True
    except DoesNotFit:
        return False


def _min_width(layer: Layer, t: Target, budget: int, h: int) -> int:
    """The narrowest strip of height h the layer fits on (t.width + 1 if none)."""
    if not _fits(layer, t, budget, t.width, h):
        return t.width + 1
    lo, hi = 1, t.width
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _fits(layer, t, budget, mid, h) else (mid + 1, hi)
    return lo


def _min_area(layer: Layer, t: Target, budget: int) -> int:
    """The fewest PEs on which the layer's resident tiling fits (a roughly square region), by bisection."""
    shape = shape_of(layer)

    def fits(area: int) -> bool:
        w = min(t.width, max(1, math.isqrt(area)))
        h = min(t.height, -(-area // w))
        try:
            search(shape, t, "pipeline", budget, w, h)
            return True
        except DoesNotFit:
            return False

    if not fits(t.pes):
        return t.pes + 1
    lo, hi = 1, t.pes
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    return lo


def _fits_on_shelves(widths: list[int], width: int, shelves: int) -> bool:
    used, shelf = 0, 1
    for w in widths:
        if used + w > width:
            shelf, used = shelf + 1, 0
        used += w
    return shelf <= shelves
