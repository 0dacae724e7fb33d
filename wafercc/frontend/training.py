"""Capture a training model's joint forward + backward graph and import it as one WIR function.

A training model's forward returns a scalar loss for its example inputs (inputs and targets). The joint graph
is AOTAutograd's (``aot_export_module(..., trace_joint=True)``'s graph, flattened without its second trace:
``_export_joint``), under the backend's decompositions (the backward ops core ATen keeps whole written in ops
wafercc imports), so inference, the torch.compile backend and training share one import path.

Two things AOTAutograd's joint export does not do for us:

- **Tied weights.** ``aot_export_module`` requires every parameter to appear once (its docstring, rule 6); with
  a weight shared by two modules it lists both names and mislabels the outputs. So the model is wrapped in a
  module that owns each distinct parameter and buffer once (by identity) and calls the model with
  ``torch.func.functional_call`` binding every alias to it: a tied weight is one graph input, and autograd sums
  its two uses into one gradient output. Its WIR symbol is its first name (``named_parameters()``'s).
- **The loss label.** The signature's ``loss_output`` names the first graph output, a buffer update when there
  is one; the outputs' order is documented (buffer updates, then the user outputs, then the gradients), so
  positions are used instead.

Buffer mutations (batch norm's running statistics and step counter) are functional outputs of the joint graph:
the WIR function returns their new values and the runtime writes them back to the store.

**Meta-device models** (planned without weights, docs/models.md): AOTAutograd's joint export of meta tensors
fails ("Found a parameter that did not receive a gradient", torch 2.13), although eager autograd on meta
works. So a model with a parameter or buffer on the meta device is traced with fake CPU tensors of the same
shapes and dtypes in their place (one ``FakeTensorMode``, which the export then uses): no memory is allocated
and the graph is the one a CPU model gives. The weights keep their meta tensors, so the driver knows there is
no data to store.

**Scaled dot-product attention** is traced with its math backend (``sdpa_kernel(SDPBackend.MATH)``): its
product, softmax and product decompose before autograd, so the backward is made of ops wafercc imports (the
CPU kernel's own backward, ``_scaled_dot_product_flash_attention_for_cpu_backward``, is one opaque op).

The WIR function ``@forward`` returns ``(loss, gradients..., buffer updates...)`` and carries two attributes
saying what each result is (docs/wir.md, "Training modules")::

    func @forward(%x: ..., %y: ...) -> (tensor<f32>, tensor<32x12xf32>, ...)
        attributes {train.roles = ["loss", "grad", ..., "update"], train.targets = [none, @fc1.weight, ...]}
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import torch
import torch.fx

from wafercc.errors import CaptureError
from wafercc.ir import SymbolRef
from wafercc.ir.training import ROLES_ATTR, TARGETS_ATTR

from .capture import Captured, WeightSource, _explain_capture_failure, _quiet_torch_logs
from .importer import ImportResult, import_graph

_RANDOM = ("native_dropout", "bernoulli", "rand", "randn", "randint", "randperm", "normal", "uniform")


class _Joint(torch.nn.Module):
    """The model with each distinct parameter and buffer registered once (``p0``, ``b3``...); forward binds
    every name of the model (aliases included) to them and returns the loss as a 1-tuple, as
    aot_export_module wants."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        object.__setattr__(self, "model", model)  # not a submodule: its parameters are ours, once each
        self.bindings: dict[str, str] = {}
        self.names: dict[str, str] = {}  # our attribute -> the model's first name for it
        self.kinds: dict[str, str] = {}
        self.originals: dict[str, torch.Tensor] = {}  # our attribute -> the model's tensor (meta stays meta)
        seen: dict[int, str] = {}
        for kind, items in (
            ("parameter", model.named_parameters(remove_duplicate=False)),
            ("buffer", model.named_buffers(remove_duplicate=False)),
        ):
            for name, t in items:
                if id(t) not in seen:
                    seen[id(t)] = attr = f"{kind[0]}{len(seen)}"
                    if kind == "parameter":
                        self.register_parameter(attr, t)
                    else:
                        self.register_buffer(attr, t)
                    self.names[attr], self.kinds[attr] = name, kind
                    self.originals[attr] = t
                self.bindings[name] = seen[id(t)]

    def on_meta(self) -> bool:
        return any(t.device.type == "meta" for t in self.originals.values())

    def fake_state(self, fake) -> None:
        """Put ``fake(t)`` in place of every parameter and buffer (the model's own tensors stay untouched)."""
        for attr in self.originals:
            if attr in self._parameters:
                p = self._parameters[attr]
                self._parameters[attr] = torch.nn.Parameter(fake(p), requires_grad=p.requires_grad)
            else:
                self._buffers[attr] = fake(self._buffers[attr])

    def forward(self, *inputs):
        state = {name: getattr(self, attr) for name, attr in self.bindings.items()}
        return (torch.func.functional_call(self.model, state, inputs, tie_weights=False),)


