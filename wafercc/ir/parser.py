"""WIR parser: the Lark grammar in ``wir.lark`` (LALR) plus a transformer that builds the data model.

The transformer runs inside the LALR parser (no parse tree is built), which keeps large modules fast.
Operand names are resolved when their function is complete, so a use before its definition parses and
is reported by the verifier as a dominance error; a name defined nowhere is a parse error at its use.
"""

from __future__ import annotations

import json
from pathlib import Path

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from .core import Func, Loc, Module, Op, SymbolRef, Value, Weight
from .errors import ParseError
from .types import DType, parse_type

# What a user reads in "expected ..." instead of terminal names.
_READABLE = {
    "VALUE": "a value (%name)", "SYMBOL": "a symbol (@name)", "OPNAME": "a name",
    "TENSOR_TYPE": "a type (tensor<...>)", "INT": "an integer", "FLOAT": "a float",
    "STRING": "a string", "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'",
    "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "MORETHAN": "'>'",
    "__ANON_0": "'->'", "RETURN": "'return'", "MODULE": "'module'", "FUNC": "'func'", "WEIGHT": "'weight'",
    "LOC": "'loc'", "ATTRIBUTES": "'attributes'", "TRUE": "'true'", "FALSE": "'false'", "NONE": "'none'",
}


class _PendingOp:
    """An op whose operand names are not yet resolved to values."""

    __slots__ = ("op", "operand_tokens")

    def __init__(self, op: Op, operand_tokens: list[Token]):
        self.op = op
        self.operand_tokens = operand_tokens


class _Builder(Transformer):
    """One method per grammar rule; each builds one piece of the data model."""

    def __init__(self, text: str, source: str):
        super().__init__()
        self.text = text
        self.source = source

    # -- module level --------------------------------------------------------------------------
    def start(self, items):
        return items[0]

    def module(self, items):
        name, attrs, *body = items
        m = Module(name=name[1:], attrs=attrs)
        for item in body:
            if isinstance(item, Weight):
                if item.name in m.weights:
                    raise self.error(f"weight @{item.name} is declared twice", item.attrs.pop("_tok", None))
                item.attrs.pop("_tok", None)
                m.weights[item.name] = item
            else:
                m.funcs.append(item)
        return m

    def module_attrs(self, items):
        return items[0] if items else {}

    func_attrs = module_attrs
    op_attrs = module_attrs

    def weight(self, items):
        sym, ty, *attrs = items
        w = Weight(sym[1:], self.type(ty), dict(attrs[0]) if attrs else {})
        w.attrs["_tok"] = sym
        return w

    def func(self, items):
        sym, args, result_types, attrs, *rest = items
        ret_tokens = rest[-1]
        pending: list[_PendingOp] = rest[:-1]
        scope: dict[str, Value] = {}
        for v in args:
            scope.setdefault(v.name, v)
        for p in pending:
            for r in p.op.results:
                scope.setdefault(r.name, r)

        def lookup(tok: Token) -> Value:
            v = scope.get(tok[1:])
            if v is None:
                raise self.error(f"use of undefined value {tok}", tok)
            return v

        for p in pending:
            p.op.operands = [lookup(t) for t in p.operand_tokens]
        return Func(
            name=sym[1:],
            args=args,
            ops=[p.op for p in pending],
            returns=[lookup(t) for t in ret_tokens],
            result_types=result_types,
            attrs=attrs,
        )

    def arg_list(self, items):
        return list(items)

    def arg(self, items):
        return Value(items[0][1:], self.type(items[1]))

    def type_list(self, items):
        return [self.type(t) for t in items]

    def ret(self, items):
        return items[0]

    # -- ops -----------------------------------------------------------------------------------
    def op(self, items):
        results, name, symbol, operands, attrs, *rest = items
        loc = rest[-1]
        types = [self.type(t) for t in rest[:-1]]
        if len(types) != len(results):
            raise self.error(
                f"'{name}' defines {len(results)} result(s) but lists {len(types)} type(s)", name
            )
        if symbol is not None:
            attrs = {"symbol": symbol, **attrs}
        op = Op(str(name), [], types, attrs, loc, [r[1:] for r in results])
        return _PendingOp(op, operands)

    def result_list(self, items):
        return list(items)

    def op_symbol(self, items):
        return SymbolRef(items[0][1:]) if items else None

    def value_list(self, items):
        return list(items)

    def op_loc(self, items):
        if not items:
            return None
        return Loc(json.loads(items[0]), int(items[1]))

    # -- attributes ----------------------------------------------------------------------------
    def attr_dict(self, items):
        out = {}
        for k, v in items:
            out[k] = v
        return out

    def attr_entry(self, items):
        return (items[0], items[1])

    def bare_key(self, items):
        return str(items[0])

    def quoted_key(self, items):
        return json.loads(items[0])

    def int_attr(self, items):
        return int(items[0])

    def float_attr(self, items):
        return float(items[0])

    def string_attr(self, items):
        return json.loads(items[0])

    def true_attr(self, _):
        return True

    def false_attr(self, _):
        return False

    def none_attr(self, _):
        return None

    def word_attr(self, items):
        tok = items[0]
        try:
            return DType(str(tok))
        except ValueError:
            raise self.error(f"unknown attribute value '{tok}' (expected a dtype, number, string, ...)", tok) from None

    def symbol_attr(self, items):
        return SymbolRef(items[0][1:])

    def type_attr(self, items):
        return self.type(items[0])

    def list_attr(self, items):
        return list(items)

    # -- helpers -------------------------------------------------------------------------------
    def type(self, tok: Token):
        try:
            return parse_type(str(tok))
        except ValueError as e:
            raise self.error(str(e), tok) from None

    def error(self, message: str, tok: Token | None) -> ParseError:
        line = getattr(tok, "line", 0) or 0
        col = getattr(tok, "column", 0) or 0
        return ParseError(_format(message, self.text, self.source, line, col), line, col, self.source)


