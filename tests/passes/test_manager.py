"""The pass manager: pipeline strings, diagnostics, IR dumps, timing, statistics, failures and reproducers."""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from wafercc.ir import Module, VerifyError, WaferError, parse, print_module
from wafercc.passes import (
    DEFAULT_PIPELINE,
    PassFailure,
    PassManager,
    PipelineError,
    available_passes,
    read_reproducer_pipeline,
    register_pass,
    run_pipeline,
    unregister_pass,
)
from wafercc.passes.manager import format_pipeline, parse_pipeline

SOURCE = """\
module @m {
  func @forward(%x: tensor<4xf32>) -> (tensor<4xf32>) {
    %a = clone %x : tensor<4xf32>
    %b = relu %a : tensor<4xf32>
    %c = relu %a : tensor<4xf32>
    %d = add %b, %c : tensor<4xf32>
    %dead = neg %d : tensor<4xf32>
    return %d
  }
}
"""


def module() -> Module:
    return parse(SOURCE)


# -- passes that break, registered only in these tests ----------------------------------------
@dataclass(frozen=True)
class Explode:
    name = "explode"
    message: str = "boom"

    def run(self, module: Module) -> Module:
        raise RuntimeError(self.message)


@dataclass(frozen=True)
class BreakTypes:
    """Gives the first op a result type its operands do not produce: only the verifier can tell."""

    name = "break-types"

    def run(self, module: Module) -> Module:
        r = module.funcs[0].ops[0].results[0]
        r.type = r.type.with_shape((2, 2))
        return module


@dataclass(frozen=True)
class Count:
    name = "count"

    def run(self, module: Module, stats: Counter | None = None) -> Module:
        stats["ops seen"] += sum(len(f.ops) for f in module.funcs)
        return module


@pytest.fixture
def broken_passes():
    register_pass("explode", Explode)
    register_pass("break-types", f"{__name__}:BreakTypes")  # the lazy-import form
    register_pass("count", Count)
    yield
    for name in ("explode", "break-types", "count"):
        unregister_pass(name)


# -- registry and pipeline strings --------------------------------------------------------------
def test_available_passes() -> None:
    assert {"canonicalize", "cse", "dce", "fold"} <= set(available_passes())
    assert [p.name for p in parse_pipeline(DEFAULT_PIPELINE)] == ["canonicalize", "fold", "cse", "dce"]


def test_pipeline_with_options() -> None:
    passes = parse_pipeline(" canonicalize , fold{max-elements=16 canonicalize=false},dce")
    assert [p.name for p in passes] == ["canonicalize", "fold", "dce"]
    assert passes[1].max_elements == 16 and passes[1].canonicalize is False
    # Commas separate options too, and the canonical form drops defaults and round-trips.
    assert parse_pipeline("fold{max-elements=8, canonicalize=true}")[0].max_elements == 8
    assert format_pipeline(passes) == "canonicalize,fold{max-elements=16 canonicalize=false},dce"
    assert format_pipeline(parse_pipeline(format_pipeline(passes))) == format_pipeline(passes)
    assert parse_pipeline("") == [] and parse_pipeline("  ") == []


def test_list_pipeline_mixes_strings_and_instances() -> None:
    pm = PassManager(["canonicalize,cse", Count(), "dce"])
    assert [p.name for p in pm.passes] == ["canonicalize", "cse", "count", "dce"]


@pytest.mark.parametrize(
    "pipeline, message",
    [
        (
            "canonicalize,cannonicalize",
            "unknown pass 'cannonicalize' (did you mean 'canonicalize'?); available passes: canonicalize, cost, "
            "cse, dce, fold, memplan, partition, place, route, tile",
        ),
        ("fold{max-elems=3}", "pass 'fold' has no option 'max-elems'; valid options: max-elements, canonicalize"),
        ("dce{verbose=true}", "pass 'dce' has no option 'verbose'; valid options: none"),
        ("fold{max-elements=lots}", "option 'max-elements' of pass 'fold' must be an integer, got 'lots'"),
        ("fold{canonicalize=maybe}", "option 'canonicalize' of pass 'fold' must be true or false, got 'maybe'"),
        ("fold{max-elements=1 max-elements=2}", "option 'max-elements' of pass 'fold' is given twice"),
        ("fold{max-elements=1", 'unbalanced braces in pipeline "fold{max-elements=1"'),
        ("fold{max-elements}", "malformed options \"max-elements\" for pass 'fold'; expected name=value"),
        ("cse dce", 'malformed pipeline element "cse dce" in "cse dce"'),
    ],
)
def test_pipeline_errors(pipeline: str, message: str) -> None:
    with pytest.raises(PipelineError) as e:
        PassManager(pipeline)
    assert str(e.value) == message
    assert isinstance(e.value, WaferError)


