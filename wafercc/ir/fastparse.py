"""The fast path of the WIR parser: the printer's line layout, read with regular expressions.

A large module is almost all op lines, and Lark spends ~10 us on each token of them. This reader
takes one line at a time, matches it with a regular expression composed from the grammar's own
terminal patterns (passed in by ``parser.py``, so they cannot drift from ``wir.lark``), and builds the
module with the same functions as the Lark transformer (``_build.py``).

It accepts only the layout the printer writes: one item per line, single spaces where the printer puts
them, any indentation, blank lines, and ``//`` comments on their own or at the end of a line. On
anything else, and on every error, ``parse`` returns None and the caller parses the whole text with
Lark, which stays the only source of results for irregular text and of error messages.

At every token the expressions try the same terminals, in the same order, as Lark's contextual lexer
does in that parser state (``tensor<`` before floats before the rest, ``true``/``false``/``none`` as
keywords where a value goes); ``tests/ir/test_fastparse.py`` checks the two parsers agree.
"""

from __future__ import annotations

import re

from ._build import SemanticError, make_func, make_module, make_op, to_int, to_string, to_type, word_attr
from .core import Attr, Func, Loc, Module, SymbolRef, Value, Weight

_WORDS = {"true": True, "false": False, "none": None}
MAX_DEPTH = 64  # brackets inside brackets in one attribute value: deeper text goes to Lark, which refuses it
MAX_STRING = 1 << 20  # characters of one string literal, quotes and escapes included


class _GiveUp(Exception):
    """The text is not in the layout this reader knows; Lark must read it."""