_GRAMMAR = (Path(__file__).with_name("wir.lark")).read_text()
_LARK = Lark(_GRAMMAR, parser="lalr", propagate_positions=False, maybe_placeholders=False)


def _format(message: str, text: str, source: str, line: int, col: int) -> str:
    if line <= 0:
        return f"{source}: error: {message}"
    lines = text.splitlines()
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    caret = " " * (max(col, 1) - 1) + "^"
    return f"{source}:{line}:{col}: error: {message}\n  {src}\n  {caret}"


def _expected(e: UnexpectedInput) -> str:
    names = getattr(e, "expected", None) or getattr(e, "allowed", None) or set()
    readable = sorted({_READABLE.get(n, repr(n.lower()) if n.isupper() else n) for n in names})
    if not readable:
        return ""
    if len(readable) > 8:
        readable = readable[:8] + ["..."]
    return "; expected " + ", ".join(readable)


def parse(text: str, source: str = "<wir>") -> Module:
    """Parse WIR text into a Module. Raises ParseError with line, column and the offending line."""
    builder = _Builder(text, source)
    try:
        tree = _LARK.parse(text)
        return builder.transform(tree)
    except VisitError as e:  # an error raised by a transformer method
        if isinstance(e.orig_exc, ParseError):
            raise e.orig_exc from None
        raise
    except UnexpectedEOF as e:
        line = text.count("\n") + 1
        raise ParseError(
            _format("unexpected end of input" + _expected(e), text, source, line, len(text.splitlines()[-1:] or [""]) + 1),
            line, 0, source,
        ) from None
    except UnexpectedCharacters as e:
        msg = f"unexpected character {text[e.pos_in_stream]!r}" + _expected(e)
        raise ParseError(_format(msg, text, source, e.line, e.column), e.line, e.column, source) from None
    except UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            what = "unexpected end of input"
        else:
            what = f"unexpected {tok!s}" if len(str(tok)) < 40 else f"unexpected {str(tok)[:37]}..."
        raise ParseError(_format(what + _expected(e), text, source, e.line, e.column), e.line, e.column, source) from None


def parse_file(path: str | Path) -> Module:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ParseError(f"cannot read WIR file '{p}': {e.strerror}") from None
    except UnicodeDecodeError:
        raise ParseError(f"'{p}' is not a WIR text file (not UTF-8)") from None
    return parse(text, str(p))
