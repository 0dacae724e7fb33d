"""The interpreter's plan mode: each layer's anchor runs on its plan's tiles (``plan.py``), and each
layer's streamed bytes and per-PE buffers are counted, to be compared with the plan's predictions.

What a layer streams: its anchor's weight operand, chunk by chunk, once per pass over M (counted as the
chunks arrive), and every other weight its ops read (biases, norm scales) once per pass. That is the same
quantity the plan's ``stream.bytes`` predicts; a test holds them equal.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from wafercc.ir.causal import analyze, masked_positions, users
from wafercc.ir.plan import STORAGE_ATTR, stored_weight_bytes

from .errors import RuntimeExecutionError
from .kernels import KERNELS
from .kernels.base import finish
from .kernels.conv import conv_gemm, conv_transposed_gemm
from .plan import Counters, PlanMatmul, TilePlan, plan_embedding, round_to
from .schedule import LAYER_ATTR, WEIGHT, classify

# The module storage (``wafercc.ir.plan.STORAGE_ATTR``) each runtime precision stores tensors in.
_STORAGE_OF = {"bf16": "bf16", "fp16": "f16"}
# Which operand of each anchor is the streamed matrix W.
_W_OPERAND = {"mm": 1, "addmm": 2, "bmm": 1, "convolution": 1, "embedding": 0}


class PlannedLayers:
    def __init__(self, interp, order: str):
        """``interp.layer_plan``: the module's plan, loaded and checked (``wafercc.ir.plan.load_plan``)."""
        self.interp = interp
        module, func = interp.module, interp.func
        storage = module.attrs.get(STORAGE_ATTR)
        if storage is not None and storage != _STORAGE_OF.get(interp.precision):
            raise RuntimeExecutionError(
                f"the plan stores tensors in {storage} (compiled with --precision {storage}), but this run's "
                f"precision is {interp.precision}: run it with --precision {storage}, or compile again"
            )
        self.causal_facts: dict[str, dict] = {}
        kind = classify(func, list(func.ops))
        syms = _symbols(func)
        by_result = {op.results[0].name: op for op in func.ops if op.results}
        self.layers: dict[str, dict] = {}
        self.counters: dict[str, Counters] = {}
        # How often each causal layer skipped its tiles, and how often a check made it compute them all.
        self.causal_runs: dict[str, dict[str, int]] = {}
        anchors = {}
        graph = None
        for lp in interp.layer_plan.layers:
            if lp.tiling is None:
                continue
            op = by_result.get(lp.anchor[1:]) if lp.anchor else None
            w_syms = set()
            if op is not None and op.name in _W_OPERAND:
                plan = TilePlan.from_layer(lp)
                if plan.causal is not None:
                    graph = graph or (users(func), {})
                    plan = self._causal_plan(lp.name, op, plan, func, graph)
                anchors[id(op)] = (lp.name, plan, kind)
                w_syms = syms.get(id(op.operands[_W_OPERAND[op.name]]), set())
            other = set()
            for o in func.ops:
                ref = o.attrs.get(LAYER_ATTR)
                if ref is None or ref.name != lp.name or o.name == "weight.get" or _static(o, kind):
                    continue
                for i, v in enumerate(o.operands):
                    if o is op and i == _W_OPERAND.get(op.name):
                        continue
                    other |= syms.get(id(v), set())
            other -= w_syms
            extra = lp.tiling.passes * stored_weight_bytes(module, sorted(other))
            self.layers[lp.name] = {"extra": extra}
        for step in interp.steps:
            hit = anchors.get(id(step.op))
            if hit is not None:
                name, plan, kind_of = hit
                step.kernel = self._kernel(step.op, name, plan, kind_of, order)

    def reset(self) -> None:
        self.counters = {name: Counters() for name in self.layers}
        self.causal_runs = {name: {"skipped": 0, "computed": 0} for name in self.causal_runs}

    def _causal_plan(self, name: str, op, plan: TilePlan, func, graph) -> TilePlan:
        """What the runtime itself checks of a causal plan before it relies on it, from the graph it runs
        (the plan was checked when it loaded, but the runtime does not take the compiler's word for it): the
        anchor's scores reach nothing but the add of a mask computed from constants, evaluated here with the
        runtime's own kernels, which masks every score the plan skips. What it finds is kept for the
        per-call checks (``_may_skip``); a plan it cannot confirm runs every tile."""
        self.causal_runs[name] = {"skipped": 0, "computed": 0}
        use = analyze(func, op, *graph)
        if use is None or (use.on, use.offset) != plan.causal:
            self.causal_runs[name]["unconfirmed"] = 1
            return replace(plan, causal=None)
        if use.on == "probs":  # checked on P itself at every call
            _, M, K = op.operands[0].type.shape
            self.causal_facts[name] = {"runs": _runs(plan, M, plan.kept(M, 0, K))}
            return plan
        B, M, N = op.results[0].type.shape
        memo: dict = {}
        score = use.chain[-1].results[0] if use.chain else op.results[0]  # what reaches the masking op
        pos = masked_positions(use.add, score, memo, _evaluate)  # evaluated with the runtime's kernels
        skipped = np.zeros((M, N), dtype=bool)
        for r0, r1, k in _runs(plan, M, plan.kept(M, N, 0)):
            skipped[r0:r1, k:] = True
        if pos is None or not _broadcast3(pos, M, N)[:, skipped].all():
            self.causal_runs[name]["unconfirmed"] = 1
            return replace(plan, causal=None)
        if use.add.name == "where":  # the fill replaces the score, whatever it holds
            self.causal_facts[name] = {"always": True}
            return plan
        # An added mask: scores s reach it as s x scale (the chain's scalar products and quotients).
        scale = 1.0
        for c in use.chain:
            if c.name in ("mul", "div"):
                k = float(np.asarray(_evaluate(c.operands[1], memo)).reshape(-1)[0])
                scale *= abs(k) if c.name == "mul" else 1.0 / abs(k) if k else float("inf")
        m2 = _broadcast3(np.asarray(_evaluate(use.mask, memo), dtype=np.float64), M, N)
        finite = np.isfinite(m2) & skipped[None]
        # A finite mask value m overwrites a score s exactly when |s| < ulp(m) / 2 (round to nearest): the
        # gap below |m|, toward zero (the smaller one, and the one a score of the other sign meets).
        least = float(np.abs(m2[finite]).min()) if finite.any() else float("inf")
        gap = float(np.float32(least) - np.nextafter(np.float32(least), np.float32(0))) if np.isfinite(least) else 0
        self.causal_facts[name] = {"scale": scale, "limit": gap / 2 if np.isfinite(least) else float("inf")}
        return plan

    def report(self, stats) -> None:
        for ls in stats.layers:
            info = self.layers.get(ls.name)
            if info is None:
                continue
            c = self.counters[ls.name]
            ls.weight_bytes = c.streamed_bytes + info["extra"]
            ls.per_pe = dict(c.per_pe) or None
            ls.peak_chunk_bytes = c.peak_chunk_bytes

    def _kernel(self, op, name: str, plan: TilePlan, kind: dict, order: str):
        precision = self.interp.precision
        mm = PlanMatmul(plan, precision, order)
        w_index = _W_OPERAND[op.name]
        streamed = kind.get(id(op.operands[w_index])) == WEIGHT

        def counters() -> Counters:
            return self.counters[name]

        if op.name == "mm":
            return lambda op, a, b: finish(op, mm(a[None], b[None], streamed, counters())[0])
        if op.name == "bmm" and plan.causal is not None:
            facts = self.causal_facts[name]

            def causal_bmm(op, a, b):
                skip = _may_skip(plan, facts, a, b)
                self.causal_runs[name]["skipped" if skip else "computed"] += 1
                return finish(op, mm(a, b, streamed, counters(), skip))

            return causal_bmm
        if op.name == "bmm":
            return lambda op, a, b: finish(op, mm(a, b, streamed, counters()))
        if op.name == "addmm":

            def addmm(op, bias, a, b):
                y = mm(a[None], b[None], streamed, counters())[0]
                beta, alpha = op.attrs.get("beta", 1), op.attrs.get("alpha", 1)
                return finish(
                    op, round_to(np.float32(beta) * bias.astype(np.float32) + np.float32(alpha) * y, precision)
                )

            return addmm
        if op.name == "embedding":
            return lambda op, table, ids: finish(op, plan_embedding(plan, table, ids, precision, counters()))

        def convolution(op, x, w, bias=None):
            nsp = x.ndim - 2
            stride, pad, dil, opad = (
                _spatial(op.attrs.get(k, [d]), nsp)
                for k, d in (("stride", 1), ("padding", 0), ("dilation", 1), ("output_padding", 0))
            )
            xf, wf, groups = x.astype(np.float32), w.astype(np.float32), op.attrs.get("groups", 1)
            if op.attrs.get("transposed", False):
                cols, wm, fold = conv_transposed_gemm(xf, wf, stride, pad, dil, opad, groups)
            else:
                cols, wm, fold = conv_gemm(xf, wf, stride, pad, dil, groups)
            y = fold(mm(cols, wm, streamed, counters()))
            if bias is not None:
                y = round_to(y + bias.astype(np.float32).reshape((1, -1) + (1,) * nsp), precision)
            return finish(op, y)

        return convolution


