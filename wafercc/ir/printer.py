"""WIR printer. Deterministic: the same module always prints to the same bytes.

Top-level op attributes are printed sorted by key; nested dicts keep their order (they are built
deterministically by whoever makes them). Floats print with ``repr`` so they read back bit-exactly.
"""

from __future__ import annotations

import math
import re
from json.encoder import encode_basestring

from .core import Attr, Func, Layer, Module, Op, SymbolRef
from .types import DType, TensorType

# json.dumps(s, ensure_ascii=False)'s text for a str, without json.dumps's encoder set-up on every call (0.7
# million strings in the 1T training plan's WIR)
_quote = encode_basestring

_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_RESERVED = frozenset({"true", "false", "none", "inf", "nan", "loc", "attributes"} | {d.value for d in DType})


def format_attr(a: Attr) -> str:
    if isinstance(a, (list, tuple)):
        return "[" + ", ".join(format_attr(v) for v in a) + "]"
    if isinstance(a, dict):
        return "{" + ", ".join(f"{format_key(k)} = {format_attr(v)}" for k, v in a.items()) + "}"
    return _format_scalar(a)


def _format_scalar(a: Attr) -> str:
    if a is True:
        return "true"
    if a is False:
        return "false"
    if a is None:
        return "none"
    if isinstance(a, int):
        return str(a)
    if isinstance(a, float):
        if math.isnan(a):
            return "nan"
        if math.isinf(a):
            return "inf" if a > 0 else "-inf"
        return repr(a)
    if isinstance(a, str):
        return _quote(a)
    if isinstance(a, DType):
        return a.value
    if isinstance(a, (SymbolRef, TensorType)):
        return str(a)
    raise TypeError(f"cannot print attribute of type {type(a).__name__}: {a!r}")


def format_key(k: str) -> str:
    return k if _BARE_KEY.match(k) and k not in _RESERVED else _quote(k)


def format_attr_dict(attrs: dict[str, Attr], sort: bool = True) -> str:
    items = sorted(attrs.items()) if sort else attrs.items()
    return "{" + ", ".join(f"{format_key(k)} = {format_attr(v)}" for k, v in items) + "}"


def format_op(op: Op) -> str:
    parts = []
    if op.results:
        parts.append(", ".join(f"%{r.name}" for r in op.results) + " = ")
    parts.append(op.name)
    attrs = op.attrs
    sym = attrs.get("symbol")
    if isinstance(sym, SymbolRef):
        parts.append(f" {sym}")
        attrs = {k: v for k, v in attrs.items() if k != "symbol"}
    if op.operands:
        parts.append(" " + ", ".join(f"%{v.name}" for v in op.operands))
    if attrs:
        parts.append(" " + format_attr_dict(attrs))
    if op.results:
        parts.append(" : " + ", ".join(str(r.type) for r in op.results))
    if op.loc is not None:
        parts.append(f" loc({_quote(op.loc.file)}:{op.loc.line})")
    return "".join(parts)


def format_func(f: Func, indent: str = "  ") -> list[str]:
    args = ", ".join(f"%{a.name}: {a.type}" for a in f.args)
    results = ", ".join(str(t) for t in f.declared_result_types())
    head = f"{indent}func @{f.name}({args}) -> ({results})"
    if f.attrs:
        head += " attributes " + format_attr_dict(f.attrs)
    lines = [head + " {"]
    body = indent * 2
    lines.extend(body + format_op(op) for op in f.ops)
    ret = "return" + ("" if not f.returns else " " + ", ".join(f"%{v.name}" for v in f.returns))
    lines.append(body + ret)
    lines.append(indent + "}")
    return lines


def format_layer(layer: Layer, indent: str = "  ", made: dict | None = None) -> list[str]:
    """A layer declaration, one attribute a line (sorted); a list of dicts (routes, memory maps) puts each
    dict on its own line, so a plan reads and diffs line by line. ``made`` (one printing of a module) keeps
    the lines of each such list by identity: identical layers share one routes list (mapping/route.py),
    whose hundreds of lines are formatted once."""
    inner = indent * 2
    items = sorted(layer.attrs.items())
    lines = [f"{indent}layer @{layer.name} {{"]
    for i, (k, v) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if isinstance(v, list) and v and all(isinstance(e, dict) for e in v):
            lines.append(f"{inner}{format_key(k)} = [")
            seen = made.get(id(v)) if made is not None else None
            if seen is not None and seen[0] is v and seen[1] == inner:
                body = seen[2]
            else:
                body = [f"{inner}  {format_attr(e)}{',' if j < len(v) - 1 else ''}" for j, e in enumerate(v)]
                if made is not None:
                    made[id(v)] = (v, inner, body)  # the list itself is kept, so its id is not reused
            lines.extend(body)
            lines.append(f"{inner}]{comma}")
        else:
            lines.append(f"{inner}{format_key(k)} = {format_attr(v)}{comma}")
    lines.append(indent + "}")
    return lines


def print_module(m: Module) -> str:
    """The WIR text of ``m``, ending in a newline."""
    head = f"module @{m.name}"
    if m.attrs:
        head += " attributes " + format_attr_dict(m.attrs)
    lines = [head + " {"]
    for w in m.weights.values():
        line = f"  weight @{w.name} : {w.type}"
        if w.attrs:
            line += " " + format_attr_dict(w.attrs)
        lines.append(line)
    made: dict = {}
    for layer in m.layers.values():
        lines.extend(format_layer(layer, made=made))
    for f in m.funcs:
        lines.extend(format_func(f))
    lines.append("}")
    return "\n".join(lines) + "\n"
