"""cse: common subexpression elimination.

    %a = weight.get @w : tensor<4xf32>
    %b = weight.get @w : tensor<4xf32>
    %c = relu %a : tensor<4xf32>
    %d = relu %b : tensor<4xf32>
    %e = add %c, %d : tensor<4xf32>
  becomes
    %a = weight.get @w : tensor<4xf32>
    %c = relu %a : tensor<4xf32>
    %e = add %c, %c : tensor<4xf32>

Two ops are the same computation when they have the same name, the same operand values, equal attributes
(an attribute left at its default equals the default written out) and the same result types; the later one
is replaced by the earlier. One forward walk with a hash table: by the time an op is reached its operands
are already the surviving values, so chains of duplicates merge in the same walk.

Requires: a verified module. Guarantees: a verified module with the same results and function signatures;
no two pure ops compute the same thing; a merged op's location is the first one's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from wafercc.ir import Func, Module, Op, Value
from wafercc.ir.core import _attr_key
from wafercc.ops import OPS

# Ops whose every execution matters (random draws, I/O, stream control). WIR has none yet; a future
# `rand` or `stream.send` belongs here.
NEVER_CSE: frozenset[str] = frozenset()


def op_key(op: Op) -> tuple:
    d = OPS.get(op.name)
    attrs = op.attrs if d is None else {k: d.attr(op, k) for k in d.attrs}
    return (
        op.name,
        tuple(id(v) for v in op.operands),
        _attr_key(attrs),
        tuple(r.type for r in op.results),
    )


def cse_func(f: Func) -> int:
    seen: dict[tuple, Op] = {}
    replaced: dict[Value, Value] = {}
    kept: list[Op] = []
    for op in f.ops:
        op.operands = [replaced.get(v, v) for v in op.operands]
        if op.name in NEVER_CSE:
            kept.append(op)
            continue
        first = seen.setdefault(op_key(op), op)
        if first is op:
            kept.append(op)
            continue
        replaced.update(zip(op.results, first.results))
    f.returns = [replaced.get(v, v) for v in f.returns]
    removed = len(f.ops) - len(kept)
    f.ops = kept
    return removed


@dataclass(frozen=True)
class CSE:
    name = "cse"

    def run(self, module: Module, stats: Counter | None = None) -> Module:
        for f in module.funcs:
            n = cse_func(f)
            if stats is not None:
                stats["ops merged"] += n
        return module
