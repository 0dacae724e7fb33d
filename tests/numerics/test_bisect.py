"""compare_model and bisect through Python: a deliberately wrong kernel is named with its source line;
a correct model reports no divergence; FX nodes pair with the values the importer made for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime import KERNELS
from wafercc.numerics.bisect import bisect_model, import_with_pairs, pair_by_names
from wafercc.numerics.eager import compare_model

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests" / "numerics" / "models" / "gelu_mlp.py"


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.fixture(scope="module")
def gelu_mlp():
    from wafercc.frontend import load_model_file

    return load_model_file(MODEL)


@pytest.fixture
def wrong_gelu(monkeypatch):
    right = KERNELS["gelu"]

    def gelu(op, x):  # 0.1% too large: far beyond f32's tolerance, invisible to a glance
        return right(op, x) * np.float32(1.001)

    monkeypatch.setitem(KERNELS, "gelu", gelu)


def test_bisect_names_the_wrong_kernel_and_its_line(gelu_mlp, wrong_gelu):
    r = bisect_model(*gelu_mlp, cwd=str(ROOT))
    d = r.first
    assert d is not None and d.op.startswith("%gelu = gelu %addmm")
    assert (d.loc.file, d.loc.line) == ("tests/numerics/models/gelu_mlp.py", line_of(MODEL, "gelu(h)"))
    assert d.source_line == "h = nn.functional.gelu(h)  # the op the tests break"
    assert d.node == "gelu" and d.target == "aten.gelu"
    c = d.comparison
    assert not c.passed and c.max_abs > 0 and c.worst is not None
    assert c.actual_at == pytest.approx(c.expected_at * 1.001, rel=1e-5)
    assert r.diverged > 1 and r.roots == [d]  # everything after it is downstream
    assert "first diverging op" in r.text() and "all downstream of it" in r.text()


def test_bisect_without_divergence(gelu_mlp):
    r = bisect_model(*gelu_mlp, cwd=str(ROOT))
    assert r.first is None and r.diverged == 0 and r.compared >= 8 and r.pairing == "importer"
    assert r.text().endswith("no divergence: every compared value matches within the tolerance")


def test_bisect_names_an_op_the_runtime_cannot_execute(gelu_mlp, monkeypatch):
    def broken(op, *args):
        raise FloatingPointError("broken on purpose")

    monkeypatch.setitem(KERNELS, "layer_norm", broken)
    d = bisect_model(*gelu_mlp, cwd=str(ROOT)).first
    assert d.comparison is None and "broken on purpose" in d.error
    assert "layer_norm" in d.op and d.loc.line == line_of(MODEL, "self.norm(h)")


def test_verify_model_mismatch_runs_bisect(gelu_mlp, wrong_gelu):
    v = compare_model(*gelu_mlp, source=str(MODEL))
    assert not v.passed and not v.outputs[0].comparison.passed
    assert v.bisect is not None and v.bisect.first.loc.line == line_of(MODEL, "gelu(h)")


def test_verify_model_match_with_seeded_inputs(gelu_mlp):
    v = compare_model(*gelu_mlp, seed=7)
    assert v.passed and v.bisect is None and v.inputs_from == "seeded random inputs (seed 7)"
    c = v.outputs[0].comparison
    assert c.shape == (4, 8) and c.dtype == "float32" and c.pcc > 0.999999


def test_importer_pairing_is_exact_where_names_are_not(gelu_mlp):
    # torch.add(h, y, alpha=0.5) imports as a mul named %add and then the add: a name would pair the mul.
    from wafercc.frontend import capture

    captured = capture(*gelu_mlp)
    imported, pairs, how = import_with_pairs(captured)
    values = {r.name: r for op in imported.module.func().ops for r in op.results}
    by_node = {node: name for name, (node, _) in pairs.items()}
    assert how == "importer" and values[by_node["add"]].owner.name == "add"
    assert values["add"].owner.name == "mul" and pair_by_names(captured, imported.module)["add"] == ("add", None)