def _may_skip(plan: TilePlan, facts: dict, a: np.ndarray, b: np.ndarray) -> bool:
    """Whether this call's skipped tiles give bit for bit what computing them would.

    Scores: a skipped score is 0.0. A where selecting a masked fill there gives the fill whatever the score
    (always skipped). An added mask makes it the mask's value m, as it would the computed
    score s (times the chain's scale) when s is finite (m = -inf) or |s| < ulp(m) / 2 (finite m): checked
    from the operands' bound |s| <= K max|q| max|k| (twice over, for rounding). Non-finite Q or K (an inf
    score would give NaN with -inf, not -inf): every tile is computed.

    Probs: the skipped blocks of P must be exactly +0.0 (a softmax of a finite score masked with -inf or
    finfo.min is), and V finite: 0 x v adds +-0.0 to a sum, which changes no finite sum (a sum that is
    exactly -0.0 is the one exception: it would become +0.0, and a row of P holding its diagonal's positive
    weight has no such sum unless V's entries are all zeros); 0 x inf or 0 x NaN would be NaN, which the
    unskipped product spreads over the row: with non-finite V every block is multiplied."""
    on, _ = plan.causal
    if on == "scores":
        if facts.get("always") or a.size == 0 or b.size == 0:
            return True
        with np.errstate(all="ignore"):
            qa, kb = float(np.abs(a).max()), float(np.abs(b).max())
            bound = 2.0 * a.shape[-1] * qa * kb * facts["scale"]
        return bool(np.isfinite(bound) and bound < min(facts["limit"], 1e38))
    for r0, r1, k in facts["runs"]:  # every batch group skips the same rows' keys (groups split B only)
        block = a[:, r0:r1, k:]
        if block.size and (block.any() or np.signbit(block).any()):
            return False
    return bool(np.isfinite(b).all())


