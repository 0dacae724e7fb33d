"""Capture an nn.Module as a core-ATen FX graph, by torch.export (default) or torch.fx.

Both paths end in the same ``Captured`` value: a graph of core-ATen ``call_function`` nodes whose
``meta["val"]`` holds the fake tensor of each result, the user-input nodes in order, the weight nodes
(parameters, buffers, constants) with their tensors, and the output nodes. The importer does not care
which path made it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import operator
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.fx
import torch.fx.traceback

from wafercc.errors import CaptureError

from . import aten_table
from .aten_table import CONVERTERS, IGNORED
from .decompose import core_table, decompose_unsupported, wafercc_decompositions


@dataclass
class WeightSource:
    name: str  # the fully qualified name in the model: "fc1.weight"
    kind: str  # "parameter" | "buffer" | "constant"
    tensor: torch.Tensor


@dataclass
class Captured:
    graph: torch.fx.Graph
    inputs: list[torch.fx.Node]
    weights: dict[torch.fx.Node, WeightSource]
    outputs: list[torch.fx.Node]
    method: str
    input_names: list[str] = field(default_factory=list)
    # ops the importer cannot take that no decomposition could rewrite: qualified name -> why (for the error)
    undecomposed: dict[str, str] = field(default_factory=dict)


def capture(model: torch.nn.Module, example_inputs: tuple, method: str = "export") -> Captured:
    if not isinstance(model, torch.nn.Module):
        raise CaptureError(f"expected an nn.Module to compile, got {type(model).__name__}")
    if not isinstance(example_inputs, tuple):
        example_inputs = tuple(example_inputs) if isinstance(example_inputs, list) else (example_inputs,)
    for i, x in enumerate(example_inputs):
        if not isinstance(x, torch.Tensor):
            raise CaptureError(
                f"example input #{i} is a {type(x).__name__}; wafercc compiles functions of tensors "
                "(bake other arguments into the model)"
            )
    if method not in ("export", "fx"):
        raise CaptureError(f"unknown capture method '{method}' (use 'export' or 'fx')")
    model = model.eval()
    with warnings.catch_warnings(), _quiet_torch_logs():
        # torch's own deprecation notices and failure logs during tracing say nothing the error will not.
        warnings.simplefilter("ignore")
        return _capture_export(model, example_inputs) if method == "export" else _capture_fx(model, example_inputs)


@contextlib.contextmanager
def _quiet_torch_logs():
    # torch configures levels on many of its child loggers, so quieting "torch" alone is not enough.
    names = ["torch"] + [n for n in logging.root.manager.loggerDict if n.startswith("torch.")]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL)
    sink = io.StringIO()  # torch also prints failing graphs directly; the CaptureError says what matters
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def _capture_export(model: torch.nn.Module, example_inputs: tuple) -> Captured:
    from torch.export.graph_signature import InputKind, OutputKind

    try:
        with torch.no_grad():
            ep = torch.export.export(model, example_inputs)
            ep = ep.run_decompositions(core_table())
    except Exception as e:  # torch raises many types here; all mean "cannot capture"
        raise CaptureError(_explain_capture_failure("torch.export", e)) from None
    # Ops the importer has no converter for (library custom ops, core ops such as histc): decompose them
    # where wafercc, torch or the op's own implementation knows how (frontend/decompose.py).
    with torch.no_grad():
        dec = decompose_unsupported(ep, _leave_to_importer)
    ep = dec.program
    sig = ep.graph_signature
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    inputs, weights = [], {}
    for spec in sig.input_specs:
        node = nodes[spec.arg.name]
        if spec.kind == InputKind.USER_INPUT:
            inputs.append(node)
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            tensor = ep.state_dict.get(spec.target)
            if tensor is None:
                tensor = ep.constants[spec.target]
            kind = {InputKind.PARAMETER: "parameter", InputKind.BUFFER: "buffer"}.get(spec.kind, "constant")
            weights[node] = WeightSource(spec.target, kind, tensor.detach())
        else:
            raise CaptureError(f"the exported program has an input of kind {spec.kind.name}, which wafercc cannot take")
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    flat = list(out_node.args[0])
    outputs = []
    for spec, n in zip(sig.output_specs, flat):
        if spec.kind == OutputKind.USER_OUTPUT:
            outputs.append(n)
        elif spec.kind == OutputKind.BUFFER_MUTATION:
            raise CaptureError(
                f"the model updates buffer '{spec.target}' in forward (batch norm in training mode?); "
                "wafercc compiles inference graphs: call model.eval()"
            )
    names = [n.name for n in inputs]
    return Captured(ep.graph, inputs, weights, outputs, "export", names, dec.failures)


def _capture_fx(model: torch.nn.Module, example_inputs: tuple) -> Captured:
    from torch._decomp import core_aten_decompositions
    from torch.fx.experimental.proxy_tensor import make_fx

    try:
        tracer = torch.fx.Tracer()
        tracer.record_stack_traces = True  # so each op can point at the line of the model that made it
        traced = torch.fx.GraphModule(tracer.root if hasattr(tracer, "root") else model, tracer.trace(model))
    except Exception as e:
        raise CaptureError(_explain_capture_failure("torch.fx.symbolic_trace", e)) from None
    arg_names = [n.name for n in traced.graph.nodes if n.op == "placeholder"]
    try:
        # Normalize the torch-level graph onto core ATen, the same ops torch.export produces. make_fx
        # runs the traced module with the example inputs, so every node gets its shape and dtype.
        # Running through an Interpreter under preserve_node_meta carries each fx node's stack trace
        # onto the ATen nodes it decomposes into.
        def run(*args):
            return torch.fx.Interpreter(traced).run(*args)

        with torch.no_grad(), torch.fx.traceback.preserve_node_meta():
            table = {**core_aten_decompositions(), **wafercc_decompositions(_leave_to_importer)}
            gm = make_fx(run, decomposition_table=table, tracing_mode="real")(*example_inputs)
    except Exception as e:
        raise CaptureError(_explain_capture_failure("make_fx (normalizing the fx graph to core ATen)", e)) from None
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    inputs, weights = [], {}
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            inputs.append(n)
        elif n.op == "get_attr":
            tensor = _get_attr(gm, n.target)
            name, kind = _weight_identity(n.target, tensor, params, buffers)
            weights[n] = WeightSource(name, kind, tensor.detach())
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    outputs = list(torch.utils._pytree.tree_leaves(out_node.args[0]))
    names = arg_names[: len(inputs)] if len(arg_names) >= len(inputs) else [n.name for n in inputs]
    return Captured(gm.graph, inputs, weights, outputs, "fx", names)


def importable(target) -> bool:
    """Whether the importer has a converter for (or deliberately drops) this FX call target."""
    return target in CONVERTERS or target in IGNORED or target is operator.getitem


def _leave_to_importer(target) -> bool:
    # what the importer takes, and what it refuses with a reason of its own (random numbers, data-dependent
    # shapes): a decomposition would only turn the reason into a less telling op
    return importable(target) or target in getattr(aten_table, "REFUSED", {})


def _get_attr(gm: torch.nn.Module, target: str) -> torch.Tensor:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _weight_identity(target: str, tensor: torch.Tensor, params: dict, buffers: dict) -> tuple[str, str]:
    # make_fx names lifted tensors _param_constant0 / _tensor_constant0; find them in the model by identity.
    for kind, table in (("parameter", params), ("buffer", buffers)):
        for name, t in table.items():
            if t is tensor or (t.data_ptr() == tensor.data_ptr() and t.shape == tensor.shape and t.data_ptr() != 0):
                return name, kind
    return target, "constant"


def _explain_capture_failure(tool: str, e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if len(first) > 300:
        first = first[:297] + "..."
    where = _user_frame(e)
    hint = ""
    low = str(e).lower()
    if "data-dependent" in low or "guardonDataDependent".lower() in low or "could not guard" in low:
        hint = (
            "\n  hint: the model branches on tensor values; make the branch depend on shapes or arguments "
            "(wafercc compiles static graphs)"
        )
    elif (
        tool.startswith("torch.fx") and "symbolically traced variables cannot be used as inputs to control flow" in low
    ):
        hint = (
            "\n  hint: the model branches on tensor values; neither capture can follow that: make the branch "
            "depend on shapes or module attributes"
        )
    elif "couldn't swap" in low:  # nn.Module._apply under export: `self.sub = self.sub.to(dtype)` in forward
        hint = (
            "\n  hint: the model converts or moves one of its modules (.to(), .float(), .half()) inside forward, "
            "which torch.export cannot trace; a module must keep its parameters while it is captured"
        )
    elif tool == "torch.export":
        hint = "\n  hint: if the model uses Python features torch.export cannot take, try --capture fx"
    return (
        f"cannot capture the model with {tool}: {type(e).__name__}: {first}"
        + (f"\n  at {where}" if where else "")
        + hint
    )


_WAFERCC_DIR = str(Path(__file__).resolve().parents[1]).replace("\\", "/") + "/"


def _user_frame(e: Exception) -> str | None:
    """The innermost frame of the traceback outside torch and wafercc: usually the line of the user's model
    (none when the failing code is one torch generated, as the fx Interpreter's)."""
    best = None
    for fs in traceback.extract_tb(e.__traceback__):
        name = fs.filename.replace("\\", "/")
        if "/torch/" not in name and not name.startswith(("<", _WAFERCC_DIR)):
            best = f"{fs.filename}:{fs.lineno}"
    return best
