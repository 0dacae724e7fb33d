"""The interpreter's plan mode: each layer's anchor runs on its plan's tiles (``plan.py``), and each
layer's streamed bytes and per-PE buffers are counted, to be compared with the plan's predictions.

What a layer streams: its anchor's weight operand, chunk by chunk, once per pass over M (counted as the
chunks arrive), and every other weight its ops read (biases, norm scales) once per pass. That is the same
quantity the plan's ``stream.bytes`` predicts; a test holds them equal.
"""

from __future__ import annotations

import numpy as np

from wafercc.ir.plan import STORAGE_ATTR, stored_weight_bytes

from .errors import RuntimeExecutionError
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
        kind = classify(func, list(func.ops))
        syms = _symbols(func)
        by_result = {op.results[0].name: op for op in func.ops if op.results}
        self.layers: dict[str, dict] = {}
        self.counters: dict[str, Counters] = {}
        anchors = {}
        for lp in interp.layer_plan.layers:
            if lp.tiling is None:
                continue
            op = by_result.get(lp.anchor[1:]) if lp.anchor else None
            w_syms = set()
            if op is not None and op.name in _W_OPERAND:
                anchors[id(op)] = (lp.name, TilePlan.from_layer(lp), kind)
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