def test_print_ir_after_unknown_pass_is_an_error() -> None:
    with pytest.raises(PipelineError, match="unknown pass 'csee'"):
        PassManager("cse", print_ir_after={"csee"})


def test_register_pass_refuses_duplicates_and_bad_targets() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_pass("dce", "wafercc.passes.dce:DCE")
    with pytest.raises(ValueError, match="module:Class"):
        register_pass("nope", "wafercc.passes.dce.DCE")


# -- running ------------------------------------------------------------------------------------
def test_run_pipeline_runs_the_passes() -> None:
    text = print_module(run_pipeline(module(), DEFAULT_PIPELINE))
    assert "clone" not in text and "%dead" not in text
    assert text.count("relu") == 1


def test_input_is_verified() -> None:
    bad = module()
    bad.funcs[0].ops[1].results[0].type = bad.funcs[0].ops[1].results[0].type.with_shape((5,))
    with pytest.raises(VerifyError, match=r"'relu' \(%b\).*result-type"):
        run_pipeline(bad, "dce")


def test_print_ir_after_all() -> None:
    out = io.StringIO()
    m = run_pipeline(module(), "canonicalize,cse", print_ir_after_all=True, stream=out)
    text = out.getvalue()
    headers = re.findall(r"^// -----// IR Dump After (\S+) //----- //$", text, re.MULTILINE)
    assert headers == ["canonicalize", "cse"]
    # Each dump is the module text right after its pass; the last one is the result.
    assert text.endswith(print_module(m))
    dump = text.split("//----- //\n")[1].split("// -----//")[0]
    assert "clone" not in dump and dump.count("relu") == 2
    parse(dump)


def test_print_ir_after_selected_and_after_change() -> None:
    out = io.StringIO()
    run_pipeline(module(), "canonicalize,cse,dce", print_ir_after={"dce"}, stream=out)
    assert re.findall(r"IR Dump After (\S+)", out.getvalue()) == ["dce"]
    out = io.StringIO()
    # The second canonicalize and the second dce change nothing, so they print nothing.
    run_pipeline(module(), "canonicalize,canonicalize,dce,dce", print_ir_after_change=True, stream=out)
    assert re.findall(r"IR Dump After (\S+)", out.getvalue()) == ["canonicalize", "dce"]


def test_time_passes_and_statistics(broken_passes) -> None:
    out = io.StringIO()
    pm = PassManager("count,canonicalize,cse,dce", time_passes=True, stream=out)
    pm.run(module())
    lines = out.getvalue().splitlines()
    assert "wall ms" in lines[1] and "ops after" in lines[1]
    rows = {line.split()[0]: line.split() for line in lines[2:7]}
    assert list(rows) == ["count", "canonicalize", "cse", "dce", "total"]
    assert [rows[n][3] for n in ("count", "canonicalize", "cse", "dce")] == ["5", "4", "3", "2"]
    assert rows["total"][2] == "100.0%"
    assert sum(float(rows[n][2].rstrip("%")) for n in ("count", "canonicalize", "cse", "dce")) == pytest.approx(
        100, abs=0.5
    )
    assert pm.stats == {
        "count": {"ops seen": 5},
        "canonicalize": {"same_type_identity(clone)": 1},
        "cse": {"ops merged": 1},
        "dce": {"ops removed": 1},
    }
    stats_text = out.getvalue().split("statistics --===\n")[1]
    assert re.search(r"^  cse\s+ops merged\s+1$", stats_text, re.MULTILINE)


def test_no_output_unless_asked(capsys) -> None:
    run_pipeline(module(), DEFAULT_PIPELINE)
    assert capsys.readouterr() == ("", "")


def test_dumps_go_to_stderr_by_default(capsys) -> None:
    run_pipeline(module(), "dce", print_ir_after_all=True)
    assert capsys.readouterr().err.startswith("// -----// IR Dump After dce //----- //\n")


