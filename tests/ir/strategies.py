"""Hypothesis strategies for random WIR modules: every kind of attribute, names at the edges of the
grammar, multi-result ops, weights with attributes, several functions, locations.

The modules are printable and parse back, but need not verify: op names are arbitrary (some from the op
table), and operands may name a value defined later or twice, which the parser must accept.
"""

from __future__ import annotations

import string

from hypothesis import strategies as st

from wafercc.ir import DType, Func, Loc, Module, Op, SymbolRef, TensorType, Value, Weight
from wafercc.ops import OPS

_NAME_CHARS = string.ascii_letters + string.digits + "_.$"
value_names = st.one_of(st.integers(0, 50).map(str), st.text(_NAME_CHARS, min_size=1, max_size=6))
symbol_names = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(string.ascii_letters + string.digits + "_$"),
    st.text(_NAME_CHARS + "-", max_size=8),
)
op_names = st.one_of(
    st.sampled_from(sorted(OPS)),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,10}", fullmatch=True),
    st.sampled_from(["return", "true", "module", "loc", "tensor", "func", "weight", "nan", "inf", "none"]),
)

dtypes = st.sampled_from(list(DType))
tensor_types = st.builds(TensorType, st.lists(st.integers(0, 70), max_size=4).map(tuple), dtypes)

floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, -1e300, 5e-324, float("inf"), float("-inf"), float("nan"), 1e16, 0.1]),
)
strings = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", '"', "\\", "\\n", "a\nb", "\t", "é ü 漢字 🎉", "\u2028\x85\x0b", "// not a comment", "}"]),
)
attr_keys = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,8}", fullmatch=True),
    strings,
    st.sampled_from(["true", "none", "loc", "f32", "nan", "symbol", "attributes"]),
)
scalars = st.one_of(
    st.integers(),
    st.integers(-(2**70), 2**70),
    floats,
    strings,
    st.booleans(),
    st.none(),
    dtypes,
    symbol_names.map(SymbolRef),
    tensor_types,
)
attr_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(attr_keys, inner, max_size=4)),
    max_leaves=12,
)
attr_dicts = st.dictionaries(attr_keys, attr_values, max_size=4)
locs = st.one_of(st.none(), st.builds(Loc, strings, st.integers(-5, 10**6)))


@st.composite
def funcs(draw, name: str, weights: list[str]) -> Func:
    """A function whose operands name any value of the body, so some are used before their definition."""
    args = [Value(n, draw(tensor_types)) for n in draw(st.lists(value_names, max_size=3, unique=True))]
    n_ops = draw(st.integers(0, 6))
    result_names = draw(st.lists(st.lists(value_names, min_size=1, max_size=3), min_size=n_ops, max_size=n_ops))
    ops = []
    for names in result_names:
        attrs = draw(attr_dicts)
        if weights and draw(st.booleans()):
            attrs["symbol"] = SymbolRef(draw(st.sampled_from(weights)))
        ops.append(Op(draw(op_names), [], [draw(tensor_types) for _ in names], attrs, draw(locs), names))
    values = list(args) + [r for op in ops for r in op.results]
    # Names resolve to their first definition: draw operands from those, as the parser would build them.
    first = {}
    for v in values:
        first.setdefault(v.name, v)
    pool = list(first.values())
    for op in ops:
        op.operands = draw(st.lists(st.sampled_from(pool), max_size=3)) if pool else []
    returns = draw(st.lists(st.sampled_from(pool), max_size=2)) if pool else []
    return Func(name, args, ops, returns, [v.type for v in returns], draw(attr_dicts))


@st.composite
def modules(draw) -> Module:
    m = Module(draw(symbol_names), attrs=draw(attr_dicts))
    for name in draw(st.lists(symbol_names, max_size=3, unique=True)):
        m.weights[name] = Weight(name, draw(tensor_types), draw(st.dictionaries(attr_keys, attr_values, max_size=2)))
    for name in draw(st.lists(symbol_names, min_size=1, max_size=3, unique=True)):
        m.funcs.append(draw(funcs(name, list(m.weights))))
    return m
