"""WIR parser: the Lark grammar in ``wir.lark`` (LALR) plus a transformer that builds the data model.

``wir.lark`` defines the language and the Lark parser produces every syntax error. The transformer runs
inline in the LALR parser (no parse tree is built) and holds no per-parse state: a rule that the text
breaks raises ``SemanticError`` with the offending token, and ``parse`` turns it into a ``ParseError``
with the file name, line, column and caret.

Because Lark's lexer costs ~10 us a token, text goes first through a line-oriented fast path
(``fastparse.py``) that reads the printer's own layout with regular expressions built from the grammar's
terminals and the same construction functions (``_build.py``). On anything else, including every error,
it gives up and the whole text is parsed by Lark, so results and messages are Lark's.

Operand names are resolved when their function is complete, so a use before its definition parses and
is reported by the verifier as a dominance error; a name defined nowhere is a parse error at its use.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import re
from pathlib import Path

from lark import Lark, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ._build import SemanticError, make_func, make_module, make_op, to_int, to_loc, to_string, to_type, word_attr
from .core import Layer, Module, SymbolRef, Value, Weight
from .errors import ParseError
from .fastparse import MAX_DEPTH, MAX_STRING, FastParser

# What a user reads in "expected ..." instead of terminal names.
_READABLE = {
    "VALUE": "a value (%name)",
    "SYMBOL": "a symbol (@name)",
    "OPNAME": "a name",
    "TENSOR_TYPE": "a type (tensor<...>)",
    "INT": "an integer",
    "FLOAT": "a float",
    "STRING": "a string",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "COLON": "':'",
    "EQUAL": "'='",
    "MORETHAN": "'>'",
    "__ANON_0": "'->'",
    "RETURN": "'return'",
    "MODULE": "'module'",
    "FUNC": "'func'",
    "WEIGHT": "'weight'",
    "LAYER": "'layer'",
    "LOC": "'loc'",
    "ATTRIBUTES": "'attributes'",
    "TRUE": "'true'",
    "FALSE": "'false'",
    "NONE": "'none'",
}


class _Builder(Transformer):
    """One method per grammar rule, each building one piece of the data model (see ``_build.py``).

    Lark builds a Tree for a rule without a method; ``tests/ir/test_grammar.py`` checks there is none.
    """

    # -- module level --------------------------------------------------------------------------
    def start(self, items):
        return items[0]

    def module(self, items):
        name, attrs, *body = items
        return make_module(name, attrs, body)

    def module_attrs(self, items):
        return items[0] if items else {}

    func_attrs = module_attrs
    op_attrs = module_attrs

    def weight(self, items):
        sym, ty, *attrs = items
        return sym, Weight(sym[1:], to_type(ty), attrs[0] if attrs else {})

    def layer(self, items):
        sym, attrs = items
        return sym, Layer(sym[1:], attrs)

    def func(self, items):
        sym, args, result_types, attrs, *body, ret = items
        ops = [op for op, _ in body]
        operands = [toks for _, toks in body]
        return make_func(sym, args, result_types, attrs, ops, operands, ret)

    def arg_list(self, items):
        return list(items)

    def arg(self, items):
        return Value(items[0][1:], to_type(items[1]))

    def type_list(self, items):
        return [to_type(t) for t in items]

    def ret(self, items):
        return items[0]

    # -- ops -----------------------------------------------------------------------------------
    def op(self, items):
        results, name, symbol, operands, attrs, *types, loc = items
        first = results[0] if results else name  # where the op's text starts
        pos = (first.line, first.column) if getattr(first, "line", None) else None
        return make_op(results, name, symbol, attrs, [to_type(t) for t in types], loc, pos), operands

    def result_list(self, items):
        return list(items)

    def op_symbol(self, items):
        return SymbolRef(items[0][1:]) if items else None

    def value_list(self, items):
        return list(items)

    def op_loc(self, items):
        return to_loc(items[0], items[1]) if items else None

    # -- attributes ----------------------------------------------------------------------------
    def attr_dict(self, items):
        return dict(items)

    def attr_entry(self, items):
        return (items[0], items[1])

    def bare_key(self, items):
        return str(items[0])

    def quoted_key(self, items):
        return to_string(items[0])

    def int_attr(self, items):
        return to_int(items[0])

    def float_attr(self, items):
        return float(items[0])

    def string_attr(self, items):
        return to_string(items[0])

    def true_attr(self, _):
        return True

    def false_attr(self, _):
        return False

    def none_attr(self, _):
        return None

    def word_attr(self, items):
        return word_attr(items[0])

    def symbol_attr(self, items):
        return SymbolRef(items[0][1:])

    def type_attr(self, items):
        return to_type(items[0])

    def list_attr(self, items):
        return list(items)


_GRAMMAR = Path(__file__).with_name("wir.lark").read_text()
_OPTIONS = {"parser": "lalr", "propagate_positions": False, "maybe_placeholders": False, "cache": True}
_LARK = Lark(_GRAMMAR, transformer=_Builder(), **_OPTIONS)
_FAST = FastParser({t.name: t.pattern.to_regexp() for t in _LARK.terminals})


@functools.cache
def _recognizer() -> Lark:
    """The same grammar without the transformer: finds syntax errors past a semantic one."""
    return Lark(_GRAMMAR, **_OPTIONS)


def _format(message: str, text: str, line: int, col: int) -> str:
    """The message, then the line it is about with a caret under the column."""
    if line <= 0:
        return message
    lines = text.split("\n")  # as Lark counts lines: not at \x85, \u2028 and the like
    src = lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else ""
    caret = " " * (max(col, 1) - 1) + "^"
    return f"{message}\n  {src}\n  {caret}"


def _expected(e: UnexpectedInput) -> str:
    names = getattr(e, "expected", None) or getattr(e, "allowed", None) or set()
    readable = sorted({_READABLE.get(n, repr(n.lower()) if n.isupper() else n) for n in names})
    if not readable:
        return ""
    if len(readable) > 8:
        readable = readable[:8] + ["..."]
    return "; expected " + ", ".join(readable)


def _syntax_error(e: UnexpectedInput, text: str, source: str) -> ParseError:
    if isinstance(e, UnexpectedEOF):
        line = text.count("\n") + 1
        col = len(text.split("\n")[-1]) + 1
        return ParseError(_format("unexpected end of input" + _expected(e), text, line, col), line, col, source)
    if isinstance(e, UnexpectedCharacters):
        msg = f"unexpected character {text[e.pos_in_stream]!r}" + _expected(e)
        return ParseError(_format(msg, text, e.line, e.column), e.line, e.column, source)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    if tok.type == "$END":
        what = "unexpected end of input"
    else:
        what = f"unexpected {tok!s}" if len(str(tok)) < 40 else f"unexpected {str(tok)[:37]}..."
    return ParseError(_format(what + _expected(e), text, e.line, e.column), e.line, e.column, source)


# Brackets and string literals, the only things whose size the grammar does not bound.
_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def _check_bounds(text: str, source: str) -> None:
    """ParseError for a string literal longer than MAX_STRING or brackets nested deeper than MAX_DEPTH inside
    an attribute value: the parser, the printer and every pass recurse on attributes."""
    depth = 0  # the module, a function and an attribute dict: 3 levels before any nesting inside a value
    for m in _NESTING.finditer(text):
        tok = m.group()
        if tok[0] == '"':
            if len(tok) > MAX_STRING:
                _bound_error(
                    text,
                    m.start(),
                    f"a string literal of {len(tok):,} characters: more than the {MAX_STRING:,} a string may have",
                    source,
                )
        elif tok in "[{":
            depth += 1
            if depth > MAX_DEPTH + 3:
                _bound_error(text, m.start(), f"brackets nested more than {MAX_DEPTH} deep in an attribute", source)
        else:
            depth -= 1


def _bound_error(text: str, pos: int, message: str, source: str):
    start = text.rfind("\n", 0, pos) + 1
    line, col = text.count("\n", 0, pos) + 1, pos - start + 1
    shown = text[max(start, pos - 60) : pos + 20].split("\n")[0]  # a long line: the part around the place
    caret = " " * (pos - max(start, pos - 60)) + "^"
    raise ParseError(f"{message}\n  {shown}\n  {caret}", line, col, source)


def parse_lark(text: str, source: str = "<wir>") -> Module:
    """Parse with Lark alone: the definition of the language that ``parse`` follows."""
    _check_bounds(text, source)
    try:
        return _LARK.parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, text, source) from None
    except SemanticError as e:
        semantic = e
    # A syntax error anywhere in the text is reported before a semantic one, wherever they stand.
    try:
        _recognizer().parse(text)
    except UnexpectedInput as syntax:
        raise _syntax_error(syntax, text, source) from None
    line = getattr(semantic.token, "line", 0) or 0
    col = getattr(semantic.token, "column", 0) or 0
    raise ParseError(_format(semantic.message, text, line, col), line, col, source) from None


def parse_fast(text: str) -> Module | None:
    """The fast path alone: the module, or None where ``parse`` would hand the text to Lark."""
    return _FAST.parse(text)


@contextlib.contextmanager
def _no_gc():
    """Pause the cyclic garbage collector while parsing: parsing leaves no cyclic garbage, yet the many
    objects of a large module trigger full collections that walk all of them (2-3x the parse time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse(text: str, source: str = "<wir>") -> Module:
    """Parse WIR text into a Module. Raises ParseError with line, column and the offending line."""
    with _no_gc():
        m = _FAST.parse(text)
        m = m if m is not None else parse_lark(text, source)
    m.source = source
    return m


def parse_file(path: str | Path) -> Module:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ParseError(f"cannot read WIR file '{p}': {e.strerror}", source=None) from None
    except UnicodeDecodeError:
        raise ParseError(f"'{p}' is not a WIR text file (not UTF-8)", source=None) from None
    return parse(text, str(p))