def check_training_model(model: torch.nn.Module) -> None:
    """Refuse what cannot match eager training: dropout with p > 0 (eager's random stream), a model without
    trainable parameters."""
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0:
            raise CaptureError(
                f"the training model has dropout with p={m.p} at '{name or 'model'}' ({type(m).__name__}): "
                "wafercc cannot reproduce eager PyTorch's random numbers, so the run could not be verified; "
                "set p=0 for training with wafercc (e.g. build the model with dropout=0.0)"
            )
    if not any(p.requires_grad for p in model.parameters()):
        raise CaptureError("the training model has no trainable parameters (none requires grad)")


def capture_training(model: torch.nn.Module, example_inputs: tuple) -> tuple[Captured, list[str], list[str]]:
    """The joint graph as a ``Captured`` whose outputs are (loss, gradients..., buffer updates...), with each
    output's role ("loss", "grad", "update") and the model name of the weight it belongs to ("" for the loss)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from .autograd_decompositions import decompositions

    if not isinstance(model, torch.nn.Module):
        raise CaptureError(f"expected an nn.Module to train, got {type(model).__name__}")
    example_inputs = _as_tuple(example_inputs)
    check_training_model(model)
    model.train()
    frozen = [p for p in model.parameters() if not p.requires_grad]
    if frozen:
        raise CaptureError(
            f"the training model has {len(frozen)} parameter(s) with requires_grad=False; wafercc trains every "
            "parameter (register fixed tensors as buffers)"
        )
    joint = _Joint(model)
    fake_mode = contextlib.nullcontext()
    if joint.on_meta():
        example_inputs, fake_mode = _fake_meta(joint, example_inputs)
    try:
        with warnings.catch_warnings(), _quiet_torch_logs(), sdpa_kernel(SDPBackend.MATH), fake_mode:
            warnings.simplefilter("ignore")
            gm, sig = _export_joint(joint, example_inputs, decompositions())
    except Exception as e:  # torch raises many types here; all mean "cannot capture"
        raise _training_capture_error(e) from None
    _check_no_random(gm)
    return _captured(gm, sig, joint, example_inputs)


def _export_joint(joint: _Joint, example_inputs: tuple, decompositions: dict):
    """``aot_export_module(joint, example_inputs, trace_joint=True, output_loss_index=0)``'s graph and signature,
    without its second trace. torch traces the joint graph once (AOTAutograd's ``(primals, tangents) ->
    (outputs, gradients)`` form), then traces that graph again through ``make_fx`` only to drop the unused
    tangent inputs, the pytrees and the None gradients; for the 1T GPT that second trace re-dispatched every one
    of its 52,000 ops through fake tensors (a third of the capture). Here the flat graph is made from the first
    one by copying its nodes (``_flat_joint``): the same ops, names and order (the second trace added only dead
    ``detach`` nodes, which import to nothing); tests/training/test_joint_export.py compares the two imports."""
    import torch.utils._pytree as pytree
    from torch._functorch._aot_autograd.graph_capture_wrappers import create_functional_call
    from torch._functorch._aot_autograd.input_output_analysis import create_graph_signature
    from torch._functorch.aot_autograd import _aot_export_function

    named_parameters = dict(joint.named_parameters(remove_duplicate=False))
    named_buffers = dict(joint.named_buffers(remove_duplicate=False))
    state, state_spec = pytree.tree_flatten({**named_parameters, **named_buffers})
    functional_call = create_functional_call(joint, state_spec, len(state), store_orig_mod=True)

    def loss_of(*args):  # aot_export_module's checks of the loss (output_loss_index=0), in its words
        out = functional_call(*args)
        if not out[0].requires_grad:
            raise RuntimeError("The output at index 0 was marked as the loss, but it does not require gradients")
        if out[0].numel() != 1:
            raise RuntimeError(
                f"We require the output marked as the loss (at index 0) to be a scalar, but it has shape {out[0].shape}"
            )
        return out

    full_args = (*state, *example_inputs)
    joint_gm, metadata, in_spec, out_spec = _aot_export_function(
        loss_of,
        full_args,
        decompositions=decompositions,
        num_params_buffers=len(state),
        no_tangents=True,
        trace_joint=True,
    )
    n_fw = 1 + metadata.num_mutated_inp_runtime_indices  # buffer updates, then the loss
    gm = _flat_joint(joint_gm, full_args, n_fw)
    sig = create_graph_signature(
        gm,
        metadata,
        in_spec,
        out_spec,
        user_args_flat=list(example_inputs),
        params_and_buffers_flat=list(state),
        param_names=list(named_parameters),
        buffer_names=list(named_buffers),
        trace_joint=True,
        num_user_fw_outs=1,
        loss_index=0,
    )
    return gm, sig


def _flat_joint(joint_gm: torch.fx.GraphModule, args: tuple, n_fw: int) -> torch.fx.GraphModule:
    """AOTAutograd's joint graph ``(primals, tangents) -> [*forward outputs, *gradient per primal]``, edited
    in place into the graph aot_export_module returns: one input per primal (``arg{i}_1``, as its trace names
    them), the forward outputs, then the gradient of each primal that requires one. The tangents must be
    unused (the loss is a scalar seeded with 1: ``no_tangents``). Only the inputs and the output change; every
    other node stays as the trace made it."""
    graph = joint_gm.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    primals, tangents = placeholders[: len(args)], placeholders[len(args) :]
    if len(primals) != len(args) or any(t.users for t in tangents):
        raise RuntimeError(f"unexpected joint graph inputs: {len(placeholders)} for {len(args)} arguments")
    output = graph.output_node()
    flat = list(output.args[0])
    fw_outs, gradients = flat[:n_fw], flat[n_fw:]
    if len(gradients) != len(args):
        raise RuntimeError(f"the joint graph has {len(gradients)} gradient slots for {len(args)} inputs")
    outs = list(fw_outs)
    for a, grad in zip(args, gradients):
        if isinstance(a, torch.Tensor) and a.requires_grad:
            if grad is None:
                raise RuntimeError("Found a parameter that did not receive a gradient.")
            outs.append(grad)
        elif grad is not None:
            raise RuntimeError("a gradient for an input that does not require one")
    for t in tangents:
        graph.erase_node(t)
    for i, p in enumerate(primals):
        p._rename(f"arg{i}_1")
        p.target = p.name  # a placeholder's target is its argument's name
    output.args = (tuple(outs),)
    graph._codegen = torch.fx.graph.CodeGen()  # flat inputs and outputs: no pytree (un)flattening
    joint_gm.recompile()
    return joint_gm


def _fake_meta(joint: _Joint, example_inputs: tuple):
    """A meta-device model's state and inputs as fake CPU tensors of one FakeTensorMode, and the mode (see the
    module's docstring); non-fake tensors the model makes during the trace (an arange's positions) are
    allowed. The export runs inside the mode: the joint trace's tensors made from no tensor (the embedding
    backward's zeros of the table's shape, 5 GB for the 1T model) would otherwise be real."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=True)

    def fake(t: torch.Tensor) -> torch.Tensor:
        with mode:
            return torch.empty(t.shape, dtype=t.dtype, device="cpu")

    joint.fake_state(fake)
    return tuple(fake(x) for x in example_inputs), mode


