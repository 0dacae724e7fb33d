"""dce: dead code elimination.

    %a = relu %x : tensor<4xf32>
    %b = neg %a : tensor<4xf32>
    %c = exp %x : tensor<4xf32>
    return %c
  becomes
    %c = exp %x : tensor<4xf32>
    return %c

An op is live when one of its results is returned or used by a live op. One backward walk over each
function decides it: in SSA order every user comes after its operands' definitions, so by the time the
walk reaches an op, all its users have been decided.

Requires: a verified module. Guarantees: a verified module with the same results and function signatures,
in which every op contributes to a returned value (weights stay declared even when no op reads them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from wafercc.ir import Func, Module, Op
from wafercc.ops import OPS

# Ops kept even when unused because running them does something (the run-time assertion ``check``).
HAS_EFFECT: frozenset[str] = frozenset(name for name, d in OPS.items() if d.effect)


def dce_func(f: Func) -> int:
    live = {id(v) for v in f.returns}
    kept: list[Op] = []
    for op in reversed(f.ops):
        if op.name in HAS_EFFECT or any(id(r) in live for r in op.results):
            kept.append(op)
            live.update(id(v) for v in op.operands)
    removed = len(f.ops) - len(kept)
    kept.reverse()
    f.ops = kept
    return removed


@dataclass(frozen=True)
class DCE:
    name = "dce"

    def run(self, module: Module, stats: Counter | None = None) -> Module:
        for f in module.funcs:
            n = dce_func(f)
            if stats is not None:
                stats["ops removed"] += n
        return module