class FastParser:
    """Built once from the grammar's terminal regexes: ``{"VALUE": "%[A-Za-z0-9_.$]+", ...}``."""

    def __init__(self, terminals: dict[str, str]):
        v, sym, name, ty, string, int_, float_ = (
            f"(?:{terminals[k]})" for k in ("VALUE", "SYMBOL", "OPNAME", "TENSOR_TYPE", "STRING", "INT", "FLOAT")
        )
        values, types = f"{v}(?:, {v})*", f"{ty}(?:, {ty})*"
        end = r"[ \t]*(?://.*)?\Z"  # trailing blanks and a comment; the line has no newline
        self._blank = re.compile(end).match
        self._module = re.compile(rf"[ \t]*module (?P<name>{sym})").match
        self._weight = re.compile(rf"[ \t]*weight (?P<name>{sym}) : (?P<type>{ty})").match
        self._func = re.compile(
            rf"[ \t]*func (?P<name>{sym})\((?P<args>(?:{v}: {ty}(?:, {v}: {ty})*)?)\) -> \((?P<types>(?:{types})?)\)"
        ).match
        self._open = re.compile(r" \{" + end).match
        self._close = re.compile(r"[ \t]*\}" + end).match
        self._return = re.compile(rf"[ \t]*return(?: (?P<values>{values}))?" + end).match
        self._op = re.compile(
            rf"[ \t]*(?P<results>{values}) = (?P<name>{name})(?: (?P<symbol>{sym}))?(?: (?P<operands>{values}))?"
        ).match
        self._op_tail = re.compile(
            rf" : (?P<types>{types})(?: loc\((?P<file>{string}):(?P<line>{int_})\))?" + end
        ).match
        self._end = re.compile(end).match
        self._key = re.compile(rf"(?:(?P<bare>{name})|(?P<quoted>{string})) = ").match
        # The order of Lark's lexer where a value goes: by priority (types, floats), then the rest,
        # whose first characters differ.
        self._scalar = re.compile(
            rf"(?P<type>{ty})|(?P<float>{float_})|(?P<int>{int_})|(?P<str>{string})|(?P<word>{name})|(?P<sym>{sym})"
        ).match

    def parse(self, text: str) -> Module | None:
        """The module, or None if the text is irregular or wrong (then Lark must parse it)."""
        try:
            return self._module_at(text.split("\n"))
        except (_GiveUp, SemanticError):
            return None

    # -- lines -----------------------------------------------------------------------------------
    def _module_at(self, lines: list[str]) -> Module:
        i = self._skip_blank(lines, 0)
        m = self._module(lines[i])
        if m is None:
            raise _GiveUp
        attrs, pos = self._attributes_at(lines[i], m.end())
        self._expect(self._open, lines[i], pos)
        items: list[tuple[str, Weight] | Func] = []
        while True:
            i = self._skip_blank(lines, i + 1)
            line = lines[i]
            if (w := self._weight(line)) is not None:
                wattrs, pos = self._attrs_at(line, w.end() + 1) if line.startswith(" {", w.end()) else ({}, w.end())
                self._expect(self._end, line, pos)
                items.append((w["name"], Weight(w["name"][1:], to_type(w["type"]), wattrs)))
            elif (f := self._func(line)) is not None:
                i, func = self._func_at(lines, i, f)
                items.append(func)
            elif self._close(line):
                if self._skip_blank(lines, i + 1, allow_end=True) != len(lines):
                    raise _GiveUp
                return make_module(m["name"], attrs, items)
            else:
                raise _GiveUp

    def _func_at(self, lines: list[str], i: int, f: re.Match) -> tuple[int, Func]:
        line = lines[i]
        args = [Value(a[1:], to_type(t)) for a, t in (x.split(": ") for x in f["args"].split(", ") if x)]
        result_types = [to_type(t) for t in f["types"].split(", ") if t]
        fattrs, pos = self._attributes_at(line, f.end())
        self._expect(self._open, line, pos)
        ops, operands = [], []
        op_match, tail_match, attrs_at = self._op, self._op_tail, self._attrs_at
        files: dict[str, str] = {}  # a loc's file token, decoded once
        while True:
            i += 1
            if i == len(lines):
                raise _GiveUp
            line = lines[i]
            m = op_match(line)
            if m is None:
                if self._blank(line):
                    continue
                break
            pos = m.end()
            attrs = {}
            if line.startswith(" {", pos):
                attrs, pos = attrs_at(line, pos + 1)
            t = tail_match(line, pos)
            if t is None:
                raise _GiveUp
            loc = None
            file_tok = t["file"]
            if file_tok is not None and len(file_tok) > MAX_STRING:
                raise _GiveUp
            if file_tok is not None:
                file = files.get(file_tok)
                if file is None:
                    file = files[file_tok] = to_string(file_tok)
                loc = Loc(file, to_int(t["line"]))
            sym = m["symbol"]
            types = [to_type(x) for x in t["types"].split(", ")]
            ops.append(
                make_op(
                    m["results"].split(", "),
                    m["name"],
                    SymbolRef(sym[1:]) if sym else None,
                    attrs,
                    types,
                    loc,
                    (i + 1, len(line) - len(line.lstrip(" ")) + 1),
                )
            )
            operands.append(m["operands"].split(", ") if m["operands"] is not None else [])
        r = self._return(line)
        if r is None:
            raise _GiveUp
        i = self._skip_blank(lines, i + 1)
        if not self._close(lines[i]):
            raise _GiveUp
        returns = r["values"].split(", ") if r["values"] is not None else []
        return i, make_func(f["name"], args, result_types, fattrs, ops, operands, returns)

    def _skip_blank(self, lines: list[str], i: int, allow_end: bool = False) -> int:
        while i < len(lines) and self._blank(lines[i]):
            i += 1
        if i == len(lines) and not allow_end:
            raise _GiveUp
        return i

    @staticmethod
    def _expect(match, line: str, pos: int) -> None:
        if match(line, pos) is None:
            raise _GiveUp

    # -- attributes ------------------------------------------------------------------------------
    def _attributes_at(self, line: str, pos: int) -> tuple[dict[str, Attr], int]:
        """An optional `` attributes {...}`` of a module or function header."""
        if line.startswith(" attributes {", pos):
            return self._attrs_at(line, pos + len(" attributes "))
        return {}, pos

    def _attrs_at(self, s: str, pos: int, depth: int = 0) -> tuple[dict[str, Attr], int]:
        """The attribute dict starting with the ``{`` at ``pos``, and the position after its ``}``."""
        if depth > MAX_DEPTH:
            raise _GiveUp
        out: dict[str, Attr] = {}
        pos += 1
        if s.startswith("}", pos):
            return out, pos + 1
        while True:
            k = self._key(s, pos)
            if k is None:
                raise _GiveUp
            if k["quoted"] is not None and len(k["quoted"]) > MAX_STRING:
                raise _GiveUp
            value, pos = self._value_at(s, k.end(), depth + 1)
            out[k["bare"] if k["bare"] is not None else to_string(k["quoted"])] = value
            if s.startswith(", ", pos):
                pos += 2
            elif s.startswith("}", pos):
                return out, pos + 1
            else:
                raise _GiveUp

    def _list_at(self, s: str, pos: int, depth: int) -> tuple[list, int]:
        """The list starting with the ``[`` at ``pos``, and the position after its ``]``."""
        if depth > MAX_DEPTH:
            raise _GiveUp
        pos += 1
        if s.startswith("]", pos):
            return [], pos + 1
        out = []
        while True:
            value, pos = self._value_at(s, pos, depth + 1)
            out.append(value)
            if s.startswith(", ", pos):
                pos += 2
            elif s.startswith("]", pos):
                return out, pos + 1
            else:
                raise _GiveUp

    def _value_at(self, s: str, pos: int, depth: int = 0) -> tuple[Attr, int]:
        c = s[pos : pos + 1]
        if c == "{":
            return self._attrs_at(s, pos, depth)
        if c == "[":
            return self._list_at(s, pos, depth)
        m = self._scalar(s, pos)
        if m is None:
            raise _GiveUp
        kind, tok = m.lastgroup, m[m.lastgroup]
        if kind == "int":
            return to_int(tok), m.end()
        if kind == "float":
            return float(tok), m.end()
        if kind == "str":
            if len(tok) > MAX_STRING:
                raise _GiveUp
            return to_string(tok), m.end()
        if kind == "word":
            return (_WORDS[tok] if tok in _WORDS else word_attr(tok)), m.end()
        if kind == "sym":
            return SymbolRef(tok[1:]), m.end()
        return to_type(tok), m.end()