def _as_tuple(example_inputs) -> tuple:
    if not isinstance(example_inputs, tuple):
        example_inputs = tuple(example_inputs) if isinstance(example_inputs, list) else (example_inputs,)
    for i, x in enumerate(example_inputs):
        if not isinstance(x, torch.Tensor):
            raise CaptureError(f"example input #{i} is a {type(x).__name__}; wafercc trains functions of tensors")
    return example_inputs


def _training_capture_error(e: Exception) -> CaptureError:
    text = str(e)
    if "loss" in text and ("scalar" in text or "does not require gradients" in text):
        return CaptureError(
            "a training model's forward must return one scalar loss that depends on its parameters "
            f"(docs/models.md, training models); torch says: {text.strip().splitlines()[0]}"
        )
    if "did not receive a gradient" in text:
        return CaptureError("a parameter of the training model is not used by the loss: it would get no gradient")
    return CaptureError(_explain_capture_failure("AOTAutograd's joint export", e))


def _check_no_random(gm: torch.fx.GraphModule) -> None:
    for n in gm.graph.nodes:
        if n.op == "call_function" and any(r == str(n.target).split(".")[1] for r in _RANDOM if "." in str(n.target)):
            raise CaptureError(
                f"the training graph draws random numbers ({n.target}), as dropout with p > 0 does; wafercc "
                "cannot reproduce eager PyTorch's random stream: pass p=0 (or training=False) to the dropout"
            )


