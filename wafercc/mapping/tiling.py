"""The cost model and the tiling search, in cycles.

A layer is a (batched) matrix product Y[M, N] = X[M, K] W[K, N] plus an elementwise tail. In weight
streaming it runs the way the hardware is built to run it [hardware.md §5.1]:

    M (tokens)      split over mesh rows:     each row holds mt = M / ry tokens
    K (reduction)   split over mesh columns:  each column holds kt = K / cx of the activations (resident)
    N (outputs)     streamed in time, nc columns of W per step, optionally split over rn row groups
    weights         enter at the I/O ports, run along a port row, and are broadcast down each column
    partial sums    reduced along each row in a ring (reduce-scatter), leaving Y in the layout the next
                    layer reads: M on rows, Y's N (the next K) on columns

Per PE a layer holds: its activation tile (mt*kt), the output tile (mt*N/(rn*cx)), double-buffered fp32
accumulators for one chunk (2*mt*nc) and a double-buffered weight chunk (2*kt*nc). The search evaluates
every candidate (kt, mt, rn, nc, passes) at once with numpy and keeps the cheapest that fits.

Every term is in cycles; every factor is a field of ``Target``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from wafercc.ir import DType

from .target import Target

ACC_BYTES = 4  # accumulators are fp32 whatever the storage dtype (the FMAC with fp32 accumulate) [§1.4]


def fmac_rate(t: Target, dtype: DType) -> int:
    """FLOPs per PE per cycle of a product accumulated in fp32: 16-bit operands use the fp16 x fp16 + fp32
    FMAC (``@fmachs``: 2-wide on WSE-2, 4 on WSE-3), fp32 the scalar ``@fmacs`` [hardware.md §1.4]."""
    table = dict(t.flops_per_cycle)
    if dtype.itemsize == 2 and "f16acc32" in table:
        return table["f16acc32"]
    return t.flops(dtype)


@dataclass(frozen=True)
class Shape:
    """What the tiling search needs to know about a layer."""

    kind: str  # matmul | conv | attention | gather | elementwise
    B: int
    M: int
    K: int
    N: int
    dtype: DType
    weight_bytes: int
    flops: int  # the whole layer's, tail included
    tail_elements: int


@dataclass(frozen=True)
class Tiling:
    kt: int
    mt: int
    cx: int
    ry: int
    rn: int
    nc: int
    passes: int
    memory: tuple[tuple[str, int], ...]  # per-PE buffers, bytes
    cost: tuple[tuple[str, float], ...]  # cycles by term, plus totals

    @property
    def memory_bytes(self) -> int:
        return sum(b for _, b in self.memory)

    def cost_dict(self) -> dict:
        return dict(self.cost)


class DoesNotFit(Exception):
    def __init__(self, need: int, have: int):
        super().__init__(f"needs {need} bytes per PE, has {have}")
        self.need = need
        self.have = have


def _candidates(total: int, most_parts: int) -> np.ndarray:
    """Tile sizes t (parts = ceil(total / t) <= most_parts) worth trying: every size whose part count is
    distinct, thinned geometrically once there are many."""
    lo = max(1, -(-total // most_parts))
    sizes = {lo, total}
    t = lo
    while t < total:
        sizes.add(t)
        parts = -(-total // t)
        sizes.add(-(-total // parts))  # the smallest tile with this part count: no ragged padding
        t = max(t + 1, int(t * GROWTH))
    return np.array(sorted(s for s in sizes if 1 <= s <= total), dtype=np.int64)


# Candidate tile sizes grow geometrically by this factor (plus the smallest tile of each part count met on
# the way, which divides the dimension best): 1.25 finds the same plans as 1.08 on GPT-3 shapes, 10x faster.
GROWTH = 1.25

_NC = np.array([1, 2, 4, 8, 16, 32, 64, 128], dtype=np.int64)


def search(shape: Shape, target: Target, mode: str = "stream", max_sram: int | None = None,
           width: int | None = None, height: int | None = None) -> Tiling:
    """The cheapest tiling of ``shape`` on a width x height rectangle; raises DoesNotFit."""
    return _search(shape, target, mode, max_sram or target.usable_sram, width or target.width,
                   height or target.height)


@lru_cache(maxsize=4096)
def _search(shape: Shape, t: Target, mode: str, budget: int, width: int, height: int) -> Tiling:
    if shape.kind != "elementwise" and min(shape.B, shape.M, shape.K, shape.N) == 0:
        return _nothing_to_do(shape, t)
    # When every token can have its own row, passes over M only re-stream weights: try without them first
    # (9x fewer candidates), and widen the search only if nothing fits.
    if shape.M <= height and shape.kind != "elementwise":
        try:
            return _search_grid(shape, t, mode, budget, width, height, (1,))
        except DoesNotFit:
            pass
    return _search_grid(shape, t, mode, budget, width, height, (1, 2, 4, 8, 16, 32, 64, 128, 256))


def _search_grid(shape: Shape, t: Target, mode: str, budget: int, width: int, height: int,
                 pass_list: tuple[int, ...]) -> Tiling:
    e = shape.dtype.itemsize
    fpc = fmac_rate(t, shape.dtype)
    if shape.kind == "elementwise":
        return _elementwise(shape, t, budget, width, height)
    K, M, N, B = shape.K, shape.M, shape.N, shape.B
    pass_counts = np.array(pass_list, dtype=np.int64)
    kt = _candidates(K, width)[:, None, None, None, None]
    mt = _candidates(M, height * int(pass_counts[-1]))[None, :, None, None, None]  # passes let tiles shrink
    rn = np.array([1, 2, 4, 8, 16, 32, 64], dtype=np.int64)[None, None, :, None, None]
    nc = _NC[None, None, None, :, None]
    passes = pass_counts[None, None, None, None, :]

    cx = -(-K // kt)
    ry = -(-M // (mt * passes))  # rows that hold one pass's tokens
    rows = ry * rn
    nt = -(-N // rn)  # output columns per row group
    nc = np.minimum(nc, nt)
    steps = -(-nt // nc)
    ok = np.broadcast_to((cx <= width) & (rows <= height) & (rn <= N), np.broadcast_shapes(
        cx.shape, rows.shape, nc.shape)).copy()

    if mode == "pipeline":  # weights resident: PE (column c, row r of group g) keeps W[K_c, N_g split over ry]
        wtile = kt * -(-nt // ry) * e * B
    else:
        wtile = 2 * kt * nc * e
    mem_act = mt * kt * e * B
    mem_out = mt * -(-nt // cx) * e * B
    mem_acc = 2 * mt * nc * ACC_BYTES
    mem_tail = -(-shape.tail_elements // np.maximum(rows * cx * passes, 1)) * e
    mem = _aligned(mem_act) + _aligned(mem_out) + _aligned(mem_acc) + _aligned(wtile) + _aligned(mem_tail)
    ok &= mem <= budget
    if not ok.any():
        need = int(np.where((cx <= width) & (rows <= height), mem, np.iinfo(np.int64).max).min())
        # (the smallest tiling that fits the mesh at all: how far over budget the layer is)
        raise DoesNotFit(need, budget)

    if shape.kind == "gather":  # each PE copies the streamed rows its tokens select: mt rows of a chunk
        compute = passes * B * steps * (mt * nc / fpc + t.fmac_pipeline_fill_cycles)
    else:
        compute = passes * B * steps * (mt * kt * nc * 2 / fpc + t.fmac_pipeline_fill_cycles)
    weight_stream = shape.weight_bytes * (passes if mode == "stream" else 0)
    ingress = weight_stream / t.io_bytes_per_cycle if shape.kind != "attention" else 0 * compute
    # Each column's link carries its K-slice of every streamed weight column (all row groups share it);
    # attention streams its second operand from the wafer instead of MemoryX, over the same columns.
    col_bytes = kt * N * e * B * (passes if mode == "stream" else 1)
    # Each I/O port's row carries the weights of the run of columns it feeds (as route lays them out).
    port_row = _port_row_columns(cx, width, t) * (weight_stream / cx) / t.link_bytes_per_cycle \
        if shape.kind != "attention" else 0
    # With rn row groups, every group needs its own copy of the activations: the first group's ry rows of
    # tiles are multicast down each column to the other rn - 1 groups.
    replicate = passes * B * (rn - 1) * ry * mt * kt * e
    broadcast = np.maximum((col_bytes + replicate) / t.link_bytes_per_cycle, port_row)
    # Ring reduce-scatter along each row: every PE forwards (cx - 1) / cx of its partial sums.
    reduce = passes * B * mt * nt * ACC_BYTES * (cx - 1) / np.maximum(cx, 1) / t.link_bytes_per_cycle
    latency = rows * t.hop_cycles + cx * (t.hop_cycles + t.relay_cycles)
    active = rows * cx
    tail_flops = shape.flops if shape.kind == "gather" else max(shape.flops - 2 * B * M * K * N, 0)
    tail = tail_flops / (active * t.flops(DType.f32))
    overlapped = np.maximum(np.maximum(compute, broadcast), np.maximum(reduce, ingress if t.overlap_ingress else 0))
    total = overlapped + latency + tail + (0 if t.overlap_ingress else ingress)
    total = np.where(ok, total, np.inf)
    # Among tilings within 0.5% of the fastest, take the one that streams the weights the fewest times:
    # MemoryX traffic is a cost the cycle count does not see (power, the other systems of a cluster).
    # Then the fastest; among equals (a fabric bound can hide compute) the least compute, then the least
    # fabric traffic, then the least memory.
    near = total <= total.min() * 1.005
    pb = np.broadcast_to(passes, total.shape)
    idx = np.flatnonzero(near & (pb == pb[near].min()))
    keys = [np.broadcast_to(a, total.shape).ravel()[idx] for a in (mem, broadcast + reduce, compute, total)]
    i = np.unravel_index(int(idx[np.lexsort(keys)[0]]), total.shape)
    pick = lambda a: float(np.broadcast_to(a, total.shape)[i])  # noqa: E731

    bound, ideal, io = _bound(shape, t, fpc, mode)
    tot = pick(total)
    terms = {"compute": pick(compute), "ingress": pick(ingress), "broadcast": pick(broadcast),
             "reduce": pick(reduce), "latency": pick(latency), "tail": pick(tail)}
    limiting = max(("compute", "ingress", "broadcast", "reduce"), key=lambda k: terms[k])
    cost = {**{k: round(v, 1) for k, v in terms.items()}, "total": round(tot, 1), "bound": limiting,
            "roofline": round(bound, 1), "roofline_by": "compute" if ideal >= io else "ingress",
            "utilization": sig4(shape.flops / (tot * t.pes * fpc)) if tot > 0 else 0.0}
    memory = {"activation": pick(mem_act), "output": pick(mem_out), "accumulator": pick(mem_acc),
              "weight": pick(wtile), "tail": pick(mem_tail)}
    return Tiling(
        kt=int(pick(kt)), mt=int(pick(mt)), cx=int(pick(cx)), ry=int(pick(ry)), rn=int(pick(rn)),
        nc=int(pick(nc)), passes=int(pick(passes)),
        memory=tuple((k, int(v)) for k, v in memory.items()), cost=tuple(cost.items()),
    )


def _bound(shape: Shape, t: Target, fpc: int, mode: str) -> tuple[float, float, float]:
    """The roofline: max(all FLOPs at the whole mesh's peak, the weights at the I/O bandwidth); in pipeline
    mode no weight streams, so compute alone."""
    ideal = shape.flops / (t.pes * fpc)
    io = shape.weight_bytes / t.io_bytes_per_cycle if shape.kind != "attention" and mode == "stream" else 0.0
    return max(ideal, io), ideal, io


def _port_row_columns(cx, width: int, t: Target):
    """Columns' worth of weights on the busiest link of a port row, for a layer of cx columns at the west
    edge of a mesh ``width`` wide, exactly as wafercc/mapping/route.py lays the flows out: the west ports
    feed the columns of the west half, the east ports the rest, each port a run (numpy's array_split: the
    first runs one column longer). A run's data crosses links carrying all of its columns, except the run
    that starts at the edge column, whose first column is fed directly."""
    ports = max(1, min(t.io_ports_per_edge, t.height))
    mid = width // 2
    west = np.minimum(cx, mid)
    east = np.maximum(cx - mid, 0)
    n_w = np.maximum(np.minimum(ports, west), 1)
    n_e = np.maximum(np.minimum(ports, east), 1)
    ceil_w, floor_w = -(-west // n_w), west // n_w
    # West: run 0 starts at the edge (carries its size - 1); the others carry their size, and run 1 is the
    # longer kind only when at least two runs are.
    busiest_w = np.where(n_w == 1, np.maximum(west - 1, 0), np.where(west % n_w >= 2, ceil_w, floor_w))
    at_edge = cx >= width  # the last east run then holds the edge column
    ceil_e = -(-east // n_e)
    busiest_e = np.where(east == 0, 0, np.where(n_e == 1, np.where(at_edge, east - 1, east), ceil_e))
    return np.maximum(busiest_w, busiest_e)


ALIGN = 16  # memplan aligns every buffer to 16 bytes (wafercc/mapping/memplan.py)


def _aligned(b):
    return -(-b // ALIGN) * ALIGN


def sig4(x: float) -> float:
    """Four significant digits: a tiny utilization stays distinguishable from zero."""
    return float(f"{x:.4g}")


def _elementwise(shape: Shape, t: Target, budget: int, width: int, height: int) -> Tiling:
    n = max(shape.tail_elements, 1)
    pes = min(width * height, n)
    per_pe = -(-n // pes) * shape.dtype.itemsize * 2  # input and output tile
    if per_pe > budget:
        raise DoesNotFit(per_pe, budget)
    compute = shape.flops / (pes * t.flops(DType.f32))
    cx = min(width, pes)
    ry = -(-pes // cx)
    total = compute + (cx + ry) * t.hop_cycles
    bound = shape.flops / (t.pes * t.flops(DType.f32))
    cost = {"compute": round(compute, 1), "ingress": 0.0, "broadcast": 0.0, "reduce": 0.0,
            "latency": float((cx + ry) * t.hop_cycles), "tail": 0.0, "total": round(total, 1), "bound": "compute",
            "roofline": round(bound, 1), "roofline_by": "compute",
            "utilization": sig4(shape.flops / (total * t.pes * t.flops(DType.f32))) if total else 0.0}
    return Tiling(kt=1, mt=-(-n // pes), cx=cx, ry=ry, rn=1, nc=1, passes=1,
                  memory=(("activation", per_pe // 2), ("output", per_pe // 2)), cost=tuple(cost.items()))


def _nothing_to_do(shape: Shape, t: Target) -> Tiling:
    """A product with B, M, K or N = 0 (an empty batch, no tokens, an empty reduction, no outputs): one PE,
    no buffers, and only the tail's work (an empty reduction still writes its zeros, or beta * bias)."""
    tail = shape.flops / t.flops(DType.f32)
    cost = {"compute": 0.0, "ingress": 0.0, "broadcast": 0.0, "reduce": 0.0, "latency": 0.0, "tail": round(tail, 1),
            "total": round(tail, 1), "bound": "compute", "roofline": 0.0, "roofline_by": "compute",
            "utilization": 0.0}
    memory = (("activation", 0), ("output", 0), ("accumulator", 0), ("weight", 0), ("tail", 0))
    return Tiling(kt=1, mt=1, cx=1, ry=1, rn=1, nc=1, passes=1, memory=memory, cost=tuple(cost.items()))


def seconds(cycles: float, t: Target) -> float:
    return cycles / t.clock_hz


__all__ = ["DoesNotFit", "Shape", "Tiling", "search", "seconds"]
