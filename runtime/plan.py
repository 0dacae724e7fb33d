"""Plan-faithful execution of a layer's anchor (mm, addmm, bmm, convolution, embedding) as its plan says.

The plan is read from the module's ``layer @L {...}`` declaration, nothing else:

- tiling: M over ``ry`` rows in tiles of ``mt`` (and ``passes`` sequential passes over M), K over ``cx``
  columns in tiles of ``kt``, N streamed in chunks of ``nc`` per row group (``groups``); a batched product
  split into batch groups (``bg`` of ``bt`` products, side by side over the columns) runs each group on its
  own ``cx`` columns, reduced by its own routes, with its own counters. A dimension that
  does not divide is zero-padded up to parts x tile. The plan was checked when it loaded
  (``wafercc.ir.plan``): the tiles cover every dimension exactly and every column has its reduction, so a
  plan that would drop a tile or a partial sum never reaches this module;
- the reduction: a column's partial sums reach the result through the layer's ``reduce`` routes;
  ``order="ring"`` adds them in the order the routes define (the eastward flow runs column 0 to cx-1, the
  westward one back; the two halves of each chunk go one each way), ``order="grouped"`` (the default) adds
  exactly the same partials with one BLAS product, whose fp32 summation order differs from the ring's by
  rounding only (a few ulps; see docs/runtime.md);
- streaming: weights enter chunk by chunk, in step order, once per pass, at most the plan's on-wafer weight
  buffer (per-PE weight buffer x PEs) at a time: the counters add up every byte streamed and the most held at
  once, wafer-load by wafer-load, from the plan. The product itself does not need the chunks apart: in
  grouped order it is one BLAS call over all of them (W a view of the store's tensor, not copied), in ring
  order one per chunk of a wafer-load;
- precision: with 16-bit storage, operands are rounded to bf16/f16 where the wafer stores them, products
  accumulate in fp32 (the FMAC with fp32 accumulate), and the result is rounded when stored.

Everything is vectorized over tiles and chunks; the only loops run over wafer-loads (to count them, and
in ring order to compute them) and, in ring order, the columns of a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from wafercc.ir.plan import LayerPlan

from .blas import blas_threads

PRECISIONS = ("fp32", "bf16", "fp16")
# Most bytes of a weight converted (to the accumulation dtype, or rounded to 16 bits) for one BLAS product.
HOST_GROUP_BYTES = 32 << 20


def storage_dtype(precision: str):
    if precision == "bf16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    if precision == "fp16":
        return np.dtype(np.float16)
    return None


def round_to(x: np.ndarray, precision: str) -> np.ndarray:
    """Values as the wafer stores them: fp32 arrays holding 16-bit-representable values."""
    dt = storage_dtype(precision)
    if dt is None or x.dtype != np.float32:
        return x
    return x.astype(dt).astype(np.float32)


@dataclass
class Counters:
    """What one layer's anchor streamed and held, for comparison with the plan's predictions."""

    streamed_bytes: int = 0
    peak_chunk_bytes: int = 0
    per_pe: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TilePlan:
    mt: int
    ry: int
    kt: int
    cx: int
    groups: int
    nc: int
    steps: int
    passes: int
    columns: tuple  # per mesh column of the layer: does a reduce route gather its partial sums?
    budget: int  # bytes of weights the wafer holds at once: per-PE weight buffer x PEs (of one batch group)
    bg: int = 1  # batch groups, side by side over the columns: group g holds columns [g*cx, (g+1)*cx)
    bt: int = 0  # products per batch group (0: no groups, the whole batch on the same tiles)
    # Bytes of a stored operand element when the plan stores the product's operands in 16 bits
    # (``operand_dtype``: exact upcasts of 16-bit values, so the values are the same); 0: the arrays' own.
    operand_bytes: int = 0
    # Causal skipping (``tiling.causal``): ("scores", o) computes only the score tiles (a row tile's mt
    # tokens x a chunk) with a key at or before the diagonal (key <= token + o), ("probs", o) multiplies only
    # the blocks of P (a row tile x a column's kt keys) with such a key; None: every tile.
    causal: tuple | None = None

    @classmethod
    def from_layer(cls, lp: LayerPlan) -> TilePlan:
        """The tiles of a loaded (and so checked) layer plan."""
        t = lp.tiling
        cx = t.K.parts
        bg = t.batch_groups
        return cls(
            mt=t.M.tile,
            ry=t.M.parts,
            kt=t.K.tile,
            cx=cx,
            groups=t.N.groups,
            nc=t.N.chunk,
            steps=t.N.steps,
            passes=t.passes,
            columns=_gathered(lp, cx, cx * bg),
            budget=max(lp.memory.get("weight"), 1) * cx * t.rows,
            bg=bg,
            bt=t.B.tile if t.B is not None else 0,
            operand_bytes=lp.operand_dtype.itemsize if lp.operand_dtype is not None else 0,
            causal=(t.causal.on, t.causal.offset) if t.causal is not None else None,
        )

    def row_ends(self, M: int) -> np.ndarray:
        """Each row tile's [start, end) tokens, as an (n, 2) array: consecutive tiles of mt over the
        covered tokens (pass p holds tiles p x ry ... (p + 1) x ry - 1)."""
        covered = min(M, self.passes * self.ry * self.mt)
        starts = np.arange(0, covered, self.mt)
        return np.stack([starts, np.minimum(starts + self.mt, covered)], axis=1)

    def kept(self, M: int, N: int, K: int) -> np.ndarray:
        """Per row tile, how many leading columns the causal plan computes: for scores the keys of every
        chunk (of its row group) that begins at or before the tile's last token + offset, for probs the
        reduction columns of every K tile that does; the rest of the tile's row is skipped."""
        on, off = self.causal
        last = self.row_ends(M)[:, 1] - 1 + off  # the last key a tile's tokens see
        if on == "scores":
            nt = -(-N // self.groups)
            j = np.clip(last, 0, max(N - 1, 0))
            g = j // nt
            end = np.minimum(np.minimum(g * nt + ((j - g * nt) // self.nc + 1) * self.nc, (g + 1) * nt), N)
        else:
            end = np.minimum((np.maximum(last, 0) // self.kt + 1) * self.kt, K)
        return np.where(last < 0, 0, end).astype(np.int64)


def _gathered(lp: LayerPlan, cx: int, n: int) -> tuple:
    """Of the tiling's n columns (cx per batch group), those whose partial sums the layer's reduce routes
    collect (all of them, in a checked plan)."""
    reduces = lp.routes_of("reduce")
    if cx == 1 or not reduces:
        return (True,) * n
    x0 = lp.rect.x
    covered = [False] * n
    for r in reduces:
        bx0, _, bx1, _ = r.box
        for c in range(max(bx0 - x0, 0), min(bx1 - x0 + 1, n)):
            covered[c] = True
    return tuple(covered)


class PlanMatmul:
    """Y[B, M, N] = X[B, M, K] @ W[B, K, N] on the plan's tiles; ``streamed`` says whether W comes from
    MemoryX (a weight) or from the wafer (an activation, as in attention)."""

    def __init__(self, plan: TilePlan, precision: str = "fp32", order: str = "grouped"):
        self.p, self.precision, self.order = plan, precision, order

    def __call__(
        self, x: np.ndarray, w: np.ndarray, streamed: bool, counters: Counters, skip: bool = False
    ) -> np.ndarray:
        """``skip``: the caller has checked that the causal tiles may be skipped (``runtime.planned``); the
        skipped scores are 0.0, which the mask then overwrites."""
        p = self.p
        skip = skip and p.causal is not None
        if p.bg > 1:
            return self._by_batch_group(x, w, streamed, counters, skip)
        B, M, K = x.shape
        N = w.shape[2]
        acc = np.float64 if np.float64 in (x.dtype, w.dtype) else np.float32  # f64 models keep f64
        x = round_to(np.asarray(x, dtype=acc), self.precision)
        kmask = self._k_mask(K)
        covered = min(M, p.passes * p.ry * p.mt)  # tokens the tiling covers
        nt = -(-N // p.groups)  # output columns per row group
        itemsize = p.operand_bytes or w.dtype.itemsize  # as the wafer stores and streams W
        per_step = K * p.nc * p.groups * itemsize  # one streamed step: a chunk for every row group
        span = max(1, p.budget // max(per_step, 1))  # consecutive steps the wafer can hold at once
        # A weight broadcast over the batch (expand + bmm) is one tensor, streamed once; groups are distinct.
        copies = 1 if B > 1 and w.strides[0] == 0 else B
        if streamed:  # every pass streams W, one wafer-load (``span`` steps of every row group) at a time
            for s0 in range(0, p.steps, span):
                held = sum(
                    copies * K * (b - a) * itemsize
                    for a, b in _chunk_ranges(s0, min(p.steps, s0 + span), p.nc, nt, p.groups, N)
                )
                counters.streamed_bytes += p.passes * held
                counters.peak_chunk_bytes = max(counters.peak_chunk_bytes, held)
        x_item = x.dtype.itemsize if acc is np.float32 else 4
        counters.per_pe = self._per_pe(B, N, itemsize, p.operand_bytes or x_item, x_item)
        xm = x if kmask.all() else x * kmask.astype(acc)  # K columns without a reduction contribute nothing
        kept = p.kept(M, N, K) if skip else None
        with blas_threads():  # one BLAS thread (runtime/blas.py)
            if kept is not None and self.order == "grouped":
                y = self._grouped_causal(xm[:, :covered], w, acc, streamed, kept)
            elif self.order == "grouped":
                y = self._grouped(xm[:, :covered], w, acc, streamed)
            else:
                y = self._ring(xm[:, :covered], w, acc, span, nt, kept)
        if covered < M:
            y = np.concatenate([y, np.zeros((B, M - covered, N), dtype=acc)], axis=1)
        return round_to(y, self.precision)

    def _grouped_causal(self, xm: np.ndarray, w: np.ndarray, acc, streamed: bool, kept: np.ndarray) -> np.ndarray:
        """The causal plan in grouped order: the row tiles that keep the same leading columns in one product
        each; what they skip stays 0.0. Each kept element is the same fp32 dot product as in ``_grouped``
        (scores: the same K; probs: the same leading keys, the skipped ones being +0.0 products that add
        nothing to a finite sum), with the lift decided on the whole operands as there."""
        on = self.p.causal[0]
        B, M = xm.shape[:2]
        N = w.shape[2]
        y = np.zeros((B, M, N), dtype=acc)
        lifts = _lift(xm, w, streamed)
        rows = self.p.row_ends(M)
        cut = np.flatnonzero(np.diff(kept)) + 1  # runs of row tiles keeping the same columns
        for run in np.split(np.arange(len(kept)), cut):
            if not len(run) or kept[run[0]] == 0:
                continue
            a, b, k = int(rows[run[0], 0]), int(rows[run[-1], 1]), int(kept[run[0]])
            # Contiguous copies: numpy hands a strided operand to its own loop instead of BLAS, whose fp32
            # sums it would then not match.
            if on == "scores":
                xs, ws = xm[:, a:b], w[:, :, :k]
            else:
                xs, ws = xm[:, a:b, :k], w[:, :k]
            out = self._grouped(np.ascontiguousarray(xs), np.ascontiguousarray(ws), acc, streamed, lifts)
            if on == "scores":
                y[:, a:b, :k] = out
            else:
                y[:, a:b] = out
        return y

    def _grouped(self, xm: np.ndarray, w: np.ndarray, acc, streamed: bool, lifts=None) -> np.ndarray:
        """Every chunk's partial sums in as few BLAS products as host memory allows: one, when W is already
        the accumulation dtype at full precision (no copy of it is made); otherwise in groups of columns
        whose converted copy stays under ``HOST_GROUP_BYTES``. Each output element is the same fp32 dot
        product over its K columns whichever columns share a call (BLAS's own blocking decides its
        rounding, deterministically for a given shape). Operands with subnormal numbers are lifted first
        (``_lift``)."""
        lx, lw = _lift(xm, w, streamed) if lifts is None else lifts
        if lx:
            xm = xm * np.float32(2.0**lx)
        if lw:
            w = w * np.float32(2.0**lw)
        if w.dtype == acc and storage_dtype(self.precision) is None:
            y = np.matmul(xm, w)
        else:
            B, K, N = w.shape
            step = max(1, HOST_GROUP_BYTES // max(B * K * np.dtype(acc).itemsize, 1))
            y = np.empty(xm.shape[:2] + (N,), dtype=acc)
            for a in range(0, N, step):
                wc = round_to(w[:, :, a : a + step].astype(acc, copy=False), self.precision)
                np.matmul(xm, wc, out=y[:, :, a : a + step])
        if lx or lw:
            y *= np.float32(2.0 ** -(lx + lw))
        return y

    def _ring(self, xm: np.ndarray, w: np.ndarray, acc, span: int, nt: int, kept=None) -> np.ndarray:
        """The wafer's own order: each wafer-load of chunks reduced column by column along the routes. With
        causal skipping (``kept``), a chunk (scores) or a column's K tile (probs) reaches only the row tiles
        that keep it: those from the first whose kept columns go past its start."""
        p = self.p
        y = np.zeros(xm.shape[:2] + (w.shape[2],), dtype=acc)
        first = None
        if kept is not None:
            starts = p.row_ends(xm.shape[1])[:, 0]

            def first(col: int) -> int:  # noqa: F811 -- the first token of the first row tile keeping col
                i = int(np.searchsorted(kept, col, side="right"))
                return int(starts[i]) if i < len(starts) else xm.shape[1]

        scores = kept is not None and p.causal[0] == "scores"
        for s0 in range(0, p.steps, span):
            for a, b in _chunk_ranges(s0, min(p.steps, s0 + span), p.nc, nt, p.groups, w.shape[2]):
                wc = round_to(w[:, :, a:b].astype(acc, copy=False), self.precision)
                r0 = first(a) if scores else 0
                y[:, r0:, a:b] = self._reduce(xm[:, r0:], wc, None if scores else first)
        return y

    def _by_batch_group(
        self, x: np.ndarray, w: np.ndarray, streamed: bool, counters: Counters, skip: bool = False
    ) -> np.ndarray:
        """Each batch group runs its products on its own cx columns (the columns its own reduce routes
        gather), counted on its own; the groups run at once, so the weights held at a time are the sum of
        the groups' and a PE holds the largest group's tiles. Products no group holds stay zero (a checked
        plan covers the batch)."""
        p = self.p
        y = None
        peak = 0
        for g in range(p.bg):
            b0, b1 = g * p.bt, min(x.shape[0], (g + 1) * p.bt)
            if b0 >= b1:
                continue
            own = Counters()
            group = replace(p, bg=1, bt=0, columns=p.columns[g * p.cx : (g + 1) * p.cx])
            out = PlanMatmul(group, self.precision, self.order)(x[b0:b1], w[b0:b1], streamed, own, skip)
            if y is None:
                y = np.zeros((x.shape[0],) + out.shape[1:], dtype=out.dtype)
            y[b0:b1] = out
            counters.streamed_bytes += own.streamed_bytes
            peak += own.peak_chunk_bytes
            counters.per_pe = {k: max(v, counters.per_pe.get(k, 0)) for k, v in own.per_pe.items()}
        counters.peak_chunk_bytes = max(counters.peak_chunk_bytes, peak)
        return y

    def _k_mask(self, K: int) -> np.ndarray:
        p = self.p
        col_of_k = np.arange(K) // p.kt
        return (col_of_k < p.cx) & np.array(p.columns + (False,), dtype=bool)[np.minimum(col_of_k, p.cx)]

    def _reduce(self, xm: np.ndarray, wc: np.ndarray, first=None) -> np.ndarray:
        # The ring, in route order: each column's partial (an fp32 dot product over its K tile) is added
        # in turn; the first half of the chunk flows east (column 0 first), the second half west. With
        # causal probs (``first``), a column's partial covers only the row tiles that keep its K tile.
        p = self.p
        K = xm.shape[2]
        out = np.zeros(xm.shape[:2] + (wc.shape[2],), dtype=xm.dtype)
        half = wc.shape[2] // 2 + wc.shape[2] % 2
        for sl, cols in ((slice(0, half), range(p.cx)), (slice(half, None), range(p.cx - 1, -1, -1))):
            for c in cols:
                k0, k1 = c * p.kt, min(K, (c + 1) * p.kt)
                if k0 >= k1 or not p.columns[c]:
                    continue
                r0 = first(k0) if first is not None else 0
                out[:, r0:, sl] += np.matmul(xm[:, r0:, k0:k1], wc[:, k0:k1, sl])
        return out

    def _per_pe(self, B: int, N: int, w_item: int, x_item: int, y_item: int) -> dict:
        """Bytes each PE holds for this layer, from the tile shapes the runtime used (a batch of B
        products keeps B activation and output tiles): the operands' tiles at their stored itemsize, the
        output at the result's."""
        p = self.p
        e = x_item if self.precision == "fp32" else 2
        we = w_item if self.precision == "fp32" else 2
        ye = y_item if self.precision == "fp32" else 2
        nt = -(-N // p.groups)
        return {
            "activation": B * p.mt * p.kt * e,
            "output": B * p.mt * -(-nt // p.cx) * ye,
            "accumulator": 2 * p.mt * min(p.nc, nt) * 4,
            "weight": 2 * p.kt * min(p.nc, nt) * we,
        }


# Subnormal operands: a float32 product with a subnormal input takes a microcode assist on x86 (measured:
# the tied LM head's backward, 128 x 50257 logit gradients of which 1.1M subnormal, 4.5-5 s per product
# instead of 0.12 s). Multiplying the operand by 2**LIFT makes every subnormal (>= 2**-149) normal; a power
# of two scales each exact product and partial sum exactly, so every partial sum that was a normal number
# rounds to the same bits, and scaling the result back is exact for normal results. Only partial sums or
# results below 2**-126 (the subnormal range, where the unlifted product itself lost bits) can come out
# differently: more accurately, by less than a few 2**-149. The lift is skipped when it could overflow.
LIFT = 24


def _has_subnormal(a: np.ndarray) -> bool:
    if a.dtype != np.float32 or a.size == 0:
        return False
    bits = np.bitwise_and(a.view(np.int32), 0x7FFFFFFF)
    bits -= 1  # 0 < |bits| < 2**23: subnormal; zero wraps to the top
    return bool((bits.view(np.uint32) < 0x007FFFFF).any())


def _lift(x: np.ndarray, w: np.ndarray, streamed: bool) -> tuple[int, int]:
    """Powers of two to scale x and w by before their product (0: none). W is checked when it is an
    activation; a weight from the store is used as it is."""
    lx = LIFT if _has_subnormal(x) else 0
    lw = LIFT if not streamed and _has_subnormal(w) else 0
    if not (lx or lw):
        return 0, 0
    # Every partial sum is at most K * max|x| * max|w| (scaled): keep it below float32's range.
    bound = float(np.max(np.abs(x))) * float(np.max(np.abs(w))) * x.shape[-1] * 2.0 ** (lx + lw)
    if not bound < 2.0**126:  # also NaN or infinity among the operands
        return 0, 0
    return lx, lw


def _chunk_ranges(s0: int, s1: int, nc: int, nt: int, groups: int, N: int) -> list[tuple[int, int]]:
    """Output column ranges streamed in steps [s0, s1): chunk s of row group g covers g*nt + s*nc ... ."""
    out = []
    for g in range(groups):
        a = g * nt + s0 * nc
        b = min(g * nt + s1 * nc, (g + 1) * nt, N)
        if a < b:
            out.append((a, b))
    return out


def plan_embedding(plan: TilePlan, table: np.ndarray, ids: np.ndarray, precision: str, counters: Counters):
    """An embedding as its plan runs it: the table streams in chunks of its columns; the PE holding a token
    and the vocabulary slice of its id copies the row; columns outside the reduction contribute nothing."""
    V, D = table.shape
    flat = ids.reshape(-1)
    owner = flat // plan.kt
    ok = (owner < plan.cx) & np.array(plan.columns + (False,), dtype=bool)[np.minimum(owner, plan.cx)]
    ok &= np.arange(flat.size) < plan.passes * plan.ry * plan.mt
    out = np.zeros((flat.size, D), dtype=np.float32)
    nt = -(-D // plan.groups)
    per_step = V * plan.nc * plan.groups * table.dtype.itemsize
    span = max(1, plan.budget // max(per_step, 1))
    for ps in range(plan.passes):
        for s0 in range(0, plan.steps, span):
            held = 0
            for a, b in _chunk_ranges(s0, min(plan.steps, s0 + span), plan.nc, nt, plan.groups, D):
                held += V * (b - a) * table.dtype.itemsize
                if ps == 0:  # every pass streams the table; the rows a token selects are the same each time
                    rows = np.asarray(table[flat[ok], a:b], dtype=np.float32)
                    out[ok, a:b] = round_to(rows, precision)
            counters.streamed_bytes += held
            counters.peak_chunk_bytes = max(counters.peak_chunk_bytes, held)
    return out.reshape(ids.shape + (D,))
