"""Every user-facing message of the parser, the generic verifier and the op-table checker, word for word."""

from __future__ import annotations

import re

import pytest

import wafercc.ops
from wafercc.ir import DType, ParseError, TensorType, Value, VerifyError, parse, parse_file, verify


def body(*ops: str, ret: str = "%x", result: str = "tensor<2xf32>") -> str:
    """A one-function module around ``ops``; its op lines are lines 4, 5, ..."""
    lines = [
        "module @m {",
        "  weight @w : tensor<2xf32>",
        f"  func @f(%x: tensor<2xf32>) -> ({result}) {{",
        *(f"    {op}" for op in ops),
        f"    return {ret}",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def parse_error(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(text, "t.wir")
    return info.value


# -- syntax errors: Lark's, with line:col, the line, a caret, and what was expected ----------------


def test_syntax_error_shows_line_column_caret_and_expected():
    e = parse_error(body("%y = relu %x tensor<2xf32>"))
    assert e.render() == (
        "t.wir:4:18: error: unexpected tensor<2xf32>; expected ',', ':', '{', '}'\n"
        "      %y = relu %x tensor<2xf32>\n"
        "                   ^"
    )
    assert (e.line, e.column, e.source) == (4, 18, "t.wir")


def test_unexpected_character():
    e = parse_error(body("%y = relu %x : tensor<2xf32> # note"))
    assert e.render() == (
        "t.wir:4:34: error: unexpected character '#'; expected ',', 'loc', 'return', a value (%name)\n"
        "      %y = relu %x : tensor<2xf32> # note\n"
        "                                   ^"
    )


def test_unexpected_end_of_input():
    e = parse_error("module @m {\n  func @f(%x: tensor<2xf32>) -> () {\n    return\n")
    assert e.render().splitlines()[0] == "t.wir:3:5: error: unexpected end of input; expected '}', a value (%name)"
    assert parse_error("").render() == "t.wir:1:1: error: unexpected end of input; expected 'module'\n  \n  ^"


def test_expected_list_is_cut_after_eight():
    e = parse_error(body("%y = relu %x {k = [} : tensor<2xf32>"))
    assert e.render().splitlines()[0] == (
        "t.wir:4:24: error: unexpected }; expected '[', ']', '{', a float, a name, a string, a symbol (@name), "
        "a type (tensor<...>), ..."
    )


def test_long_token_is_shortened():
    e = parse_error(body("%y = relu %x " + "%" + "v" * 60 + " : tensor<2xf32>"))
    assert e.render().splitlines()[0] == f"t.wir:4:18: error: unexpected %{'v' * 36}...; expected ',', ':', '{{', '}}'"


def test_syntax_error_wins_over_an_earlier_semantic_error():
    e = parse_error(body("%y = relu %undefined : tensor<2xf32>", "%z = = oops"))
    assert e.render().splitlines()[0] == "t.wir:5:10: error: unexpected =; expected a name"


# -- semantic errors found while parsing --------------------------------------------------------


def test_undefined_value():
    assert parse_error(body("%y = relu %z : tensor<2xf32>")).render() == (
        "t.wir:4:15: error: use of undefined value %z\n      %y = relu %z : tensor<2xf32>\n                ^"
    )


def test_undefined_returned_value():
    assert parse_error(body(ret="%nope")).render().splitlines()[0] == "t.wir:4:12: error: use of undefined value %nope"


def test_unknown_dtype():
    assert parse_error(body("%y = relu %x : tensor<2xf31>")).render() == (
        "t.wir:4:20: error: unknown dtype 'f31' in 'tensor<2xf31>' (known: f64, f32, f16, bf16, i64, i32, i16, i8, u8, "
        "bool)\n"
        "      %y = relu %x : tensor<2xf31>\n"
        "                     ^"
    )


def test_duplicate_weight():
    text = "module @m {\n  weight @w : tensor<2xf32>\n  weight @w : tensor<3xf32>\n}\n"
    assert parse_error(text).render() == (
        "t.wir:3:10: error: weight @w is declared twice\n    weight @w : tensor<3xf32>\n           ^"
    )


def test_result_count_and_type_count_differ():
    assert parse_error(body("%y, %z = max_dim %x {dim = 0} : tensor<f32>")).render().splitlines()[0] == (
        "t.wir:4:14: error: 'max_dim' defines 2 result(s) but lists 1 type(s)"
    )


def test_unknown_attribute_word():
    assert parse_error(body("%y = relu %x {k = f33} : tensor<2xf32>")).render().splitlines()[0] == (
        "t.wir:4:23: error: unknown attribute value 'f33' (expected a dtype, number, string, ...)"
    )


def test_malformed_string_literal():
    assert parse_error(body('%y = relu %x {k = "\\x"} : tensor<2xf32>')).render().splitlines()[0] == (
        't.wir:4:23: error: malformed string literal "\\x": Invalid \\escape'
    )


def test_integer_too_long():
    line = '%y = relu %x : tensor<2xf32> loc("a.py":' + "9" * 5000 + ")"
    assert parse_error(body(line)).render().splitlines()[0] == (
        "t.wir:4:45: error: integer literal is too long (5000 characters)"
    )


def test_caret_line_is_counted_as_lark_counts_lines():
    # \u2028 and \x85 end a line for str.splitlines, not for Lark: the caret must stay on the right line.
    e = parse_error(body('%y = relu %x {s = "\u2028\x85"} : tensor<2xf32>', "%z = relu %q : tensor<2xf32>"))
    assert e.render().splitlines()[1] == "      %z = relu %q : tensor<2xf32>"


def test_file_errors(tmp_path):
    with pytest.raises(ParseError, match=r"^cannot read WIR file '.*missing.wir': No such file or directory$"):
        parse_file(tmp_path / "missing.wir")
    bad = tmp_path / "bad.wir"
    bad.write_bytes(b"module @m {\xff}")
    with pytest.raises(ParseError, match=r"^'.*bad.wir' is not a WIR text file \(not UTF-8\)$"):
        parse_file(bad)
    src = tmp_path / "m.wir"
    src.write_text("module @m {\n  oops\n}\n")
    with pytest.raises(ParseError) as info:
        parse_file(src)
    assert re.match(r"^.*m.wir:2:3: error: unexpected oops", info.value.render())


# -- the generic verifier -----------------------------------------------------------------------


def verify_error(text: str, check=verify) -> VerifyError:
    m = parse(text, "t.wir")
    with pytest.raises(VerifyError) as info:
        check(m)
    return info.value


@pytest.mark.parametrize(
    "text, message",
    [
        (
            body('%a = relu %b : tensor<2xf32> loc("m.py":3)', "%b = relu %x : tensor<2xf32>"),
            "'relu' (%a) at m.py:3: operand %b is used before it is defined [ssa-dominance]",
        ),
        (
            body("%a = relu %a : tensor<2xf32>"),
            "'relu' (%a): operand %a is used before it is defined [ssa-dominance]",
        ),
        (
            body("%a = relu %x : tensor<2xf32>", '%a = relu %x : tensor<2xf32> loc("m.py":4)'),
            "'relu' (%a) at m.py:4: %a is defined more than once [ssa-single-definition]",
        ),
        (
            body("%x = relu %x : tensor<2xf32>"),
            "'relu' (%x): %x is defined more than once [ssa-single-definition]",
        ),
        (
            "module @m {\n  func @f(%x: tensor<2xf32>, %x: tensor<2xf32>) -> () {\n    return\n  }\n}\n",
            "@f: argument %x is defined twice [ssa-single-definition]",
        ),
        (
            "module @m {\n  func @f() -> () {\n    return\n  }\n  func @f() -> () {\n    return\n  }\n}\n",
            "function @f is defined twice [unique-symbol]",
        ),
        (
            body("%a = weight.get @nope : tensor<2xf32>"),
            "'weight.get' (%a): attribute 'symbol' references unknown weight @nope [symbol-defined]",
        ),
        (
            body("%a = anything {ref = @nope} : tensor<2xf32>"),
            "'anything' (%a): attribute 'ref' references unknown weight @nope [symbol-defined]",
        ),
        (
            body("%a = weight.get @w : tensor<3xf32>"),
            ("'weight.get' (%a): result type tensor<3xf32> does not match weight @w : tensor<2xf32> [symbol-type]"),
        ),
        (
            body(result="tensor<3xf32>"),
            "@f: declared result types (tensor<3xf32>) but returns (tensor<2xf32>) [return-types]",
        ),
    ],
    ids=lambda v: v.rsplit("[", 1)[-1] if v.endswith("]") else None,
)
def test_generic_verifier(text: str, message: str):
    e = verify_error(text)
    assert str(e) == message
    assert e.rule == message.rsplit("[", 1)[1].rstrip("]")


def test_returned_value_from_elsewhere():
    m = parse(body(), "t.wir")
    m.funcs[0].returns = [Value("ghost", TensorType((2,), DType.f32))]
    with pytest.raises(VerifyError, match=r"^@f: returned value %ghost is not defined \[ssa-dominance\]$"):
        verify(m)


def test_verifier_error_points_at_the_op_in_the_text():
    """A module parsed from text: the CLI prints file:line:col of the op, as for a parse error."""
    e = verify_error(body("%a = relu %b : tensor<2xf32>", "%b = relu %x : tensor<2xf32>"))
    assert e.location == "t.wir:4:5"
    assert e.render() == "t.wir:4:5: error: " + str(e)
    e = verify_error(body("%y = relu %x : tensor<3xf32>"), wafercc.ops.verify)
    assert e.render().startswith("t.wir:4:5: error: 'relu' (%y): result has type")


def test_verifier_error_carries_the_op():
    e = verify_error(body("%a = relu %b : tensor<2xf32>", "%b = relu %x : tensor<2xf32>"))
    assert e.op is not None and e.op.name == "relu" and e.op.results[0].name == "a"


# -- the op table's checker (wafercc.ops.verify) --------------------------------------------------


@pytest.mark.parametrize(
    "op, message",
    [
        (
            'relu %x : tensor<3xf32> loc("m.py":7)',
            "'relu' (%y) at m.py:7: result has type tensor<3xf32>, but the operands give tensor<2xf32> [result-type]",
        ),
        ("frobnicate %x : tensor<2xf32>", "'frobnicate' (%y): unknown op 'frobnicate' [known-op]"),
        ("relu %x, %x : tensor<2xf32>", "'relu' (%y): takes 1 operand(s) (x), got 2 [operand-count]"),
        (
            "convolution %x : tensor<2xf32>",
            "'convolution' (%y): takes 2 to 3 operand(s) (input weight bias?), got 1 [operand-count]",
        ),
        ("softmax %x : tensor<2xf32>", "'softmax' (%y): missing required attribute 'dim' (int) [attr-required]"),
        (
            "softmax %x {axis = 1, dim = 0} : tensor<2xf32>",
            "'softmax' (%y): unknown attribute 'axis' (known: dim) [attr-known]",
        ),
        ("relu %x {k = 1} : tensor<2xf32>", "'relu' (%y): unknown attribute 'k' (known: none) [attr-known]"),
        ("softmax %x {dim = 0.5} : tensor<2xf32>", "'softmax' (%y): attribute 'dim' must be int, got 0.5 [attr-kind]"),
        (
            "softmax %x {dim = 3} : tensor<2xf32>",
            "'softmax' (%y): dim 3 is out of range for rank 1 [operand-types]",
        ),
        (
            "mm %x, %x : tensor<2xf32>",
            "'mm' (%y): mm needs [M, K] x [K, N], got tensor<2xf32> and tensor<2xf32> [operand-types]",
        ),
    ],
    ids=lambda v: v.rsplit("[", 1)[-1].rstrip("]") if "[" in v and v.startswith("'") else None,
)
def test_op_checker(op: str, message: str):
    e = verify_error(body("%y = " + op), wafercc.ops.verify)
    assert str(e) == message


def test_op_checker_result_count_and_multi_result_types():
    e = verify_error(body("%y, %z = relu %x : tensor<2xf32>, tensor<2xf32>"), wafercc.ops.verify)
    assert str(e) == "'relu' (%y, %z): has 2 result(s), the op defines 1 [result-count]"
    e = verify_error(body("%y, %z = max_dim %x {dim = 0} : tensor<f32>, tensor<f32>"), wafercc.ops.verify)
    assert str(e) == (
        "'max_dim' (%y, %z): result #1 has type tensor<f32>, but the operands give tensor<i64> [result-type]"
    )


def test_op_checker_runs_the_generic_rules_too():
    e = verify_error(body("%a = relu %b : tensor<2xf32>", "%b = relu %x : tensor<2xf32>"), wafercc.ops.verify)
    assert e.rule == "ssa-dominance"
