"""The WIR data model: modules, weights, functions, ops, SSA values, attributes, locations.

The core knows no op kinds. An op is a name, operand values, result values, attributes and a
location; what an op *means* (its operands, result-type rule, FLOPs) lives in ``wafercc.ops``.

Attributes are plain Python values: int, float, bool, str, None, DType, SymbolRef, TensorType,
and lists / dicts of those. Dict attributes keep their insertion order; the printer sorts the top-level
attribute dict of an op by key so that text never depends on construction order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Union

from .types import DType, TensorType


@dataclass(frozen=True, slots=True)
class SymbolRef:
    """A reference to a module-level symbol, printed ``@name``."""

    name: str

    def __str__(self) -> str:
        return f"@{self.name}"


Attr = Union[int, float, bool, str, None, DType, SymbolRef, TensorType, list, dict]


@dataclass(frozen=True, slots=True)
class Loc:
    """A source location in the user's model, printed ``loc("path.py":14)``."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class Value:
    """An SSA value: a function argument or an op result. Compared by identity."""

    __slots__ = ("name", "type", "owner")

    def __init__(self, name: str, type: TensorType, owner: "Op | None" = None):
        self.name = name
        self.type = type
        self.owner = owner  # the defining op, or None for a function argument

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Op:
    """One operation. ``results`` are created by the op and point back at it."""

    __slots__ = ("name", "operands", "results", "attrs", "loc", "pos")

    def __init__(
        self,
        name: str,
        operands: list[Value],
        result_types: list[TensorType],
        attrs: dict[str, Attr] | None = None,
        loc: Loc | None = None,
        result_names: list[str] | None = None,
        pos: tuple[int, int] | None = None,
    ):
        self.name = name
        self.operands = list(operands)
        names = result_names or [""] * len(result_types)
        self.results = [Value(n, t, self) for n, t in zip(names, result_types)]
        self.attrs: dict[str, Attr] = dict(attrs or {})
        self.loc = loc
        self.pos = pos  # (line, column) of the op in the WIR text it was parsed from; not part of the op

    @property
    def result(self) -> Value:
        """The single result of a one-result op."""
        assert len(self.results) == 1, f"{self.name} has {len(self.results)} results"
        return self.results[0]

    def where(self) -> str:
        """How an error names this op: ``'relu' (%3) at model.py:15``."""
        res = ", ".join(f"%{r.name}" for r in self.results)
        head = f"'{self.name}'" + (f" ({res})" if res else "")
        return head + (f" at {self.loc}" if self.loc else "")

    def __repr__(self) -> str:
        return f"<Op {self.where()}>"


@dataclass(eq=False)
class Func:
    name: str
    args: list[Value]
    ops: list[Op] = field(default_factory=list)
    returns: list[Value] = field(default_factory=list)
    result_types: list[TensorType] | None = None  # as declared in text; None means "from returns"
    attrs: dict[str, Attr] = field(default_factory=dict)

    def declared_result_types(self) -> list[TensorType]:
        if self.result_types is not None:
            return list(self.result_types)
        return [v.type for v in self.returns]

    def values(self) -> Iterator[Value]:
        yield from self.args
        for op in self.ops:
            yield from op.results


@dataclass(frozen=True, slots=True)
class Weight:
    """A module-level tensor symbol: its data lives in the MemoryX store, never in the text."""

    name: str
    type: TensorType
    attrs: dict = field(default_factory=dict, hash=False)


@dataclass(eq=False)
class Layer:
    """A module-level plan declaration, printed ``layer @L3_fc1 {...}``: what the mapping passes decided
    for one layer (its rectangle, tiling, routes, memory map, cost). Ops name it in ``plan.layer``."""

    name: str
    attrs: dict[str, Attr] = field(default_factory=dict)


@dataclass(eq=False)
class Module:
    name: str
    weights: dict[str, Weight] = field(default_factory=dict)
    funcs: list[Func] = field(default_factory=list)
    attrs: dict[str, Attr] = field(default_factory=dict)
    layers: dict[str, Layer] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)  # the file it was parsed from, for diagnostics

    def func(self, name: str = "forward") -> Func:
        for f in self.funcs:
            if f.name == name:
                return f
        raise KeyError(name)

    def add_weight(self, name: str, type: TensorType, **attrs: Attr) -> Weight:
        w = Weight(name, type, dict(attrs))
        self.weights[name] = w
        return w

    def add_layer(self, name: str, **attrs: Attr) -> Layer:
        layer = Layer(name, dict(attrs))
        self.layers[name] = layer
        return layer

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Module):
            return NotImplemented
        return structural_key(self) == structural_key(other)

    __hash__ = None  # mutable


def structural_key(m: Module) -> tuple:
    """Everything that the text of a module says, as a comparable tuple."""

    def func_key(f: Func) -> tuple:
        return (
            f.name,
            tuple((a.name, a.type) for a in f.args),
            tuple(
                (
                    op.name,
                    tuple(v.name for v in op.operands),
                    tuple((r.name, r.type) for r in op.results),
                    attr_key(op.attrs),
                    op.loc,
                )
                for op in f.ops
            ),
            tuple(v.name for v in f.returns),
            tuple(f.declared_result_types()),
            attr_key(f.attrs),
        )

    return (
        m.name,
        attr_key(m.attrs),
        tuple((w.name, w.type, attr_key(w.attrs)) for w in m.weights.values()),
        tuple((layer.name, attr_key(layer.attrs)) for layer in m.layers.values()),
        tuple(func_key(f) for f in m.funcs),
    )


def attr_key(a: Attr) -> object:
    """A hashable key of an attribute value that is equal exactly when the printed texts are (dicts
    compared whatever their order)."""
    # bool is an int subclass and 1 == 1.0: tag the Python type so that 1, 1.0 and True differ,
    # as they do in the text.
    if isinstance(a, dict):
        return ("dict", tuple(sorted((k, attr_key(v)) for k, v in a.items())))
    if isinstance(a, (list, tuple)):
        return ("list", tuple(attr_key(v) for v in a))
    if isinstance(a, float):
        return ("float", repr(a))  # tells -0.0 from 0.0, and nan equals nan, as in the text
    return (type(a).__name__, a)


_attr_key = attr_key  # the name wafercc.passes.cse imports


class NameGen:
    """Fresh SSA names for values a pass creates: ``%0``, ``%1``, ... skipping names in use."""

    def __init__(self, func: Func):
        self.used = {v.name for v in func.values()}
        self.next = 0

    def __call__(self) -> str:
        while str(self.next) in self.used:
            self.next += 1
        name = str(self.next)
        self.used.add(name)
        self.next += 1
        return name