def _captured(gm, sig, joint: _Joint, example_inputs: tuple) -> tuple[Captured, list[str], list[str]]:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    n_state = len(sig.parameters) + len(sig.buffers)
    weights = {}
    for node, attr in zip(placeholders, [*sig.parameters, *sig.buffers]):
        tensor = joint.originals[attr]
        weights[node] = WeightSource(joint.names[attr], joint.kinds[attr], tensor.detach())
    for node in gm.graph.nodes:  # tensors the forward makes from constants (HF's torch.tensor(...)), lifted
        if node.op == "get_attr":  # by the trace as _tensor_constant<i>: read-only weights, as the fx capture
            tensor = functools.reduce(getattr, node.target.split("."), gm)
            if isinstance(tensor, torch.Tensor):
                weights[node] = WeightSource(node.target, "constant", tensor.detach())
    inputs = placeholders[n_state:]
    out = list(next(n for n in gm.graph.nodes if n.op == "output").args[0])
    updates = list(sig.buffers_to_mutate.items())  # output name -> buffer attr, in output order
    n_up = len(updates)
    loss = out[n_up]
    grads = out[n_up + 1 :]
    if len(grads) != len(sig.parameters):
        raise CaptureError(f"the joint graph has {len(grads)} gradients for {len(sig.parameters)} parameters")
    roles = ["loss"] + ["grad"] * len(grads) + ["update"] * n_up
    targets = [""] + [joint.names[p] for p in sig.parameters] + [joint.names[b] for _, b in updates]
    outputs = [loss, *grads, *out[:n_up]]
    names = _input_names(joint.model, len(inputs))
    return Captured(gm.graph, inputs, weights, outputs, "aot-joint", names), roles, targets


def _input_names(model: torch.nn.Module, n: int) -> list[str]:
    """The forward's parameter names (x, y...), as inference names its inputs; arg0... if they cannot be read."""
    import inspect

    try:
        params = [
            p.name
            for p in inspect.signature(model.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return params[:n] if len(params) >= n else [f"arg{i}" for i in range(n)]


def import_training(
    model: torch.nn.Module, example_inputs, name: str = "model", source: str | None = None
) -> ImportResult:
    """The joint graph in WIR: ``@forward`` returns (loss, gradients..., buffer updates...) and names what
    each result is in ``train.roles`` and ``train.targets`` (the weight symbol a gradient or update is for)."""
    captured, roles, targets = capture_training(model, example_inputs)
    imported = import_graph(captured, name=name, source=source)
    symbol_of = {src.name: sym for sym, src in imported.weights.items()}
    func = imported.module.func()
    missing = [t for t, r in zip(targets, roles) if r == "grad" and t not in symbol_of]
    if missing:
        raise CaptureError(f"parameter '{missing[0]}' is not used by the loss: it would get no gradient")
    func.attrs[ROLES_ATTR] = roles
    func.attrs[TARGETS_ATTR] = [SymbolRef(symbol_of[t]) if t else None for t in targets]
    return imported
