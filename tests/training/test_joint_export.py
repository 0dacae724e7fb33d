"""The joint capture's own flattening (frontend/training.py ``_export_joint``) against torch's
``aot_export_module(..., trace_joint=True)``, which traces the joint graph a second time to flatten it: the same
ops with the same names, arguments and shapes in the same order (torch's second trace only adds dead ``detach``
nodes), the same signature, and so byte-identical WIR, on models covering tied weights, buffer updates, the
convolution and pooling backwards, attention and a meta-device model."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from wafercc.frontend import training
from wafercc.frontend.autograd_decompositions import decompositions
from wafercc.frontend.loader import load_model_file
from wafercc.ir import print_module

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _torch_export(joint, example_inputs, table):
    from torch._functorch.aot_autograd import aot_export_module

    return aot_export_module(joint, example_inputs, trace_joint=True, output_loss_index=0, decompositions=table)


def _graphs(model, example_inputs):
    """(ours, torch's): each the joint graph module and signature, from the same fake or real state."""
    out = []
    for export in (training._export_joint, _torch_export):
        joint = training._Joint(model)
        inputs, mode = tuple(example_inputs), contextlib.nullcontext()
        if joint.on_meta():
            inputs, mode = training._fake_meta(joint, inputs)
        with sdpa_kernel(SDPBackend.MATH), mode:
            out.append(export(joint, inputs, decompositions()))
    return out


def _nodes(gm):
    def show(a):
        return torch.fx.node.map_arg(a, lambda n: n.name)

    rows = []
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target is torch.ops.aten.detach.default and not n.users:
            continue  # torch's second trace records a dead detach where autograd saved an output
        val = n.meta.get("val")
        shape = (tuple(val.shape), val.dtype) if isinstance(val, torch.Tensor) else None
        rows.append((n.op, n.name, str(n.target), str(show(n.args)), str(show(n.kwargs)), shape))
    return rows


def _small_gpt():
    saved = {k: os.environ.get(k) for k in ("GPT_CONFIG", "GPT_LAYERS")}
    os.environ.update(GPT_CONFIG="small", GPT_LAYERS="2")
    try:
        return load_model_file(EXAMPLES / "gpt_1t.py", train=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Tied(torch.nn.Module):
    """A tied embedding and head with batch norm between: one weight with a summed gradient, buffer updates."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 8)
        self.bn = torch.nn.BatchNorm1d(8)
        self.head = torch.nn.Linear(8, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids, labels):
        return torch.nn.functional.cross_entropy(self.head(self.bn(self.emb(ids).mean(1))), labels)


def _tied():
    g = torch.Generator().manual_seed(0)
    return Tied(), (torch.randint(0, 10, (4, 3), generator=g), torch.randint(0, 10, (4,), generator=g))


MODELS = {
    "tied+batchnorm": _tied,
    "train_mlp": lambda: load_model_file(EXAMPLES / "train_mlp.py", train=True),
    "train_cnn": lambda: load_model_file(EXAMPLES / "train_cnn.py", train=True),
    "train_gpt": lambda: load_model_file(EXAMPLES / "train_gpt.py", train=True),
    "gpt_1t small, meta": _small_gpt,
}


@pytest.mark.parametrize("which", list(MODELS))
def test_flat_joint_graph_is_torchs(which):
    torch.manual_seed(0)
    model, example_inputs = MODELS[which]()
    (ours, our_sig), (theirs, their_sig) = _graphs(model, example_inputs)
    assert _nodes(ours) == _nodes(theirs)
    assert our_sig.parameters == their_sig.parameters
    assert our_sig.buffers == their_sig.buffers
    assert our_sig.buffers_to_mutate == their_sig.buffers_to_mutate
    assert our_sig.backward_signature.gradients_to_parameters == their_sig.backward_signature.gradients_to_parameters


@pytest.mark.parametrize("which", ["tied+batchnorm", "train_cnn", "gpt_1t small, meta"])
def test_imported_wir_is_byte_identical(which, monkeypatch):
    torch.manual_seed(0)
    model, example_inputs = MODELS[which]()
    ours = print_module(training.import_training(model, example_inputs, name="m").module)
    monkeypatch.setattr(training, "_export_joint", _torch_export)
    theirs = print_module(training.import_training(model, example_inputs, name="m").module)
    assert ours == theirs


def test_a_parameter_without_gradient_is_still_refused():
    from wafercc.errors import CaptureError

    class Unused(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(2, 2)
            self.b = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.a(x).sum()

    with pytest.raises(CaptureError, match="not used by the loss"):
        training.capture_training(Unused(), (torch.randn(2, 2),))
