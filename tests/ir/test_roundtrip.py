"""Round trips: parse(print(m)) == m and print(parse(t)) == t, on hand-written modules and golden files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from wafercc.ir import DType, Func, Loc, Module, Op, SymbolRef, TensorType, Value, parse, parse_file, print_module

from .strategies import modules

GOLDEN = Path(__file__).parent / "golden"
F32 = DType.f32


def t(*shape: int, dtype: DType = F32) -> TensorType:
    return TensorType(shape, dtype)


def built_module() -> Module:
    """Every feature of the data model, built through the API rather than from text."""
    m = Module("built", attrs={"source": "model.py", "opt_level": 2})
    m.add_weight("fc.weight", t(4, 3), shard=[0, 1], note="x\ty")
    m.add_weight("fc.bias", t(4))
    x = Value("x", t(2, 3))
    w = Op("weight.get", [], [t(4, 3)], {"symbol": SymbolRef("fc.weight")}, None, ["w"])
    wt = Op("permute", [w.result], [t(3, 4)], {"dims": [1, 0]}, Loc("model.py", 9), ["wt"])
    y = Op("mm", [x, wt.result], [t(2, 4)], {}, Loc("model.py", 10), ["y"])
    attrs = {
        "i": -3,
        "big": 2**80,
        "f": 1.5,
        "neg0": -0.0,
        "tiny": 1e-300,
        "inf": math.inf,
        "ninf": -math.inf,
        "nan": math.nan,
        "s": 'quote " backslash \\ newline \n unicode é 漢字',
        "b": True,
        "n": None,
        "d": DType.bf16,
        "sym": SymbolRef("fc.bias"),
        "ty": t(0, 2, dtype=DType.i8),
        "l": [1, [2.0, [None]], []],
        "dct": {"z": 1, "a": {"nested key": [DType.bool]}, "": "empty key"},
        "true": "reserved key",
    }
    mx = Op(
        "max_dim",
        [y.result],
        [t(2), t(2, dtype=DType.i64)],
        {"dim": 1, **attrs},
        Loc("üñí côdé.py", 11),
        ["vals", "idx"],
    )
    f = Func("forward", [x], [w, wt, y, mx], [mx.results[0], y.result], attrs={"entry": True})
    g = Func("empty", [], [], [])
    m.funcs += [f, g]
    return m


def test_built_module_round_trips():
    m = built_module()
    text = print_module(m)
    assert parse(text) == m
    assert print_module(parse(text)) == text


def test_module_equality_sees_what_the_text_says():
    m = built_module()
    other = built_module()
    assert m == other
    other.funcs[0].ops[3].attrs["neg0"] = 0.0  # -0.0 and 0.0 print differently
    assert m != other
    other = built_module()
    other.funcs[0].ops[3].attrs["i"] = -3.0  # so do 1 and 1.0
    assert m != other


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.wir")), ids=lambda p: p.name)
def test_golden_text_round_trips(path: Path):
    text = path.read_text()
    m = parse_file(path)
    assert print_module(m) == text
    assert parse(print_module(m)) == m


def test_printing_is_deterministic():
    # Top-level attribute dicts print sorted, whatever order they were built in.
    a = Op("x", [], [t()], {"b": 1, "a": 2}, None, ["0"])
    b = Op("x", [], [t()], {"a": 2, "b": 1}, None, ["0"])
    fa, fb = Func("f", [], [a], []), Func("f", [], [b], [])
    assert print_module(Module("m", funcs=[fa])) == print_module(Module("m", funcs=[fb]))


CANONICAL = """\
module @m attributes {k = [1, 2]} {
  weight @w : tensor<2xf32> {a = 1}
  func @f(%x: tensor<2xf32>) -> (tensor<2xf32>) {
    %w = weight.get @w : tensor<2xf32>
    %y = add %x, %w {alpha = 1.0, s = "a b"} : tensor<2xf32> loc("m.py":3)
    return %y
  }
}
"""

# The same module written the ways a person might: comments, free whitespace, line breaks inside an op,
# other spellings of the same numbers, an empty attribute dict.
VARIANTS = [
    "// a comment line\n" + CANONICAL + "// trailing comment",
    CANONICAL.replace("\n", "\r\n"),
    CANONICAL.replace("  ", "\t"),
    CANONICAL.replace(" loc(", "\n        loc(").replace(", %w", ",\n %w"),
    CANONICAL.replace("alpha = 1.0", "alpha=1.").replace("k = [1, 2]", "k=[ 1 ,2 ]"),
    CANONICAL.replace('s = "a b"', 's = "a\\u0020b"').replace("{a = 1}", "{a = 1} // weight"),
    CANONICAL.replace("get @w : ", "get @w {} : "),
    CANONICAL.replace("module @m attributes {k = [1, 2]} {", "module @m attributes {k = [1, 2]}\n{"),
    " ".join(CANONICAL.split()),  # all on one line
]


@pytest.mark.parametrize("text", VARIANTS, ids=range(len(VARIANTS)))
def test_free_layout_parses_to_the_canonical_module(text: str):
    assert print_module(parse(text)) == CANONICAL


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(modules())
def test_random_modules_round_trip(m: Module):
    text = print_module(m)
    back = parse(text)
    assert back == m
    assert print_module(back) == text
