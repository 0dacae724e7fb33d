"""torch.compile(backend="wafercc"): inference on the examples, graph breaks, recompiles, check=True naming
an injected wrong kernel, dump_dir, unsupported ops, aliasing and non-tensor outputs, bf16."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from runtime import KERNELS
from wafercc.backend import BackendCheckError, wafercc_backend
from wafercc.ir import WaferError

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve()


def line_of(text: str) -> int:
    return next(i for i, line in enumerate(HERE.read_text().splitlines(), 1) if text in line)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    scale = max(1.0, float(b.abs().max()))
    return a.shape == b.shape and a.dtype == b.dtype and bool(((a - b).abs() <= tol * scale + tol * b.abs()).all())


def test_the_entry_point_is_discoverable():
    assert "wafercc" in torch._dynamo.list_backends()
    from torch._dynamo.backends.registry import lookup_backend

    assert lookup_backend("wafercc") is wafercc_backend


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer_block"])
def test_inference_on_the_examples(example_models, name):
    model, inputs = example_models[name]
    compiled = torch.compile(model, backend="wafercc")
    with torch.no_grad():
        got = compiled(*inputs)
        again = compiled(*inputs)  # the second call reuses the compiled graph
        want = model(*inputs)
    assert isinstance(got, torch.Tensor) and close(got, want)
    assert torch.equal(got, again)


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.b = nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.a(x))
        torch._dynamo.graph_break()
        return torch.tanh(self.b(h))


def test_a_graph_break_compiles_each_piece(tmp_path):
    torch.manual_seed(0)
    model, x = Broken(), torch.randn(3, 8)
    compiled = torch.compile(model, backend="wafercc", options={"dump_dir": str(tmp_path)})
    with torch.no_grad():
        assert close(compiled(x), model(x))
    graphs = sorted(p.name for p in tmp_path.iterdir())
    assert len(graphs) == 2 and all(g.endswith("_inference") for g in graphs)


def test_a_new_shape_recompiles_through_the_guards(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.GELU())
    compiled = torch.compile(model, backend="wafercc", dynamic=False, options={"dump_dir": str(tmp_path)})
    with torch.no_grad():
        for batch in (2, 5, 2):
            x = torch.randn(batch, 8)
            assert close(compiled(x), model(x))
    assert len(list(tmp_path.iterdir())) == 2  # batch 2 again hits the first graph's guards


def test_symbolic_shapes_are_specialized_per_shape(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
    compiled = torch.compile(model, backend="wafercc", dynamic=True, options={"dump_dir": str(tmp_path)})
    with torch.no_grad():
        for batch in (3, 4, 3):
            x = torch.randn(batch, 8)
            assert close(compiled(x), model(x))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and all("_s" in n for n in names)  # one symbolic graph, two static specializations


class GeluMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        h = self.fc1(x)
        h = nn.functional.gelu(h)  # the op the check test breaks
        return self.fc2(h)


def test_check_names_the_first_diverging_op(monkeypatch):
    right = KERNELS["gelu"]
    monkeypatch.setitem(KERNELS, "gelu", lambda op, x: right(op, x) * np.float32(1.001))
    torch.manual_seed(0)
    compiled = torch.compile(GeluMLP(), backend="wafercc", options={"check": True})
    with torch.no_grad(), pytest.raises(BackendCheckError) as e:
        compiled(torch.randn(4, 8))
    d = e.value.divergence
    assert d is not None and d.target == "aten.gelu"
    assert d.loc.line == line_of("h = nn.functional.gelu(h)  # the op the check test breaks")
    msg = str(e.value)
    assert "first diverging op" in msg and "gelu" in msg and "the op the check test breaks" in msg
    assert not msg.startswith("error")


def test_check_passes_a_correct_model():
    torch.manual_seed(0)
    model = GeluMLP()
    compiled = torch.compile(model, backend="wafercc", options={"check": True})
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert close(compiled(x), model(x))


def test_dump_dir_keeps_each_graph(tmp_path):
    torch.manual_seed(0)
    model = GeluMLP()
    compiled = torch.compile(model, backend="wafercc", options={"dump_dir": str(tmp_path / "d"), "target": "wse3"})
    x = torch.randn(4, 8, requires_grad=True)
    compiled(x).sum().backward()
    graphs = {p.name.rsplit("_", 1)[1]: p for p in (tmp_path / "d").iterdir()}
    assert set(graphs) == {"forward", "backward"}
    for d in graphs.values():
        names = {p.name for p in d.iterdir()}
        assert {"model.wir", "plan.json", "report.txt", "graph.py"} <= names
        assert "gelu" in (d / "model.wir").read_text() or "gelu" in (d / "graph.py").read_text()
        assert json.loads((d / "plan.json").read_text())


class Unsupported(nn.Module):
    def forward(self, x):
        return torch.fft.fft(x).real  # an op wafercc does not support


def test_an_unsupported_op_is_a_wafer_error_with_its_line():
    compiled = torch.compile(Unsupported(), backend="wafercc")
    with torch.no_grad(), pytest.raises(WaferError) as e:
        compiled(torch.randn(4, 8))
    msg = str(e.value)
    assert "fft" in msg and f"test_backend.py:{line_of('torch.fft.fft(x).real')}" in msg
    assert "torch.compiler.disable" in msg


@torch.compiler.disable
def spectrum(x):
    return torch.fft.fft(x).abs()


def test_torch_compiler_disable_runs_an_unsupported_part_eagerly():
    def f(x):
        return torch.relu(spectrum(torch.tanh(x)) - 1)

    x = torch.randn(4, 8)
    assert close(torch.compile(f, backend="wafercc")(x), f(x))


def test_bad_options_are_usage_errors():
    compiled = torch.compile(GeluMLP(), backend="wafercc", options={"targt": "wse2"})
    with pytest.raises(WaferError, match="unknown wafercc backend option.*'targt'"):
        compiled(torch.randn(4, 8))


def test_aliased_constant_and_non_tensor_outputs():
    def f(x, y):
        return x, x + y, y.shape[0], None

    compiled = torch.compile(f, backend="wafercc", dynamic=False)
    x, y = torch.randn(3), torch.randn(3)
    a, b, n, none = compiled(x, y)
    assert a is x or torch.equal(a, x)
    assert close(b, x + y) and n == 3 and none is None


def test_a_graph_without_ops_returns_its_inputs():
    def f(x):
        return x.view(-1)

    compiled = torch.compile(f, backend="wafercc")
    x = torch.randn(2, 3)
    assert torch.equal(compiled(x), x.view(-1))


def test_bf16():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).to(torch.bfloat16)
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    compiled = torch.compile(model, backend="wafercc", options={"check": True})
    with torch.no_grad():
        got, want = compiled(x), model(x)
    assert got.dtype == torch.bfloat16 and close(got.float(), want.float(), tol=2e-2)


def test_torch_compile_mode_is_refused_with_the_wafer_mode_named():
    compiled = torch.compile(GeluMLP(), backend="wafercc", mode="reduce-overhead")
    with pytest.raises(WaferError, match="options=\\{'mode': 'stream' \\| 'pipeline'\\}"):
        compiled(torch.randn(4, 8))


_PLANNED_RUNS: list[bool] = []


@pytest.fixture
def record_plan_mode(monkeypatch):
    """Which way each runtime interpreter the backend builds runs: following the plan or at graph level."""
    import runtime as rt

    real = rt.Interpreter

    def interpreter(*args, **kwargs):
        interp = real(*args, **kwargs)
        _PLANNED_RUNS.append(bool(interp.plan))
        return interp

    monkeypatch.setattr(rt, "Interpreter", interpreter)


@pytest.mark.usefixtures("record_plan_mode")
@pytest.mark.parametrize(
    "options",
    [{"mode": "pipeline", "target": "wse3"}, {"precision": "bf16", "check": True}, {"plan": True}, {"plan": False}],
)
def test_options_reach_the_plan_and_the_runtime(options, tmp_path):
    torch.manual_seed(0)
    model = GeluMLP()
    compiled = torch.compile(model, backend="wafercc", options={**options, "dump_dir": str(tmp_path)})
    x = torch.randn(4, 8)
    with torch.no_grad():
        got, want = compiled(x), model(x)
    assert close(got, want, tol=2e-2 if options.get("precision") == "bf16" else 1e-5)
    assert _PLANNED_RUNS[-1] == options.get("plan", options.get("check", False))
    (graph,) = tmp_path.iterdir()
    wir = (graph / "model.wir").read_text()
    assert f'mode = "{options.get("mode", "stream")}"' in wir and f'target = "{options.get("target", "wse2")}"' in wir


def test_repeat_calls_reuse_the_compiled_graph(monkeypatch):
    import wafercc.backend.graph as graph

    planned = []
    plan_module = graph.plan_module
    monkeypatch.setattr(graph, "plan_module", lambda *a, **k: planned.append(1) or plan_module(*a, **k))
    torch.manual_seed(0)
    model = GeluMLP()
    compiled = torch.compile(model, backend="wafercc")
    x = torch.randn(4, 8)
    with torch.no_grad():
        outs = [compiled(x) for _ in range(3)]
    assert len(planned) == 1 and all(torch.equal(o, outs[0]) for o in outs)