# -- failures and reproducers --------------------------------------------------------------------
def test_exception_in_pass_is_attributed(broken_passes) -> None:
    with pytest.raises(PassFailure) as e:
        run_pipeline(module(), "canonicalize,explode,dce")
    assert str(e.value) == "pass 'explode' failed: RuntimeError: boom (an internal error in wafercc)"
    assert e.value.pass_name == "explode" and e.value.reproducer is None
    assert isinstance(e.value.__cause__, RuntimeError)


def test_verifier_failure_after_pass_is_attributed(broken_passes) -> None:
    with pytest.raises(PassFailure) as e:
        run_pipeline(module(), "canonicalize,break-types,dce")
    message = str(e.value)
    assert message.startswith("pass 'break-types' produced invalid IR: 'relu' (%b)")
    assert "[result-type]" in message
    # Without verify_each the broken IR goes through unnoticed: that is what the option is for.
    run_pipeline(module(), "canonicalize,break-types,dce", verify_each=False)


def test_reproducer_header_and_replay(broken_passes, tmp_path: Path) -> None:
    with pytest.raises(PassFailure) as e:
        run_pipeline(module(), "canonicalize,break-types,fold{max-elements=3},dce", reproducer_dir=tmp_path)
    repro = tmp_path / "repro.wir"
    assert e.value.reproducer == repro
    assert str(e.value).endswith(f"reproducer written to {repro}")
    text = repro.read_text()
    lines = text.splitlines()
    assert lines[0] == '// wafercc reproducer: pipeline = "break-types,fold{max-elements=3},dce"'
    assert lines[1].startswith("// failed in pass 'break-types': 'relu' (%b)")
    # The IR is the module as it was before the failing pass: after canonicalize.
    assert "\n".join(lines[2:]) + "\n" == print_module(run_pipeline(module(), "canonicalize"))
    assert list(tmp_path.iterdir()) == [repro]  # no temp file left behind
    # Replaying the reproducer fails the same way.
    pipeline = read_reproducer_pipeline(text)
    assert pipeline == "break-types,fold{max-elements=3},dce"
    with pytest.raises(PassFailure) as again:
        run_pipeline(parse(text), pipeline)
    assert str(again.value) == str(e.value).split("\nreproducer")[0]


def test_reproducer_goes_to_a_new_temporary_folder_by_default(broken_passes, tmp_path: Path, monkeypatch) -> None:
    """`wafercc opt`'s default: never into a folder the user did not name; the message names the file."""
    from wafercc.passes.manager import TEMP_DIR

    monkeypatch.chdir(tmp_path)
    with pytest.raises(PassFailure) as e:
        run_pipeline(module(), "explode", reproducer_dir=TEMP_DIR)
    assert list(tmp_path.iterdir()) == []
    written = e.value.reproducer
    assert written.name == "repro.wir" and written.parent.name.startswith("wafercc-repro-")
    assert str(e.value).endswith(f"reproducer written to {written}")


def test_reproducer_for_an_exception(broken_passes, tmp_path: Path) -> None:
    with pytest.raises(PassFailure):
        run_pipeline(module(), 'cse,explode{message="a, b {c}"}', reproducer_dir=tmp_path / "new" / "dir")
    text = (tmp_path / "new" / "dir" / "repro.wir").read_text()
    assert text.splitlines()[1] == "// failed in pass 'explode': RuntimeError: a, b {c} (an internal error in wafercc)"
    pipeline = read_reproducer_pipeline(text)
    assert pipeline == 'explode{message="a, b {c}"}'
    with pytest.raises(
        PassFailure, match=r"^pass 'explode' failed: RuntimeError: a, b \{c\} \(an internal error in wafercc\)$"
    ):
        run_pipeline(parse(text), pipeline)


def test_no_reproducer_when_the_pipeline_succeeds(tmp_path: Path) -> None:
    run_pipeline(module(), DEFAULT_PIPELINE, reproducer_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_read_reproducer_pipeline_without_header() -> None:
    assert read_reproducer_pipeline(SOURCE) is None
    assert read_reproducer_pipeline("// just a comment\n" + SOURCE) is None


def test_stats_are_per_run(broken_passes) -> None:
    pm = PassManager("count,count")
    pm.run(module())
    assert pm.stats == {"count": {"ops seen": 10}}  # a pass listed twice adds up
    pm.run(module())
    assert pm.stats == {"count": {"ops seen": 10}}
