"""The tiling search and its cost model, in cycles.

A layer is a (batched) matrix product Y[M, N] = X[M, K] W[K, N] plus an elementwise tail. In weight
streaming it runs the way the hardware is built to run it [hardware.md §5.1]:

    M (tokens)      split over mesh rows:     each row holds mt = M / ry tokens
    K (reduction)   split over mesh columns:  each column holds kt = K / cx of the activations (resident)
    B (batch)       a batched product (attention's heads) runs its B products one after another on the
                    same tiles, or splits them into bg groups of bt placed side by side over the columns,
                    each group a cx-column rectangle of its own, tiled as above, reducing within its columns
    N (outputs)     streamed in time, nc columns of W per step, optionally split over rn row groups
    weights         enter at the I/O ports, run along a port row, and are broadcast down each column
    partial sums    reduced along each row in a ring (reduce-scatter), leaving Y in the layout the next
                    layer reads: M on rows, Y's N (the next K) on columns

Per PE a layer holds: its activation tile (mt*kt), the output tile (mt*N/(rn*cx)), double-buffered fp32
accumulators for one chunk (2*mt*nc) and a double-buffered weight chunk (2*kt*nc); activation, output and
resident weights once for each of its group's bt products. The search evaluates every candidate (kt, mt,
rn, nc, passes, bt) at once with numpy and keeps the cheapest that fits.

Every term is in cycles; every factor is a field of ``Target`` (the hardware facts, ``wafercc.target``).
The search runs in three steps over one grid of candidates: what each candidate holds per PE (``_memory``),
what it costs (``_cycles``), and which one wins (``_select``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from wafercc.ir import DType
from wafercc.ir.plan import ACC_BYTES, ALIGN
from wafercc.target import Target

from .ports import busiest_port_run


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
    # The product's operands stored in 16 bits, accumulated in fp32 (``wafercc.ir.plan.operand_storage_dtype``);
    # None: in ``dtype``. The activation and weight tiles, their transfers and the FMAC rate follow it; the
    # output, the accumulators and the tail stay in ``dtype``.
    operand_dtype: DType | None = None
    # The module's 16-bit storage (compile --train --precision bf16): the output and tail are stored in it too.
    stored: DType | None = None
    # Causal skipping the graph justifies (``wafercc.ir.causal``): ("scores", o) for a Q.K^T product whose
    # scores a causal mask with diagonal offset o masks, ("probs", o) for P.V with P zero above it; None: none.
    causal: tuple[str, int] | None = None

    @property
    def out_itemsize(self) -> int:
        """Bytes of a stored output (and tail) element."""
        return (self.stored or self.dtype).itemsize

    @property
    def storage(self) -> DType:
        """The dtype the product's operands are stored and moved in, and which sets its FMAC rate."""
        return self.operand_dtype or self.stored or self.dtype


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
    bg: int = 1  # batch groups side by side over the columns (each cx columns wide)
    bt: int = 1  # products of the batch in each group (bg x bt covers B)

    @property
    def columns(self) -> int:
        return self.cx * self.bg

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

# chunk widths tried; the last stands for "all of the row group's outputs at once" (nc = nt)
_NC = np.array([1, 2, 4, 8, 16, 32, 64, 128, 1 << 40], dtype=np.int64)


def search(
    shape: Shape,
    target: Target,
    mode: str = "stream",
    max_sram: int | None = None,
    width: int | None = None,
    height: int | None = None,
) -> Tiling:
    """The cheapest tiling of ``shape`` on a width x height rectangle; raises DoesNotFit."""
    return _search(shape, target, mode, max_sram or target.usable_sram, width or target.width, height or target.height)


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
    return _search_grid(shape, t, mode, budget, width, height, _pass_counts(shape, mode, height))


