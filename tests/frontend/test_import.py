"""The frontend on real models: every example and HF model imports, verifies and round-trips."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import EXAMPLES, ZOO
from wafercc.frontend import capture, import_graph
from wafercc.ir import parse, print_module
from wafercc.ops import verify


@pytest.mark.parametrize("name", EXAMPLES + ZOO)
def test_imports_verifies_and_round_trips(graph_modules, name):
    m = graph_modules[name].module
    verify(m)
    text = print_module(m)
    again = parse(text)
    assert again == m
    assert print_module(again) == text


@pytest.mark.parametrize("name", EXAMPLES + ZOO)
def test_weights_match_declarations(graph_modules, name):
    r = graph_modules[name]
    assert list(r.weights) == list(r.module.weights)
    for sym, src in r.weights.items():
        w = r.module.weights[sym]
        assert tuple(src.tensor.shape) == w.type.shape
        assert w.attrs["kind"] in ("parameter", "buffer", "constant")


def test_weights_stream_in_at_first_use(graph_modules):
    # weight.get ops appear in the order their layers run: fc1 before fc2 before fc3.
    ops = graph_modules["mlp"].module.func().ops
    syms = [op.attrs["symbol"].name for op in ops if op.name == "weight.get"]
    assert syms == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]


def test_locations_point_at_the_model_source(graph_modules):
    ops = graph_modules["mlp"].module.func().ops
    locs = {op.loc.file for op in ops if op.loc is not None}
    assert locs == {"examples/mlp.py"}
    addmm = [op for op in ops if op.name == "addmm"]
    assert len(addmm) == 3 and all(op.loc.line > 0 for op in addmm)


def test_library_locations_are_package_relative(graph_modules):
    files = {op.loc.file for op in graph_modules["gpt2"].module.func().ops if op.loc}
    assert any(f.startswith("transformers/models/gpt2/") for f in files), files
    assert not any("site-packages" in f for f in files)


def test_import_is_deterministic(example_models):
    model, inputs = example_models["gpt"]
    texts = {print_module(import_graph(capture(model, inputs), name="gpt").module) for _ in range(2)}
    assert len(texts) == 1


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer_block"])
def test_fx_capture_gives_the_same_ops(example_models, graph_modules, name):
    model, inputs = example_models[name]
    fx = import_graph(capture(model, inputs, "fx"), name=name).module
    verify(fx)
    exported = graph_modules[name].module
    assert [a.type for a in fx.func().args] == [a.type for a in exported.func().args]
    assert [v.type for v in fx.func().returns] == [v.type for v in exported.func().returns]
    # make_fx's batch-norm decomposition leaves dead empty tensors behind (DCE removes them).
    kinds = lambda m: sorted({op.name for op in m.func().ops if op.results[0].type.numel})  # noqa: E731
    assert kinds(fx) == kinds(exported)
    assert any(op.loc is not None for op in fx.func().ops), "fx capture keeps source locations"


def test_scalar_operands_follow_torch_promotion():
    class M(torch.nn.Module):
        def forward(self, i, f):
            return (i * 2.5, i + 1, f * 2, (i > 0) & (i < 3), f.half() * 2.0)

    m = import_graph(capture(M(), (torch.arange(4), torch.randn(4))), name="m").module
    verify(m)
    types = [str(v.type) for v in m.func().returns]
    assert types == ["tensor<4xf32>", "tensor<4xi64>", "tensor<4xf32>", "tensor<4xbool>", "tensor<4xf16>"]


def test_buffers_and_constants_become_weights():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("scale", torch.full((4,), 3.0))
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x) * self.scale

    r = import_graph(capture(M(), (torch.randn(2, 4),)), name="m")
    assert r.module.weights["scale"].attrs["kind"] == "buffer"
    assert r.module.weights["lin.weight"].attrs["kind"] == "parameter"


def test_inference_batch_norm_saved_stats_are_torchs_empty_tensors():
    """ATen's inference batch norm returns empty saved statistics; a model that returns them gets the same
    empty tensors, and one that does not gets no op for them."""
    from wafercc.numerics import compare_model

    stats = (torch.zeros(3), torch.ones(3), torch.randn(3), torch.randn(3))

    class Saved(torch.nn.Module):
        def forward(self, x):
            return torch.ops.aten.native_batch_norm(x, stats[2], stats[3], stats[0], stats[1], False, 0.1, 1e-5)

    x = torch.randn(2, 3, 4)
    v = compare_model(Saved(), (x,), bisect=False)
    assert v.passed, v.reason
    m = import_graph(capture(Saved(), (x,)), name="m").module
    assert [str(r.type) for r in m.func().returns][1:] == ["tensor<0xf32>", "tensor<0xf32>"]

    bn = torch.nn.BatchNorm1d(3).eval()
    m = import_graph(capture(bn, (x,)), name="m").module
    assert [op.name for op in m.func().ops if op.name == "full"] == []