def _broadcast3(a: np.ndarray, M: int, N: int) -> np.ndarray:
    """a broadcast to [..., M, N] and seen as [G, M, N]."""
    lead = a.shape[:-2] if a.ndim >= 2 else ()
    return np.broadcast_to(a, lead + (M, N)).reshape((-1, M, N))


def _runs(plan: TilePlan, M: int, kept: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of consecutive row tiles keeping the same leading columns: (first token, end token, kept)."""
    rows = plan.row_ends(M)
    cut = np.flatnonzero(np.diff(kept)) + 1
    runs = [r for r in np.split(np.arange(len(kept)), cut) if len(r)]
    return [(int(rows[r[0], 0]), int(rows[r[-1], 1]), int(kept[r[0]])) for r in runs]


def _evaluate(v, memo: dict):
    """A value computed from constants alone, with the runtime's own kernels."""
    if id(v) in memo:
        return memo[id(v)]
    op = v.owner
    args = [_evaluate(x, memo) for x in op.operands]
    with np.errstate(all="ignore"):
        out = KERNELS[op.name](op, *args)
    out = out[op.results.index(v)] if isinstance(out, tuple) else out
    memo[id(v)] = out
    return out


def _spatial(v, n: int) -> list[int]:
    return list(v) * n if len(v) == 1 else list(v)


def _static(op, kind: dict) -> bool:
    return (
        all(kind.get(id(r)) != 0 for r in op.results)
        and op.name != "weight.get"
        and all(kind.get(id(v)) != 0 for v in op.operands)
    )


def _symbols(func) -> dict[int, set]:
    """The weight symbols each value is computed from (for values computed from weights and constants alone,
    as the partition pass counts them)."""
    out: dict[int, set] = {}
    for op in func.ops:
        if op.name == "weight.get":
            srcs = {op.attrs["symbol"].name}
        elif all(id(v) in out for v in op.operands):  # constants (no operands) carry no symbol
            srcs = set().union(*(out[id(v)] for v in op.operands))
        else:
            continue
        for r in op.results:
            out[id(r)] = srcs
    return out
