"""The fast path of the parser builds exactly what Lark builds, and gives up on everything else.

``parse`` = fast path, else Lark; so these tests compare ``parse_fast`` with ``parse_lark`` directly.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wafercc.ir import Module, ParseError, parse, print_module
from wafercc.ir.parser import _LARK, _Builder, parse_fast, parse_lark

from .strategies import modules

TESTS = Path(__file__).parents[1]
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def lark_or_none(text: str) -> Module | None:
    try:
        return parse_lark(text)
    except ParseError:
        return None


def assert_same(fast: Module, lark: Module) -> None:
    assert fast == lark
    assert print_module(fast) == print_module(lark)  # also nested dict order


@SETTINGS
@given(modules())
def test_fast_path_reads_printed_modules_as_lark_does(m: Module):
    text = print_module(m)
    fast = parse_fast(text)
    assert fast is not None, "the fast path must take the printer's output"
    assert_same(fast, parse_lark(text))
    assert print_module(fast) == text


# Edits that make text irregular or wrong in the places the fast path could misread.
PIECES = [
    " ",
    "\n",
    "\t",
    "\r",
    "\f",
    "\xa0",
    "\x85",
    "\u2028",
    "//",
    "{",
    "}",
    "[",
    "]",
    "%",
    "@",
    ",",
    ", ",
    '"',
    "\\",
    "x",
    "1",
    "-0",
    ".",
    "-",
    "e5",
    "1.",
    "tensor<",
    ">",
    "=",
    " = ",
    ":",
    " : ",
    "(",
    ")",
    "nan",
    "inf",
    "true",
    "none",
    "f32",
    "loc",
    "return",
    "module",
    "",
]


@SETTINGS
@given(modules(), st.data())
def test_fast_path_agrees_with_lark_or_gives_up_on_edited_text(m: Module, data):
    text = print_module(m)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 3)))
        text = text[:i] + data.draw(st.sampled_from(PIECES)) + text[j:]
    fast = parse_fast(text)
    if fast is not None:
        lark = lark_or_none(text)
        assert lark is not None, "the fast path accepted text that Lark rejects"
        assert_same(fast, lark)


@pytest.mark.parametrize("path", sorted(TESTS.glob("**/*.wir")), ids=lambda p: str(p.relative_to(TESTS)))
def test_golden_files_parse_the_same_both_ways(path: Path):
    # A golden file may hold several modules between `// -----` lines (input, expected output).
    for text in re.split(r"^// -----.*$", path.read_text(), flags=re.MULTILINE):
        fast = parse_fast(text)
        lark = lark_or_none(text)
        if fast is not None:
            assert lark is not None
            assert_same(fast, lark)
        if lark is not None:  # printing is a fixed point after one parse, comments and layout aside
            assert print_module(parse(print_module(lark))) == print_module(lark)


@pytest.mark.parametrize(
    "line",
    [
        "%a = return %x : tensor<f32>",  # keywords are names where a name goes
        "%a = x {true = 1, none = 2, loc = 3, tensor = 4, nan = 5, inf = 6, f32 = 7} : tensor<f32>",
        "%a = x {k = [true, false, none, nan, inf, -inf, f32, 1., 1e5, -0, 007, -0.0]} : tensor<f32>",
        "%a = x {k = {}, e = []} : tensor<f32>",
        "%a = x {} : tensor<f32>",
        '%a = x : tensor<f32> loc("m.py":-3) // comment',
        "%a = x : tensor<f32>//comment",
        "%a = x %a : tensor<f32>",  # its own operand: parses, the verifier says dominance
    ],
)
def test_fast_path_edge_lines(line: str):
    text = "module @m {\n  func @f(%x: tensor<f32>) -> () {\n    " + line + "\n    return\n  }\n}\n"
    fast = parse_fast(text)
    assert fast is not None
    assert_same(fast, parse_lark(text))


@pytest.mark.parametrize(
    "line",
    [
        "%a = x {k = info} : tensor<f32>",  # Lark lexes `inf` `o`
        "%a = x {k = nanx} : tensor<f32>",
        "%a = x {k = tensor<3xf32} : tensor<f32>",
        "%a = x {k = 1e} : tensor<f32>",
        '%a = x {k = "\\q"} : tensor<f32>',
        "%a, %b = x : tensor<f32>",
        "%a = x %undefined : tensor<f32>",
        "%a = x : tensor<f32x>",
        "%a = x {k = f33} : tensor<f32>",
    ],
)
def test_fast_path_gives_up_on_errors(line: str):
    text = "module @m {\n  func @f(%x: tensor<f32>) -> () {\n    " + line + "\n    return\n  }\n}\n"
    assert parse_fast(text) is None
    with pytest.raises(ParseError):
        parse(text)


def test_every_grammar_rule_has_a_builder_method():
    # Lark silently builds a Tree for a rule the transformer lacks; internal (_x) and inlined (?x) rules
    # have none by design.
    names = {
        r.alias or r.origin.name
        for r in _LARK.rules
        if not (r.origin.name.startswith("_") or (r.options.expand1 and len(r.expansion) == 1 and not r.alias))
    }
    assert names and not {n for n in names if not hasattr(_Builder, n)}
