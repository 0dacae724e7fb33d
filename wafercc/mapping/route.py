"""route: turn every data movement of every layer into paths on the mesh with router colors.

    layer @L0_fc1 {rect = [0, 0, 392, 32], tiling = {...}, ...}
  gains
    routes = [{flow = "ingress", color = 0, box = [0, 16, 195, 16], axis = "x", src = 0, feeds = [0, 195],
               bytes = 2048},
              {flow = "broadcast", color = 1, box = [0, 0, 195, 31], axis = "y", src = 16, bytes = 2048},
              {flow = "reduce", color = 2, box = [0, 0, 391, 31], axis = "x", src = 0, bytes = 3072}, ...]
    colors = 4, links = {busiest = [195, 16, "E"], bytes = 401408, cycles = 100352}

Weight streaming, per layer [hardware.md §5.1]: the weights enter at the I/O ports on the west and east
edges; each port's data runs along the port's row (``ingress``) and turns down the columns it feeds, where it
is multicast to every row of the layer (``broadcast``). Partial sums are reduced along each row by a ring
folded onto the row: one color eastward, one westward (``reduce``); a batched product split into batch
groups has one ring per group, within the group's columns. When a layer's rectangle differs from
the previous one's, its input activations are redistributed (``relayout``).

Layer pipelined: weights stay resident; activations are multicast down each layer's columns and reduced
along its rows as above, and every producer-to-consumer transfer between layers (skip connections too) is
routed on the mesh by negotiated congestion (PathFinder) as parallel lanes: paths are found on a coarsened
mesh with costs that grow with the present overuse of a link and its history of overuse, and rerouted until
no link carries more than it can in one pipeline step (or the rounds run out: the remaining overuse then
lengthens the step, and the cost pass charges it).

Colors: flows whose paths share a router need different colors; a greedy coloring of that conflict graph
(networkx) assigns them. Colors are the hard limit: a router that would need more than the target's usable
colors is an error naming the router and every flow through it.

Requires: place. Guarantees: every flow lies inside the mesh, every router within the color budget.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import networkx as nx
import numpy as np

from wafercc.errors import PlanError
from wafercc.ir import DType, Layer, Module, attr_key
from wafercc.ir.plan import ACC_BYTES
from wafercc.target import Target

from .flows import Flow, LinkLoad, busiest_router
from .layers import LAYER_ATTR
from .plan import layers, mode_of, target_of
from .ports import port_runs
from .tiling import causal_scores_work


@dataclass(frozen=True)
class Route:
    name = "route"
    max_iterations: int = 40

    def run(self, module: Module, stats: Counter | None = None) -> Module:
        t = target_of(module)
        mode = mode_of(module)
        todo = layers(module, "place", by="route")
        if mode == "stream":
            self._stream(todo, t, stats)
            return module
        per_layer = {layer.name: _resident_flows(layer, t) for layer in todo}
        for f in _pathfinder(_transfers(module, todo), todo, t, self.max_iterations, stats):
            per_layer[f.layer].append(f)
        _assign_colors([f for layer in todo for f in per_layer[layer.name]], t)
        for layer in todo:
            _record(layer, per_layer[layer.name], t)
        if stats is not None:
            stats["flows"] += sum(len(v) for v in per_layer.values())
        return module

    def _stream(self, todo: list[Layer], t: Target, stats) -> None:
        """Layers run one at a time, so each is routed and colored alone; a layer with the same structure,
        rectangle, tiling and predecessor shape as one already routed reuses its routes (identical blocks
        of a deep model are routed once)."""
        done: dict[tuple, Layer] = {}
        prev = None
        for layer in todo:
            key = _route_key(layer, prev)
            first = done.get(key)
            if first is not None:  # the same routes: shared, since a pass never edits another pass's attributes
                layer.attrs["routes"] = first.attrs["routes"]
                layer.attrs["colors"] = first.attrs["colors"]
                layer.attrs["links"] = dict(first.attrs["links"], busiest=list(first.attrs["links"]["busiest"]))
                if stats is not None:
                    stats["layers routed by reuse"] += 1
            else:
                flows = _stream_flows(layer, t, prev)
                _assign_colors(flows, t)
                _record(layer, flows, t)
                done[key] = layer
                if stats is not None:
                    stats["flows"] += len(flows)
            prev = layer


def _route_key(layer: Layer, prev: Layer | None) -> tuple:
    a = layer.attrs
    before = None if prev is None else (tuple(prev.attrs["rect"]), tuple(prev.attrs["tiling"]["size"]))
    return (
        a.get("structure"),
        a["kind"],
        tuple(a["rect"]),
        attr_key(a["tiling"]),
        a["weight_bytes"],
        attr_key(a.get("dims", {})),
        a["dtype"],
        a.get("operand_dtype"),
        a.get("storage"),
        before,
    )


# -- weight streaming -------------------------------------------------------------------------


def _stream_flows(layer: Layer, t: Target, prev: Layer | None) -> list[Flow]:
    a = layer.attrs
    x0, y0, w, h = a["rect"]
    x1, y1 = x0 + w - 1, y0 + h - 1
    tl = a["tiling"]
    flows: list[Flow] = []
    stream_bytes = a["weight_bytes"] * tl["passes"]
    if stream_bytes:
        flows += _ingress_and_broadcast(layer.name, t, x0, x1, y0, y1, stream_bytes / w)
    replicate = _replication_bytes(a)
    if replicate:  # the first row group's activations, multicast down each column to the other groups
        flows.append(Flow("replicate", layer.name, (x0, y0, x1, y0 + tl["size"][1] - 1), "y", y0, replicate / w))
    if w > 1 and a["kind"] != "elementwise":
        dims = a.get("dims", {})
        rows = tl["size"][1]
        # per row of PEs: the partial sums of a row's tokens, for each product of the group's batch
        partial = _batch_tile(tl, dims) * tl["M"]["tile"] * _output_columns(tl, dims)
        flows += _reduce_rings(layer.name, tl, x0, x1, y0, y0 + rows - 1, partial)
    if prev is not None and prev.attrs["tiling"]["size"] != tl["size"]:
        px0, py0, pw, ph = prev.attrs["rect"]
        bx0, by0 = min(x0, px0), min(y0, py0)
        bx1, by1 = max(x1, px0 + pw - 1), max(y1, py0 + ph - 1)
        moved = _input_bytes(layer) / max(by1 - by0 + 1, 1) / 2
        flows.append(Flow("relayout", layer.name, (bx0, by0, bx1, by1), "x", (bx0 + bx1) // 2, moved))
    return flows


def _output_columns(tl: dict, dims: dict) -> int:
    """Output columns a row of PEs reduces over all passes: its row group's every pass, or for causal scores
    only the chunks on or below the diagonal (the busiest row's, as the tile pass charges them)."""
    nt = -(-dims.get("N", 1) // tl["N"]["groups"])
    causal = tl.get("causal")
    if causal is None or causal["on"] != "scores":
        return tl["passes"] * nt
    per_pass = tl["M"]["parts"] * tl["M"]["tile"]
    _, _, out = causal_scores_work(
        dims.get("M", 1), dims.get("N", 1), causal["offset"], per_pass, tl["passes"], nt, tl["N"]["chunk"]
    )
    return int(out)


def _batch_tile(tl: dict, dims: dict) -> int:
    """Products of the batch each PE holds: its batch group's, or the whole batch without groups."""
    return tl["B"]["tile"] if "B" in tl else dims.get("B", 1)


def _reduce_rings(name: str, tl: dict, x0: int, x1: int, y0: int, y1: int, partial: float) -> list[Flow]:
    """The reduce-scatter ring of each batch group, within its own columns (without batch groups, one over
    x0 .. x1): one flow from its west column, one from its east, each carrying half of what every PE
    forwards, (cx - 1) / cx of its ``partial`` sums."""
    if "B" in tl:
        cx = tl["K"]["parts"]
        spans = [(x0 + g * cx, x0 + (g + 1) * cx - 1) for g in range(tl["B"]["parts"])]
    else:
        spans = [(x0, x1)]
    flows = []
    for west, east in spans:
        n = east - west + 1
        if n < 2:
            continue
        ring = partial * ACC_BYTES * (n - 1) / n / 2  # half of the reduce-scatter runs each way
        flows.append(Flow("reduce", name, (west, y0, east, y1), "x", west, ring))
        flows.append(Flow("reduce", name, (west, y0, east, y1), "x", east, ring))
    return flows


def _replication_bytes(a: dict) -> float:
    """Activation bytes multicast from the first row group (N split over rows) down to the others, over all
    columns: a multicast crosses each link once, so one group's tiles whatever the number of groups."""
    tl = a["tiling"]
    groups = tl["N"]["groups"]
    if groups <= 1 or a["kind"] == "elementwise":
        return 0.0
    dims = a.get("dims", {})
    rows_of_group = tl["M"]["parts"] * tl["M"]["tile"]
    return tl["passes"] * dims.get("B", 1) * rows_of_group * dims.get("K", 1) * _operand_itemsize(a)


def _input_bytes(layer: Layer) -> float:
    dims = layer.attrs.get("dims", {})
    return dims.get("B", 1) * dims.get("M", 1) * dims.get("K", 1) * _operand_itemsize(layer.attrs)


def _operand_itemsize(a: dict) -> int:
    """Bytes of a stored operand element: 16-bit operands of an f32 product (``operand_dtype``) move in 2."""
    return DType(a.get("operand_dtype") or a.get("storage") or a["dtype"]).itemsize


def _ingress_and_broadcast(name, t, x0, x1, y0, y1, per_column) -> list[Flow]:
    """Each port's run of columns (``ports.port_runs``): the data runs along the port row from the edge
    (ingress), then turns down (and up) the run's columns (broadcast)."""
    flows = []
    for edge_x, port_y, xs, xe in port_runs(t, x0, x1):
        flows.append(
            Flow(
                "ingress",
                name,
                (min(edge_x, xs), port_y, max(edge_x, xe), port_y),
                "x",
                edge_x,
                per_column,
                feeds=(xs, xe),
            )
        )
        flows.append(Flow("broadcast", name, (xs, min(y0, port_y), xe, max(y1, port_y)), "y", port_y, per_column))
    return flows


# -- layer pipelined --------------------------------------------------------------------------


def _resident_flows(layer: Layer, t: Target) -> list[Flow]:
    a = layer.attrs
    x0, y0, w, h = a["rect"]
    x1, y1 = x0 + w - 1, y0 + h - 1
    flows = [Flow("broadcast", layer.name, (x0, y0, x1, y1), "y", y0, _input_bytes(layer) / w)]
    if w > 1 and a["kind"] != "elementwise":
        dims = a.get("dims", {})
        tl = a["tiling"]
        partial = _batch_tile(tl, dims) * dims.get("M", 1) * dims.get("N", 1) / max(h, 1)
        flows += _reduce_rings(layer.name, tl, x0, x1, y0, y1, partial)
    return flows


def _transfers(module: Module, todo: list[Layer]) -> list[tuple[str, str, int]]:
    """(producer, consumer, bytes) for every activation that crosses from one layer to another. A value
    computed from constants alone (a ``constant``, a ``full``, an ``arange`` and what follows from them only)
    is not an activation: each layer that reads it makes its own copy from the op's attributes. Without
    this, CSE's one copy of a block's constants (the RMSNorm epsilon, an attention mask of the KV cache's
    length) became a transfer from the first block to every later one, all leaving one router."""
    func = module.func()
    layer_of: dict[int, str] = {}
    dynamic = {id(a) for a in func.args}  # values that depend on the model's inputs
    out: dict[tuple[str, str], int] = {}
    for op in func.ops:
        here = op.attrs[LAYER_ATTR].name
        for v in op.operands:
            src = layer_of.get(id(v))
            if src is not None and src != here and id(v) in dynamic:
                out[(src, here)] = out.get((src, here), 0) + v.type.nbytes
        depends = any(id(v) in dynamic for v in op.operands)
        for r in op.results:
            layer_of[id(r)] = here
            if depends:
                dynamic.add(id(r))
    return [(a, b, n) for (a, b), n in out.items()]


def _pathfinder(wanted, todo, t: Target, iterations: int, stats) -> list[Flow]:
    """Route every transfer as parallel lanes across the producer's and consumer's facing edges, on a
    coarsened mesh (a coarse edge stands for ``block`` parallel links), by negotiated congestion. Overuse
    that remains after ``iterations`` rounds is not an error: it slows the pipeline step, and the cost pass
    charges it from the link loads. The lowest-overuse round is kept."""
    rect = {layer.name: layer.attrs["rect"] for layer in todo}
    step = max(layer.attrs["estimate"]["total"] for layer in todo)
    block = max(1, math.ceil(max(t.width, t.height) / 48))
    g = nx.grid_2d_graph(-(-t.width // block), -(-t.height // block)).to_directed()
    capacity = block * t.link_bytes_per_cycle * max(step, 1.0)
    lanes = _lanes(wanted, rect, block)
    history = dict.fromkeys(g.edges, 0.0)
    best, best_over = None, math.inf
    for it in range(iterations):
        paths, present = _route_round(g, lanes, history, capacity, 0.5 * (1.6**it))
        overuse = sum(max(0.0, load - capacity) for load in present.values())
        if stats is not None:
            stats["pathfinder rounds"] += 1
        if overuse < best_over:
            best, best_over = paths, overuse
        if overuse == 0:
            break
        for e, load in present.items():
            if load > capacity:
                history[e] += (load - capacity) / capacity
    if stats is not None and best_over > 0:
        stats["links over capacity"] += 1
    flows = []
    for (s, d, n, a, b, src, dst), p in zip(lanes, best):
        pts = [src] + [_centre(c, block, t) for c in p[1:-1]] + [dst]
        flows.append(Flow("transfer", b, path=_rectilinear(pts), nbytes=n, peer=a))
    return flows


def _lanes(wanted, rect: dict, block: int) -> list[tuple]:
    """(coarse source, coarse destination, bytes, producer, consumer, source PE, destination PE) of every
    lane: a transfer is split into as many lanes as coarse blocks face each other."""
    lanes = []
    for a, b, n in wanted:
        side = _facing_side(rect[a], rect[b])
        span = rect[a][3] if side in "EW" else rect[a][2]
        k = max(1, min(span, rect[b][3] if side in "EW" else rect[b][2]) // block)
        for i in range(k):
            src, dst = _port(rect[a], side, i, k), _port(rect[b], _OPPOSITE[side], i, k)
            lanes.append((_block_of(src, block), _block_of(dst, block), n / k, a, b, src, dst))
    return lanes


def _route_round(g, lanes, history: dict, capacity: float, pres_fac: float) -> tuple[list, dict]:
    """One negotiated-congestion round: each lane's cheapest path given the load the earlier lanes of this
    round put on each edge (``present``) and the overuse of earlier rounds (``history``)."""
    present = dict.fromkeys(g.edges, 0.0)
    paths = []
    for s, d, n, *_ in lanes:

        def cost(u, v, _attrs, n=n):
            over = max(0.0, present[(u, v)] + n - capacity) / capacity
            return (1.0 + history[(u, v)]) * (1.0 + pres_fac * over)

        p = nx.dijkstra_path(g, s, d, weight=cost) if s != d else [s]
        for e in zip(p, p[1:]):
            present[e] += n
        paths.append(p)
    return paths, present


_OPPOSITE = {"E": "W", "W": "E", "S": "N", "N": "S"}


def _facing_side(a, b) -> str:
    """The side of rectangle ``a`` that faces rectangle ``b`` (the floorplan's shelves run both ways)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    if bx >= ax + aw:
        return "E"
    if bx + bw <= ax:
        return "W"
    return "S" if by >= ay + ah else "N"


def _port(r, side: str, lane: int, lanes: int) -> tuple[int, int]:
    """Lane ``lane`` of ``lanes`` spread along side ``side`` of rectangle ``r``."""
    x, y, w, h = r
    if side in "EW":
        return (x + w - 1 if side == "E" else x, y + int((lane + 0.5) * h / lanes))
    return (x + int((lane + 0.5) * w / lanes), y + h - 1 if side == "S" else y)


def _block_of(p, block):
    return (p[0] // block, p[1] // block)


def _centre(c, block, t: Target):
    return (min(c[0] * block + block // 2, t.width - 1), min(c[1] * block + block // 2, t.height - 1))


def _rectilinear(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Corner points of an XY path through ``points``, with collinear points merged."""
    out = [points[0]]
    for p in points[1:]:
        last = out[-1]
        if p[0] != last[0] and p[1] != last[1]:
            out.append((p[0], last[1]))
        if p != out[-1]:
            out.append(p)
    merged = [out[0]]
    for i in range(1, len(out) - 1):
        a, b, c = merged[-1], out[i], out[i + 1]
        if not ((a[0] == b[0] == c[0]) or (a[1] == b[1] == c[1])):
            merged.append(b)
    if len(out) > 1:
        merged.append(out[-1])
    return merged


# -- colors -----------------------------------------------------------------------------------


def _assign_colors(flows: list[Flow], t: Target) -> None:
    if not flows:
        return
    boxes = np.array([_bbox(f) for f in flows])
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    meet = (
        (x0[:, None] <= x1[None, :])
        & (x0[None, :] <= x1[:, None])
        & (y0[:, None] <= y1[None, :])
        & (y0[None, :] <= y1[:, None])
    )
    g = nx.Graph()
    g.add_nodes_from(range(len(flows)))
    for i, j in zip(*np.nonzero(np.triu(meet, 1))):
        if _share_router(flows[int(i)], flows[int(j)]):
            g.add_edge(int(i), int(j))
    coloring = nx.greedy_color(g, strategy="largest_first")
    if max(coloring.values()) + 1 > t.usable_colors and len(flows) <= 2000:
        # largest-first can use more colors than any router needs; DSatur is slower and often tighter.
        coloring = nx.greedy_color(g, strategy="saturation_largest_first")
    for i, f in enumerate(flows):
        f.color = coloring[i]
    most = max(coloring.values()) + 1
    if most > t.usable_colors:
        count, x, y = busiest_router(flows)
        here = [f"{f.kind} of @{f.layer}" for f in flows if _passes(f, x, y)]
        if count > t.usable_colors:
            raise PlanError(
                f"router ({x},{y}) needs {count} colors but {t.name} has "
                f"{t.usable_colors} usable; flows through it: {', '.join(here)}"
            )
        raise PlanError(
            f"the flows' conflicts need {most} colors but {t.name} has {t.usable_colors} usable "
            f"(no single router carries more than {count}; the busiest is ({x},{y}): {', '.join(here)})"
        )


def _bbox(f: Flow) -> tuple[int, int, int, int]:
    if f.box is not None:
        return tuple(f.box)
    xs = [p[0] for p in f.path]
    ys = [p[1] for p in f.path]
    return (min(xs), min(ys), max(xs), max(ys))


def _share_router(a: Flow, b: Flow) -> bool:
    for ra, ca in a.routers():
        for rb, cb in b.routers():
            if ra.start < rb.stop and rb.start < ra.stop and ca.start < cb.stop and cb.start < ca.stop:
                return True
    return False


def _passes(f: Flow, x: int, y: int) -> bool:
    return any(r.start <= y < r.stop and c.start <= x < c.stop for r, c in f.routers())


def _record(layer: Layer, flows: list[Flow], t: Target) -> None:
    load = LinkLoad(t.width, t.height)
    for f in flows:
        load.add(f)
    busiest, (x, y, d) = load.busiest()
    layer.attrs["routes"] = [f.attrs() for f in flows]
    layer.attrs["colors"] = len({f.color for f in flows})
    layer.attrs["links"] = {
        "busiest": [x, y, d],
        "bytes": int(round(busiest)),
        "cycles": round(busiest / t.link_bytes_per_cycle, 1),
    }
