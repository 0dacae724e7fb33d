"""Building the data model from the pieces of WIR text; shared by both parsers in ``parser.py``.

Both the Lark transformer and the line-oriented fast path call these functions, so a text that both
accept builds the same module by construction: they differ only in how they cut the text into tokens.
Tokens are strings; the Lark parser passes ``lark.Token`` (a ``str`` with a line and column), which a
``SemanticError`` carries so that the error can point at it.
"""

from __future__ import annotations

import json

from .core import Attr, Func, Layer, Loc, Module, Op, SymbolRef, Value, Weight
from .types import DType, TensorType, parse_type


class SemanticError(Exception):
    """Text that fits the grammar but still says something impossible (undefined value, bad type...)."""

    def __init__(self, message: str, token: str | None):
        super().__init__(message)
        self.message = message
        self.token = token


def to_type(tok: str) -> TensorType:
    try:
        return parse_type(tok)
    except ValueError as e:
        raise SemanticError(str(e), tok) from None


def to_string(tok: str) -> str:
    """The value of a STRING token: JSON string syntax."""
    try:
        return json.loads(tok)
    except json.JSONDecodeError as e:
        raise SemanticError(f"malformed string literal {tok}: {e.msg}", tok) from None


def to_int(tok: str) -> int:
    try:
        return int(tok)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise SemanticError(f"integer literal is too long ({len(tok)} characters)", tok) from None


def to_loc(file_tok: str, line_tok: str) -> Loc:
    return Loc(to_string(file_tok), to_int(line_tok))


def make_op(
    results: list[str],
    name: str,
    symbol: SymbolRef | None,
    attrs: dict[str, Attr],
    types: list[TensorType],
    loc: Loc | None,
    pos: tuple[int, int] | None = None,
) -> Op:
    """An op with no operands yet: they are resolved by ``make_func`` once the whole body is known."""
    if len(types) != len(results):
        raise SemanticError(f"'{name}' defines {len(results)} result(s) but lists {len(types)} type(s)", name)
    if symbol is not None:
        attrs = {"symbol": symbol, **attrs}
    return Op(str(name), (), types, attrs, loc, [r[1:] for r in results], pos)


def make_func(
    sym: str,
    args: list[Value],
    result_types: list[TensorType],
    attrs: dict[str, Attr],
    ops: list[Op],
    operands: list[list[str]],
    returns: list[str],
) -> Func:
    """A function; ``operands[i]`` are the operand tokens of ``ops[i]``.

    Names resolve against the whole body, the first definition winning, so that a use before its
    definition (or a second definition) parses and is reported by the verifier with its rule name.
    """
    scope: dict[str, Value] = {}
    for v in args:
        scope.setdefault(v.name, v)
    for op in ops:
        for r in op.results:
            scope.setdefault(r.name, r)

    def lookup(tok: str) -> Value:
        v = scope.get(tok[1:])
        if v is None:
            raise SemanticError(f"use of undefined value {tok}", tok)
        return v

    for op, toks in zip(ops, operands):
        op.operands = [lookup(t) for t in toks]
    return Func(
        name=sym[1:],
        args=args,
        ops=ops,
        returns=[lookup(t) for t in returns],
        result_types=result_types,
        attrs=attrs,
    )


def make_module(sym: str, attrs: dict[str, Attr], items: list[tuple[str, Weight | Layer] | Func]) -> Module:
    """A module from its weights and layers, each with its symbol token, and functions, in text order."""
    m = Module(name=sym[1:], attrs=attrs)
    for item in items:
        if isinstance(item, Func):
            m.funcs.append(item)
            continue
        tok, decl = item
        table, what = (m.weights, "weight") if isinstance(decl, Weight) else (m.layers, "layer")
        if decl.name in table:
            raise SemanticError(f"{what} @{decl.name} is declared twice", tok)
        table[decl.name] = decl
    return m


def word_attr(tok: str) -> Attr:
    """A bare word as an attribute value: a dtype."""
    try:
        return DType(str(tok))
    except ValueError:
        raise SemanticError(f"unknown attribute value '{tok}' (expected a dtype, number, string, ...)", tok) from None