def _pass_counts(shape: Shape, mode: str, height: int) -> tuple[int, ...]:
    """Passes over M worth trying: powers of two; and for causal scores, whose pass p streams only the keys
    its tokens see (the later passes more), also the counts that fill the rows with 1 to 8 tokens each: more
    passes of fewer tokens per row cut the busiest row's share of the triangle (about (P + 1) / 2P of the
    whole), which a power of two leaving half the rows idle would not."""
    counts = {1, 2, 4, 8, 16, 32, 64, 128, 256}
    if shape.causal is not None and shape.causal[0] == "scores" and mode == "stream":
        counts |= {-(-shape.M // (mt * height)) for mt in range(1, 9)}
    return tuple(sorted(c for c in counts if c >= 1))


class _Grid:
    """Every candidate tiling on the mesh at once, as numpy arrays: the axes (kt, mt, rn, passes, bt) are
    crossed and the candidates off the mesh dropped (with batch groups most of them: costing them all took
    seconds per attention shape), leaving one row per candidate, crossed with the chunk widths nc as a second
    axis. ``order`` is each candidate's place in the full grid over (kt, mt, rn, nc, passes, bt): among equals
    the first wins, whatever was dropped."""

    def __init__(self, shape: Shape, width: int, height: int, pass_list: tuple[int, ...], mode: str = "stream"):
        K, M, N = shape.K, shape.M, shape.N
        pass_counts = np.array(pass_list, dtype=np.int64)
        kt = _candidates(K, width)[:, None, None, None, None]
        mt = _candidates(M, height * int(pass_counts[-1]))[None, :, None, None, None]  # passes shrink tiles
        rn = _row_groups(M, N, height)[None, None, :, None, None]
        passes = pass_counts[None, None, None, :, None]
        bt = _batch_tiles(shape, width, mode)[None, None, None, None, :]
        bg = -(-shape.B // bt)
        cx = -(-K // kt)
        columns = cx * bg
        ry = -(-M // (mt * passes))  # rows that hold one pass's tokens
        rows = ry * rn
        # Every pass must hold tokens (the plan checker's plan-cover rule): with few tokens, extra passes would
        # only divide the tail's share per PE on paper.
        on_mesh = (columns <= width) & (rows <= height) & ((passes - 1) * ry * mt < M)
        axes = np.broadcast_shapes(kt.shape, mt.shape, rn.shape, passes.shape, bt.shape)
        ix = np.unravel_index(np.flatnonzero(np.broadcast_to(on_mesh, axes)), axes)
        for name, a in zip(_AXES, (kt, mt, rn, passes, bt, bg, cx, columns, ry, rows)):
            setattr(self, name, np.broadcast_to(_take(a, ix), ix[0].shape)[:, None])
        self.nt = -(-N // self.rn)  # output columns per row group
        self.nc = np.minimum(_NC[None, :], self.nt)
        self.steps = -(-self.nt // self.nc)
        self.on_mesh = np.True_
        n_nc, n_p, n_b = len(_NC), axes[3], axes[4]
        row = (ix[0] * axes[1] + ix[1]) * axes[2] + ix[2]
        self.order = (row[:, None] * n_nc + np.arange(n_nc)[None, :]) * (n_p * n_b) + (ix[3] * n_b + ix[4])[:, None]
        self.ok = np.broadcast_to(self.rn <= N, self.order.shape).copy()

    def fitting(self, fits: np.ndarray, memory: dict) -> dict:
        """Keep only the candidates where ``fits`` (flat arrays from here on); returns ``memory`` likewise."""
        ix = np.unravel_index(np.flatnonzero(fits), fits.shape)
        for name in (*_AXES, "nt", "nc", "steps", "order", "ok"):
            setattr(self, name, _take(getattr(self, name), ix))
        return {k: _take(v, ix) for k, v in memory.items()}


_AXES = ("kt", "mt", "rn", "passes", "bt", "bg", "cx", "columns", "ry", "rows")


def _take(a, ix: tuple) -> np.ndarray:
    """The entries of a (broadcastable against the grid) at the grid indices ix."""
    a = np.asarray(a)
    return a[tuple(i if n > 1 else 0 for i, n in zip(ix, a.shape))] if a.ndim else a


def _batch_tiles(shape: Shape, width: int, mode: str = "stream") -> np.ndarray:
    """Products per batch group worth trying: all B in one group (the products run one after another on
    the same tiles), and, for a product whose second operand is distinct per batch element (attention's
    heads; a bmm with a weight per element), every group size of distinct group count, so the heads can
    spread over the columns: the divisors of B (groups of equal size) and B over every power of two of
    groups (rounded up: the last group is short). A weight shared by the batch (expand + bmm) streams once
    for all products: a group of its own would stream it again, so such a product keeps one group.

    Weight streaming only, for now: in pipeline mode the smaller per-PE footprint of groups shrinks a
    layer's floor area, the floorplan shifts, and PathFinder then fails to route the 12-block LLaMA decode
    plan (tests/mapping/test_llama_decode.py; the same fragility as its 4-block plan, docs/hardware.md)."""
    B = max(shape.B, 1)
    per_product = shape.K * shape.N * shape.storage.itemsize
    distinct = shape.kind == "attention" or (shape.kind == "matmul" and shape.weight_bytes >= B * per_product)
    if B == 1 or not distinct or mode != "stream":
        return np.array([B], dtype=np.int64)
    sizes = {d for d in range(1, math.isqrt(B) + 1) if B % d == 0}
    sizes |= {B // d for d in sizes} | {-(-B // (1 << i)) for i in range(B.bit_length())}
    return np.array(sorted(s for s in sizes if -(-B // s) <= width), dtype=np.int64)


def _row_groups(M: int, N: int, height: int) -> np.ndarray:
    """Row-group counts worth trying: 1 to 64, and for a few tokens (GEMV, decode: M rows would leave most
    of the mesh idle) every power of two up to the rows the tokens leave, exactly that many, and the fewest
    groups of each output tile size N / g (the counts that leave no group empty and the least padding), so N
    can spread over any part of the height, not only a power of two or all of it."""
    groups = {1, 2, 4, 8, 16, 32, 64}
    spare = height // max(M, 1)
    if spare > 64:
        groups |= {1 << i for i in range(7, spare.bit_length())} | {spare}
        groups |= {int(-(-N // nt)) for nt in _candidates(N, spare)}
    return np.array(sorted(g for g in groups if g <= max(N, 1)) or [1], dtype=np.int64)


def _search_grid(
    shape: Shape, t: Target, mode: str, budget: int, width: int, height: int, pass_list: tuple[int, ...]
) -> Tiling:
    if shape.kind == "elementwise":
        return _elementwise(shape, t, budget, width, height)
    g = _Grid(shape, width, height, pass_list, mode)
    memory = _memory(shape, g, mode)
    mem = sum(_aligned(b) for b in memory.values())
    g.ok &= mem <= budget
    if not g.ok.any():
        # the smallest tiling that fits the mesh at all: how far over budget the layer is
        need = int(np.where(g.on_mesh, mem, np.iinfo(np.int64).max).min())
        raise DoesNotFit(need, budget)
    memory = g.fitting(g.ok, memory)
    mem = sum(_aligned(b) for b in memory.values())
    fpc = t.fmac_rate(shape.storage)
    terms = _cycles(shape, g, t, mode, fpc, width)
    return _select(shape, g, t, mode, fpc, memory, mem, terms)


def _memory(shape: Shape, g: _Grid, mode: str) -> dict[str, np.ndarray]:
    """Bytes each PE holds, by buffer (the order memplan lays them out)."""
    e, B = shape.out_itemsize, g.bt  # a PE holds its batch group's products
    eo = shape.storage.itemsize  # the operands' tiles
    if mode == "pipeline":  # weights resident: PE (column c, row r of group g) keeps W[K_c, N_g split over ry]
        wtile = g.kt * -(-g.nt // g.ry) * eo * B
    else:
        wtile = 2 * g.kt * g.nc * eo
    return {
        "activation": g.mt * g.kt * eo * B,
        "output": g.mt * -(-g.nt // g.cx) * e * B,
        "accumulator": 2 * g.mt * g.nc * ACC_BYTES,
        "weight": wtile,
        "tail": -(-shape.tail_elements // np.maximum(g.rows * g.columns * g.passes, 1)) * e,
    }


def _cycles(shape: Shape, g: _Grid, t: Target, mode: str, fpc: float, width: int) -> dict[str, np.ndarray]:
    """Each cost term of every candidate, in cycles, and their ``total``. With batch groups every term is
    one group's (the groups run at once on their own columns): its bt products, its cx-column reduction.
    Operands move in their storage dtype's bytes; partial sums in fp32."""
    e, B = shape.storage.itemsize, g.bt
    passes = g.passes
    # Chunk steps over all passes, N columns streamed over all passes, and output columns a row group's
    # busiest row computes: every chunk of every pass, unless a causal mask lets the scores skip chunks.
    chunk_steps, streamed_n, out_n = passes * g.steps, shape.N * passes, passes * g.nt
    if shape.causal is not None and shape.causal[0] == "scores" and mode == "stream":
        chunk_steps, streamed_n, out_n = causal_scores_work(
            shape.M, shape.N, shape.causal[1], g.ry * g.mt, passes, g.nt, g.nc
        )
    if shape.kind == "gather":  # each PE copies the streamed rows its tokens select: mt rows of a chunk
        compute = B * chunk_steps * (g.mt * g.nc / fpc + t.fmac_pipeline_fill_cycles)
    else:
        compute = B * chunk_steps * (g.mt * g.kt * g.nc * 2 / fpc + t.fmac_pipeline_fill_cycles)
    weight_stream = shape.weight_bytes * (passes if mode == "stream" else 0)
    ingress = weight_stream / t.io_bytes_per_cycle if shape.kind != "attention" else 0 * compute
    # Streamed: each column's link carries its K-slice of every streamed weight column (all row groups share
    # it); attention streams its second operand from the wafer instead of MemoryX, over the same columns.
    # Resident (pipeline): a row group's weights are spread over its ry rows and circulate among them (a
    # systolic shift down the column, overlapped with the FMACs): (ry - 1) / ry of them cross a link; with
    # one row per group (GEMV, decode) every PE holds all the weights it needs and none move.
    if mode == "stream":
        col_bytes = g.kt * streamed_n * e * B
    else:
        col_bytes = g.kt * g.nt * e * B * (g.ry - 1) / g.ry
    # Each I/O port's row carries the weights of the run of columns it feeds (as route lays them out).
    port_row = (
        busiest_port_run(g.columns, t, width) * (weight_stream / g.columns) / t.link_bytes_per_cycle
        if shape.kind != "attention"
        else 0
    )
    # With rn row groups, every group needs its own copy of the activations: the first group's ry rows of
    # tiles are multicast down each column to the other rn - 1 groups. A multicast crosses each link once,
    # so a column's links carry one group's tiles, whatever the number of groups.
    replicate = passes * B * (g.rn > 1) * g.ry * g.mt * g.kt * e
    broadcast = np.maximum((col_bytes + replicate) / t.link_bytes_per_cycle, port_row)
    # Ring reduce-scatter along each row: every PE forwards (cx - 1) / cx of its partial sums.
    reduce = B * g.mt * out_n * ACC_BYTES * (g.cx - 1) / np.maximum(g.cx, 1) / t.link_bytes_per_cycle
    # The operands cross the rectangle's rows from the edge they enter at, at hop_cycles per router; the
    # partial sums climb a reduction tree rooted mid-row (half the columns away), whose relay stages each
    # pass through a core.
    fabric = np.maximum(broadcast, reduce)
    latency = (g.rows + g.cx // 2) * t.hop_cycles + t.reduce_stages(g.cx) * t.relay_cycles
    # Compute and fabric overlap chunk by chunk (one chunk's transfers while the next computes): a two-stage
    # pipeline over the chunks, so one chunk of the smaller of the two stays exposed (the first chunk's
    # operands before any FMAC, the last chunk's partial sums after the last one).
    latency = latency + np.minimum(compute, fabric) / np.maximum(B * chunk_steps, 1)
    anchor_flops = 2 * shape.B * shape.M * shape.K * shape.N
    tail_flops = shape.flops if shape.kind == "gather" else max(shape.flops - anchor_flops, 0)
    tail = tail_flops / (g.rows * g.columns * t.flops(DType.f32))
    overlapped = np.maximum(np.maximum(compute, fabric), ingress if t.overlap_ingress else 0)
    total = overlapped + latency + tail + (0 if t.overlap_ingress else ingress)
    return {
        "compute": compute,
        "ingress": ingress,
        "broadcast": broadcast,
        "reduce": reduce,
        "latency": latency,
        "tail": tail,
        "total": np.where(g.ok, total, np.inf),
    }


def _select(shape: Shape, g: _Grid, t: Target, mode: str, fpc: float, memory: dict, mem, terms: dict) -> Tiling:
    """Among tilings within 0.5% of the fastest, the one that streams the weights the fewest times (MemoryX
    traffic is a cost the cycle count does not see: power, the other systems of a cluster); then the fastest;
    among equals (a fabric bound can hide compute) the least compute, then the least fabric traffic, then
    the least memory."""
    total = terms["total"]
    near = total <= total.min() * 1.005
    pb = np.broadcast_to(g.passes, total.shape)
    idx = np.flatnonzero(near & (pb == pb[near].min()))
    keys = [
        np.broadcast_to(a, total.shape).ravel()[idx]
        for a in (g.order, mem, terms["broadcast"] + terms["reduce"], terms["compute"], total)
    ]
    i = np.unravel_index(int(idx[np.lexsort(keys)[0]]), total.shape)

    def pick(a) -> float:
        return float(np.broadcast_to(a, total.shape)[i])

    bound, ideal, io = _bound(shape, t, fpc, mode)
    tot = pick(total)
    chosen = {k: pick(terms[k]) for k in ("compute", "ingress", "broadcast", "reduce", "latency", "tail")}
    limiting = max(("compute", "ingress", "broadcast", "reduce"), key=lambda k: chosen[k])
    cost = {
        **{k: round(v, 1) for k, v in chosen.items()},
        "total": round(tot, 1),
        "bound": limiting,
        "roofline": round(bound, 1),
        "roofline_by": "compute" if ideal >= io else "ingress",
        "utilization": sig4(shape.flops / (tot * t.pes * t.fmac_peak(shape.storage))) if tot > 0 else 0.0,
    }
    return Tiling(
        kt=int(pick(g.kt)),
        mt=int(pick(g.mt)),
        cx=int(pick(g.cx)),
        ry=int(pick(g.ry)),
        rn=int(pick(g.rn)),
        nc=int(pick(g.nc)),
        passes=int(pick(g.passes)),
        memory=tuple((k, int(pick(v))) for k, v in memory.items()),
        cost=tuple(cost.items()),
        bg=int(pick(g.bg)),
        bt=int(pick(g.bt)),
    )


def causal_scores_work(M: int, N: int, offset: int, per_pass, passes, nt, nc):
    """What a causal scores product (Q.K^T, key j masked for query i when j > i + offset) computes when a
    chunk of keys is skipped by every row whose tokens all lie before it: (chunk steps, key columns
    streamed, output columns of row group 0's busiest row), each summed over the passes. Pass p holds tokens
    [p x per_pass, (p + 1) x per_pass) and its last row needs the keys up to its last token + offset: the
    chunks of each row group (nt keys, chunks of nc) that begin at or before it, the chunk straddling the
    diagonal whole. Row group 0 (keys from 0) is the busiest. Works on numpy arrays of candidates."""
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.int64) for a in (per_pass, passes, nt, nc)))
    shape = arrays[0].shape
    R, P, T, C = (a.ravel() for a in arrays)
    steps, streamed, out = (np.zeros(R.size, dtype=np.int64) for _ in range(3))
    for count in np.unique(P):  # each pass count's candidates on their own: sum(P) steps, not max(P) x all
        ix = np.flatnonzero(P == count)
        r, t, c = R[ix], T[ix], C[ix]
        for p in range(int(count)):
            last = np.minimum((p + 1) * r, M) - 1  # the pass's last token
            keys = np.clip(last + offset + 1, 0, N)  # keys its last row needs
            mine = -(-np.minimum(keys, t) // c)  # row group 0's chunks
            whole = keys // t * t  # keys of whole row groups
            rest = np.minimum(-(-(keys - whole) // c) * c, t)  # the last group's chunks, rounded up
            steps[ix] += mine
            streamed[ix] += np.minimum(whole + rest, N)
            out[ix] += np.minimum(mine * c, t)
    return steps.reshape(shape), streamed.reshape(shape), out.reshape(shape)


def causal_fraction(M: int, N: int, offset: int) -> float:
    """Of the M x N scores, the share on or below the diagonal shifted by ``offset`` (key j <= query i +
    offset): what a causal product must compute at least."""
    if M == 0 or N == 0:
        return 1.0
    kept = np.clip(np.arange(M, dtype=np.int64) + offset + 1, 0, N).sum()
    return float(kept) / (M * N)


def _bound(shape: Shape, t: Target, fpc: float, mode: str) -> tuple[float, float, float]:
    """The roofline: max(all FLOPs at the whole mesh's peak, the weights at the I/O bandwidth); in pipeline
    mode no weight streams, so compute alone. A causal product's FLOPs count only its products on or below
    the diagonal."""
    flops = shape.flops
    if shape.causal is not None and mode == "stream":
        on, off = shape.causal
        anchor = 2 * shape.B * shape.M * shape.K * shape.N
        flops -= anchor * (1 - causal_fraction(shape.M, shape.K if on == "probs" else shape.N, off))
    ideal = flops / (t.pes * fpc)
    io = shape.weight_bytes / t.io_bytes_per_cycle if shape.kind != "attention" and mode == "stream" else 0.0
    return max(ideal, io), ideal, io


def _aligned(b):
    """Bytes as memplan lays a buffer out: rounded up to its alignment."""
    return -(-b // ALIGN) * ALIGN


def sig4(x: float) -> float:
    """Four significant digits: a tiny utilization stays distinguishable from zero."""
    return float(f"{x:.4g}")


def _elementwise(shape: Shape, t: Target, budget: int, width: int, height: int) -> Tiling:
    n = max(shape.tail_elements, 1)
    pes = min(width * height, n)
    per_pe = -(-n // pes) * shape.out_itemsize * 2  # input and output tile
    if per_pe > budget:
        raise DoesNotFit(per_pe, budget)
    compute = shape.flops / (pes * t.flops(DType.f32))
    cx = min(width, pes)
    ry = -(-pes // cx)
    total = compute + (cx + ry) * t.hop_cycles
    bound = shape.flops / (t.pes * t.flops(DType.f32))
    cost = {
        "compute": round(compute, 1),
        "ingress": 0.0,
        "broadcast": 0.0,
        "reduce": 0.0,
        "latency": float((cx + ry) * t.hop_cycles),
        "tail": 0.0,
        "total": round(total, 1),
        "bound": "compute",
        "roofline": round(bound, 1),
        "roofline_by": "compute",
        "utilization": sig4(shape.flops / (total * t.pes * t.flops(DType.f32))) if total else 0.0,
    }
    return Tiling(
        kt=1,
        mt=-(-n // pes),
        cx=cx,
        ry=ry,
        rn=1,
        nc=1,
        passes=1,
        memory=(("activation", per_pe // 2), ("output", per_pe // 2)),
        cost=tuple(cost.items()),
    )


def _nothing_to_do(shape: Shape, t: Target) -> Tiling:
    """A product with B, M, K or N = 0 (an empty batch, no tokens, an empty reduction, no outputs): one PE
    whose single tile covers every dim, no buffers, and only the tail's work (an empty reduction still writes
    its zeros, or beta * bias)."""
    tail = shape.flops / t.flops(DType.f32)
    cost = {
        "compute": 0.0,
        "ingress": 0.0,
        "broadcast": 0.0,
        "reduce": 0.0,
        "latency": 0.0,
        "tail": round(tail, 1),
        "total": round(tail, 1),
        "bound": "compute",
        "roofline": 0.0,
        "roofline_by": "compute",
        "utilization": 0.0,
    }
    memory = (("activation", 0), ("output", 0), ("accumulator", 0), ("weight", 0), ("tail", 0))
    return Tiling(
        kt=max(shape.K, 1),
        mt=max(shape.M, 1),
        cx=1,
        ry=1,
        rn=1,
        nc=max(shape.N, 1),
        passes=1,
        memory=memory,
        cost=tuple(cost.items()),
    )


__all__ = ["DoesNotFit", "Shape", "Tiling", "causal_fraction", "causal_scores_work", "search"]
