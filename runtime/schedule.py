"""The schedule of a WIR function, computed once before any run: the op order, what each value is
derived from, when each value dies, when each streamed weight stops being resident, and the layers.

Order: text order, except that by default every *static* op (weight.get, constants, and ops computed
only from those, e.g. the permute of a weight) is sunk to just before its first user, so a weight streams
in right when its layer needs it however the frontend ordered the text.

Layers: when a mapping pass has tagged the ops (``plan.layer``), each run of ops with one tag. Otherwise
a layer starts at each op that combines a weight-derived value with run-time data; the static ops sunk
just before it belong to it, and it runs until the next such op. Ops before the first layer form "(input)".

Accounting (sizes from the declared types): a streamed weight is resident from its weight.get until the
last use of it or of any value derived from weights alone (a permute or view of it is the same data in
another layout, so it is not counted again); every other value (inputs, activations, constants) counts as
activation bytes from its definition to its last use.
"""

from __future__ import annotations

from wafercc.ir import Func, Op, SymbolRef
from wafercc.ir.plan import LAYER_ATTR  # set by the mapping passes on every op

DYN, WEIGHT, CONST = 0, 1, 2  # what a value is derived from: run-time data / weights / constants only


def classify(f: Func, order: list[Op]) -> dict[int, int]:
    """Each value: derived from run-time data, from weights (and constants), or from constants only."""
    kind = {id(a): DYN for a in f.args}
    for op in order:
        ks = [kind[id(v)] for v in op.operands]
        k = WEIGHT if op.name == "weight.get" else DYN if DYN in ks else WEIGHT if WEIGHT in ks else CONST
        for r in op.results:
            kind[id(r)] = k
    return kind


def last_uses(f: Func, order: list[Op], streamed=()) -> dict[int, float]:
    """Index of the last op using each value; returned values live to the end (inf), except values returned
    only at the positions in ``streamed``: those are handed out during the run (``stream_points``), and live
    to their last use here."""
    last: dict[int, float] = {}
    for i, op in enumerate(order):
        for v in op.operands:
            last[id(v)] = i
    for pos, v in enumerate(f.returns):
        if pos not in streamed:
            last[id(v)] = float("inf")
    return last


def stream_points(
    f: Func, order: list[Op], streamed: dict[int, tuple[str, ...]], last: dict[int, float], kind: dict[int, int]
) -> dict[int, float]:
    """For each position of ``streamed`` (a returned value handed out as soon as it is computed), the index of
    the step after which it is handed out: the op that computes it, or later if another op still uses it, or
    if a weight named in ``streamed[pos]`` is still read (a gradient is streamed to an optimizer that updates
    that weight in place: it must wait for the weight's last read). A value also returned at another position
    waits for the end (inf); -1 is before the first op (an argument returned as is)."""
    defined = {id(a): -1 for a in f.args}
    for i, op in enumerate(order):
        for r in op.results:
            defined[id(r)] = i
    read: dict[str, float] = {}  # weight symbol -> the step of its last read
    for i, nbytes, sym in weight_releases(order, kind, last, include_returned=True):
        read[sym] = max(read.get(sym, -1), i)
    points: dict[int, float] = {}
    for pos, v in enumerate(f.returns):
        if pos not in streamed:
            continue
        at = max([defined[id(v)], last.get(id(v), -1)] + [read.get(s, -1) for s in streamed[pos]])
        points[pos] = at
    return points


