"""Expected-diagnostics tests for the op table's verifier, in the style of MLIR's ``--verify-diagnostics
--split-input-file``.

Each ``diagnostics/*.wir`` file (one per op family) holds small modules separated by a line ``// -----``.
Each module has exactly one line ``// expected-error {{text}}``, placed on the line just before the op that
must be refused. A module passes when parsing and fully verifying it (``wafercc.ops.verify``) raises a
VerifyError or ParseError whose message contains ``text`` and whose location (``e.render()``'s
``file:line:col``) is the op's line. A module that verifies cleanly fails.

Line numbers are the file's: a module is parsed with blank lines in front of it, so the error points at
the line an editor shows. Test ids are ``file:line`` of the expected-error line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import wafercc.ops
from wafercc.ir import ParseError, VerifyError, parse, parse_type
from wafercc.ops import ShapeError, infer_types

DIR = Path(__file__).parent / "diagnostics"
FAMILIES = ("create", "elementwise", "nn", "reduce", "shape")
SPLIT = re.compile(r"^// -----\s*$")
EXPECT = re.compile(r"//\s*expected-error\s*\{\{(.*)\}\}\s*$")


@dataclass(frozen=True)
class Module:
    source: str  # the file as the error's location names it
    first: int  # the module's first line in the file (1-based)
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n" * (self.first - 1) + "\n".join(self.lines) + "\n"

    def expectations(self) -> list[tuple[int, str]]:
        """(line in the file, text) of each ``// expected-error {{text}}``."""
        found = ((self.first + i, EXPECT.search(line)) for i, line in enumerate(self.lines))
        return [(n, m.group(1)) for n, m in found if m]


def split_input_file(path: Path, source: str) -> list[Module]:
    """The modules of ``path`` between ``// -----`` lines (blank pieces dropped)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    modules, start = [], 0
    for i, line in enumerate([*lines, "// -----"]):
        if SPLIT.match(line):
            piece = lines[start:i]
            if any(p.strip() for p in piece):
                modules.append(Module(source, start + 1, tuple(piece)))
            start = i + 1
    return modules


def check(module: Module) -> None:
    """Fail (pytest.fail) unless ``module`` is refused with its expected error at the expected line."""
    expected = module.expectations()
    if len(expected) != 1:
        pytest.fail(f"{module.source}:{module.first}: a module needs exactly one expected-error, has {len(expected)}")
    (line, text), op_line = expected[0], expected[0][0] + 1
    try:
        wafercc.ops.verify(parse(module.text, module.source))
    except (ParseError, VerifyError) as e:
        error = e
    else:
        pytest.fail(f"{module.source}:{line}: expected error {{{{{text}}}}}, but the module verifies")
    rendered = error.render()
    if text not in str(error):
        pytest.fail(f"{module.source}:{line}: expected error {{{{{text}}}}}, got:\n{rendered}")
    if not rendered.startswith(f"{module.source}:{op_line}:"):
        pytest.fail(f"{module.source}:{line}: expected the error on line {op_line}, got:\n{rendered}")


def _collect() -> list:
    cases = []
    for path in sorted(DIR.glob("*.wir")):
        source = f"tests/ir/diagnostics/{path.name}"
        for m in split_input_file(path, source):
            where = m.expectations()[0][0] if m.expectations() else m.first
            cases.append(pytest.param(m, id=f"{path.name}:{where}"))
    return cases


@pytest.mark.parametrize("module", _collect())
def test_expected_error(module: Module):
    check(module)


def test_every_op_family_has_a_diagnostics_file():
    assert sorted(p.stem for p in DIR.glob("*.wir")) == sorted(FAMILIES)
    for family in FAMILIES:
        assert split_input_file(DIR / f"{family}.wir", family), f"{family}.wir holds no module"


# -- the harness itself -----------------------------------------------------------------------------

GOOD_OP = "%y = relu %x : tensor<2xf32>"
BAD_OP = "%y = relu %x : tensor<3xf32>"
BAD_MESSAGE = "result has type tensor<3xf32>, but the operands give tensor<2xf32>"


def _module(*body: str, tmp_path: Path) -> Module:
    lines = ["module @m {", "  func @f(%x: tensor<2xf32>) -> () {", *body, "    return", "  }", "}"]
    path = tmp_path / "t.wir"
    path.write_text("\n// -----\n" + "\n".join(lines) + "\n")
    (module,) = split_input_file(path, "t.wir")
    return module


def test_harness_accepts_the_expected_error_on_the_op_line(tmp_path):
    m = _module(f"    // expected-error {{{{{BAD_MESSAGE}}}}}", "    " + BAD_OP, tmp_path=tmp_path)
    assert (m.first, m.expectations()) == (3, [(5, BAD_MESSAGE)])
    check(m)


def test_harness_takes_a_parse_error_at_the_op_line(tmp_path):
    m = _module(
        "    // expected-error {{use of undefined value %z}}", "    %y = relu %z : tensor<2xf32>", tmp_path=tmp_path
    )
    check(m)


@pytest.mark.parametrize(
    "body, complaint",
    [
        ([f"    // expected-error {{{{{BAD_MESSAGE}}}}}", "    " + GOOD_OP], "but the module verifies"),
        (["    // expected-error {{some other message}}", "    " + BAD_OP], "got:\nt.wir:6:5: error: 'relu' (%y)"),
        (
            [f"    // expected-error {{{{{BAD_MESSAGE}}}}}", "    " + GOOD_OP, "    " + BAD_OP.replace("%y", "%z")],
            "expected the error on line 6, got:\nt.wir:7:5",
        ),
        (["    " + BAD_OP], "needs exactly one expected-error, has 0"),
        (["    // expected-error {{a}}", "    // expected-error {{b}}", "    " + BAD_OP], "has 2"),
    ],
    ids=["verifies", "other-message", "other-line", "no-expectation", "two-expectations"],
)
def test_harness_fails_a_module_that_is_not_refused_as_expected(tmp_path, body, complaint):
    with pytest.raises(pytest.fail.Exception, match=re.escape(complaint)):
        check(_module(*body, tmp_path=tmp_path))


def test_infer_types_names_a_missing_required_attribute():
    """The frontend's entry to the result-type rules (no verifier around it)."""
    with pytest.raises(ShapeError, match=r"^'softmax' needs attribute 'dim'$"):
        infer_types("softmax", [parse_type("tensor<2xf32>")], {})