def weight_releases(
    order: list[Op], kind: dict[int, int], last: dict[int, float], include_returned: bool = False
) -> list[tuple[int, int, str]]:
    """(step index, bytes, symbol) at which each streamed weight stops being resident: after the last use of
    the weight or of any value derived from it alone (its permute, view, ...: a layout of the same data, not
    counted again). Weights that are returned stay resident to the end (left out, or inf with ``include_returned``)."""
    sources: dict[int, set[int]] = {}
    release: dict[int, float] = {}
    nbytes: dict[int, int] = {}
    symbol: dict[int, str] = {}
    for i, op in enumerate(order):
        if op.name == "weight.get":
            r = op.results[0]
            sources[id(r)], release[id(r)], nbytes[id(r)] = {id(r)}, i, r.type.nbytes
            symbol[id(r)] = op.attrs["symbol"].name
        elif kind[id(op.results[0])] == WEIGHT:
            src = set().union(*(sources.get(id(v), set()) for v in op.operands))
            for r in op.results:
                sources[id(r)] = src
        else:
            continue
        for r in op.results:
            for s in sources[id(r)]:
                release[s] = max(release[s], last.get(id(r), i))
    return [
        (i if i == float("inf") else int(i), nbytes[s], symbol[s])
        for s, i in release.items()
        if include_returned or i != float("inf")
    ]


def static_ops(f: Func) -> set[int]:
    """Ops computed without run-time data: weight.get, constants, and ops whose operands all come from those."""
    static: set[int] = set()
    for op in f.ops:
        if all(v.owner is not None and id(v.owner) in static for v in op.operands):
            static.add(id(op))
    return static


def sink_static(f: Func) -> list[Op]:
    """Text order, with every static op moved to just before its first user (dependencies first)."""
    static = static_ops(f)
    order: list[Op] = []
    emitted: set[int] = set()

    def emit(op: Op) -> None:
        stack = [(op, False)]
        while stack:  # iterative post-order: deep static chains must not hit the recursion limit
            o, ready = stack.pop()
            if id(o) in emitted:
                continue
            if ready:
                emitted.add(id(o))
                order.append(o)
                continue
            stack.append((o, True))
            for v in reversed(o.operands):
                if v.owner is not None and id(v.owner) in static and id(v.owner) not in emitted:
                    stack.append((v.owner, False))

    for op in f.ops:
        if id(op) not in static:
            emit(op)
    for op in f.ops:  # static ops nothing dynamic uses (returned or dead) run at the end
        emit(op)
    return order


def planned_layers(order: list[Op]) -> tuple[list[int], list[str]] | None:
    """Layers as a mapping pass tagged them (``plan.layer = @L3_fc1`` on each op), or None if untagged.
    Each run of consecutive ops with one tag is a layer; an untagged op joins the layer it is in.
    Returns each op's layer index and the layer names."""
    tags = [op.attrs.get(LAYER_ATTR) for op in order]
    if all(t is None for t in tags):
        return None
    names: list[str] = []
    index = []
    for tag in tags:
        if tag is None:
            name = names[-1] if names else "(input)"
        else:
            name = tag.name if isinstance(tag, SymbolRef) else str(tag)
        if not names or name != names[-1]:
            names.append(name)
        index.append(len(names) - 1)
    return index, names


def inferred_layers(order: list[Op], kind: dict[int, int], decl: dict[str, int]) -> tuple[list[int], list[str]]:
    """Layers of an unmapped module: each op's layer index and the layer names. A layer is named by the
    first-declared weight its first op consumes (``fc1.weight`` rather than ``fc1.bias`` for an addmm)."""

    def first(syms: list[str]) -> str:
        return min(syms, key=lambda n: decl.get(n, 0))

    symbol_of: dict[int, str] = {}  # weight-derived value -> the weight it is named after
    starts: list[tuple[int, str]] = []
    for i, op in enumerate(order):
        k = kind[id(op.results[0])]
        if op.name == "weight.get":
            syms = [op.attrs["symbol"].name]
        else:
            syms = [symbol_of[id(v)] for v in op.operands if id(v) in symbol_of]
        if k == WEIGHT:
            for r in op.results:
                symbol_of[id(r)] = first(syms)
        elif k == DYN and syms:
            j = i  # the static ops just before a layer's first op are its weight loads
            while j > 0 and kind[id(order[j - 1].results[0])] != DYN:
                j -= 1
            starts.append((j, first(syms)))
    if not starts or starts[0][0] > 0:
        starts.insert(0, (0, "(input)"))
    bounds = [b for b, _ in starts[1:]] + [len(order)]
    index = [layer for layer, end in enumerate(bounds) for _ in range(end - (starts[layer][0]))]
    return index, [name for _, name in starts]
