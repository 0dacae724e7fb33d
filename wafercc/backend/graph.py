"""One FX graph of core-ATen ops (what AOTAutograd hands a compiler) compiled for the wafer and run by the
reference runtime.

``CompiledGraph(gm, example_inputs, name, options)`` is a callable taking the arguments boxed
(``compiled(args_list)``, AOTAutograd's calling convention) or not, that converts the tensor arguments to numpy
without copying, runs the planned module in the runtime's interpreter (built once), and returns torch
tensors. The graph is imported directly (its placeholders become the WIR function's arguments: parameters
are inputs here, as AOTAutograd lifts them), so nothing is re-traced or re-exported.

A graph with symbolic shapes is specialized: the first call with each concrete shape re-traces it with
``make_fx`` on the real arguments and compiles that static graph (the wafer runs static graphs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import ml_dtypes
import numpy as np
import torch
import torch.fx
import torch.fx.traceback

import runtime
from runtime.artifacts import PLAN_FILE, REPORT_FILE
from wafercc.driver import STAGES, verify_module, write_output
from wafercc.errors import CaptureError
from wafercc.frontend import Captured, WeightSource, import_graph
from wafercc.frontend.interop import as_numpy_view, to_numpy
from wafercc.ir import Module, WaferError
from wafercc.mapping.report import format_report, plan_dict, plan_json
from wafercc.numerics.bisect import bisect_graph, import_with_pairs
from wafercc.numerics.compare import compare, tolerance_for
from wafercc.passes import DEFAULT_PIPELINE, PassManager

from .decompositions import decompositions
from .options import BackendOptions


class BackendCheckError(WaferError):
    """``check=True``: a graph's outputs in the runtime differ from eager PyTorch's. ``divergence`` is the
    bisection's first diverging op (``wafercc.numerics.bisect.Divergence``), or None."""

    def __init__(self, message: str, divergence=None):
        super().__init__(message)
        self.divergence = divergence


# -- building the Captured value from an ATen GraphModule -------------------------------------------------


@dataclass
class _Out:
    kind: str  # "computed" (an output of the runtime), "input" (a graph argument returned as is), "const"
    index: int = 0  # runtime output index, or argument index
    value: object = None  # the constant (None, an int...)


def _is_static(val) -> bool:
    return isinstance(val, torch.Tensor) and all(isinstance(d, int) for d in val.shape)


def captured_from_graph(gm: torch.fx.GraphModule) -> tuple[Captured, list[int], list[_Out]]:
    """The frontend's ``Captured`` for a static core-ATen graph: its tensor placeholders as inputs (their
    argument positions returned too), its get_attr tensors as constants, and how each of the graph's
    outputs is made."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    inputs, positions = _tensor_inputs(placeholders)
    weights = {}
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            obj = gm
            for part in n.target.split("."):
                obj = getattr(obj, part)
            if isinstance(obj, torch.Tensor):
                weights[n] = WeightSource(n.target, "constant", obj.detach())
    outputs, how = _outputs(gm, placeholders)
    names = [n.name for n in inputs]
    return Captured(gm.graph, inputs, weights, outputs, "aot", names), positions, how


def _tensor_inputs(placeholders: list[torch.fx.Node]) -> tuple[list[torch.fx.Node], list[int]]:
    inputs, positions = [], []
    for i, n in enumerate(placeholders):
        val = n.meta.get("val")
        if isinstance(val, torch.Tensor):
            if not _is_static(val):
                raise CaptureError(f"graph input '{n.name}' has a symbolic shape {tuple(val.shape)}")
            inputs.append(n)
            positions.append(i)
        elif n.users:
            raise CaptureError(
                f"graph input '{n.name}' is a {type(val).__name__} ({val!r}) the graph computes "
                "with; wafercc compiles static graphs of tensors"
            )
    return inputs, positions


def _outputs(gm: torch.fx.GraphModule, placeholders: list[torch.fx.Node]) -> tuple[list[torch.fx.Node], list[_Out]]:
    """The nodes the runtime must return (each once), and how each output of the graph is made."""
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    arg_index = {n: i for i, n in enumerate(placeholders)}
    outputs, how, seen = [], [], {}
    for o in torch.utils._pytree.tree_leaves(out_node.args[0]):
        if isinstance(o, torch.fx.Node) and o.op == "placeholder":
            how.append(_Out("input", arg_index[o]))
        elif isinstance(o, torch.fx.Node):
            if not isinstance(o.meta.get("val"), torch.Tensor):
                raise CaptureError(
                    f"the graph returns '{o.name}', a {type(o.meta.get('val')).__name__} computed "
                    "in the graph; wafercc returns tensors"
                )
            if o not in seen:
                seen[o] = len(outputs)
                outputs.append(o)
            how.append(_Out("computed", seen[o]))
        else:
            how.append(_Out("const", value=o))
    return outputs, how


def specialize(gm: torch.fx.GraphModule, args: list) -> torch.fx.GraphModule:
    """A static graph of ``gm`` for these concrete arguments: ``make_fx`` on the real values, under the
    backend's decompositions; every node keeps the stack trace of the node it came from."""
    from torch.fx.experimental.proxy_tensor import make_fx

    concrete = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]

    def run(*xs):
        return torch.fx.Interpreter(gm).run(*xs)

    try:
        with torch.no_grad(), torch.fx.traceback.preserve_node_meta():
            return make_fx(run, decomposition_table=decompositions(), tracing_mode="real")(*concrete)
    except Exception as e:
        raise CaptureError(
            f"cannot specialize the graph for shapes {_signature(args)}: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from None


# -- compiling ------------------------------------------------------------------------------------------


def plan_module(captured: Captured, name: str, options: BackendOptions) -> tuple[Module, dict, dict]:
    """Import and plan ``captured`` as the driver does: import, cleanup, partition, tile, place, route.
    Returns the module, its weights (numpy) and their kinds."""
    imported = import_graph(captured, name=name)
    module = verify_module(imported.module)
    module.attrs["target"] = options.target
    module.attrs["mode"] = options.mode
    # One pipeline, verified once at its end (the driver verifies after every pass, for `--emit` and
    # reproducers; here the first call's latency counts, and the final check covers the whole plan).
    passes = ",".join(",".join(stage.passes) or DEFAULT_PIPELINE for stage in STAGES)
    module = verify_module(PassManager(passes, verify_each=False).run(module))
    used = {op.attrs["symbol"].name for f in module.funcs for op in f.ops if op.name == "weight.get"}
    for sym in [s for s in module.weights if s not in used]:
        del module.weights[sym]
    weights = {s: to_numpy(imported.weights[s].tensor) for s in module.weights}
    kinds = {s: imported.weights[s].kind for s in module.weights}
    return module, weights, kinds


@dataclass
class Program:
    """One static graph, planned, with its interpreter ready."""

    gm: torch.fx.GraphModule
    captured: Captured | None
    positions: list[int]  # argument index of each runtime input
    outputs: list[_Out]
    module: Module | None = None  # None: the graph computes nothing (it returns its inputs or constants)
    weights: dict = field(default_factory=dict)
    interp: runtime.Interpreter | None = None
    name: str = "graph"

    def run(self, args: list, options: BackendOptions) -> list:
        got: list[np.ndarray] = []
        arrays: list[np.ndarray] = []
        if self.interp is not None:
            arrays = [_as_numpy(args[i]) for i in self.positions]
            got = self.interp.run(arrays).outputs
        if options.check and got:
            self.check(args, arrays, got, options)
        out = []
        for o in self.outputs:
            if o.kind == "computed":
                out.append(_to_torch(got[o.index]))
            elif o.kind == "input":
                out.append(args[o.index])  # the very tensor: an output that aliases an input stays an alias
            else:
                out.append(o.value)
        return out

    def check(self, args: list, arrays: list[np.ndarray], got: list[np.ndarray], options: BackendOptions) -> None:
        with torch.no_grad():
            want = self.gm(*[a.detach() if isinstance(a, torch.Tensor) else a for a in args])
        flat = torch.utils._pytree.tree_leaves(want)
        expected = [None] * len(got)
        for o, w in zip(self.outputs, flat):
            if o.kind == "computed":
                expected[o.index] = to_numpy(w)
        bad = []
        for i, (w, g) in enumerate(zip(expected, got)):
            tol = None
            if options.precision != "fp32" and np.issubdtype(w.dtype, np.floating):
                tol = tolerance_for("float16" if options.precision == "fp16" else "bfloat16")
            c = compare(w, g, tol)
            if not c.passed:
                bad.append((i, c))
        if not bad:
            return
        i, c = bad[0]
        lines = [
            f"wafercc backend check: graph {self.name}: {len(bad)} of {len(got)} output(s) differ from eager "
            f"PyTorch; output {i}: {c.summary()}"
        ]
        first = None
        try:
            imported, pairs, _ = import_with_pairs(self.captured, name=self.name)
            weights = {s: to_numpy(w.tensor) for s, w in imported.weights.items()}
            r = bisect_graph(self.captured, verify_module(imported.module), weights, pairs, arrays)
        except WaferError as e:
            lines.append(f"(bisect could not run: {e})")
        else:
            first = r.first
            lines.append(r.text())
            if first is None:
                lines.append(
                    "the graph-level WIR matches PyTorch everywhere: the mismatch comes from a pass, the "
                    f"mapping or the {options.precision} storage (dump_dir keeps the planned module)"
                )
        raise BackendCheckError("\n".join(lines), first)


def compile_program(gm: torch.fx.GraphModule, name: str, options: BackendOptions) -> Program:
    captured, positions, how = captured_from_graph(gm)
    prog = Program(gm, captured, positions, how, name=name)
    if not captured.outputs:
        return prog
    prog.module, prog.weights, kinds = plan_module(captured, name, options)
    prog.interp = runtime.Interpreter(
        prog.module,
        runtime.MemoryStore(prog.weights),
        plan=None if options.faithful else False,
        precision=options.precision,
    )
    if options.dump_dir is not None:
        files = {
            PLAN_FILE: plan_json(prog.module),
            REPORT_FILE: format_report(plan_dict(prog.module)),
            "graph.py": gm.code,
        }
        write_output(Path(options.dump_dir) / name, prog.module, prog.weights, kinds, files)
    return prog


class CompiledGraph:
    """What the backend returns for one graph: ``compiled(args)`` (boxed: AOTAutograd passes a list)."""

    _boxed_call = True

    def __init__(self, gm: torch.fx.GraphModule, example_inputs, name: str, options: BackendOptions):
        self.gm, self.name, self.options = gm, name, options
        self.static: Program | None = None
        self.specialized: dict[tuple, Program] = {}
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        symbolic = any(not _is_static(n.meta.get("val")) and n.users for n in placeholders) or any(
            isinstance(x, torch.SymInt) for x in example_inputs
        )
        if not symbolic:
            self.static = compile_program(gm, name, options)

    def __call__(self, *call_args) -> list:
        # boxed (a list of the arguments, AOTAutograd's forward), or unboxed (its backward, behind Dynamo's
        # disable wrapper, which hides _boxed_call); graph arguments are never lists themselves
        boxed = len(call_args) == 1 and type(call_args[0]) is list
        args = call_args[0] if boxed else list(call_args)
        prog = self.static
        if prog is None:
            key = _signature(args)
            prog = self.specialized.get(key)
            if prog is None:
                name = f"{self.name}_s{len(self.specialized)}"
                prog = self.specialized[key] = compile_program(specialize(self.gm, args), name, self.options)
        out = prog.run(args, self.options)
        args.clear()  # boxed convention: the caller's list no longer keeps the inputs alive
        return out


class FailedGraph:
    """A graph wafercc could not compile: calling it raises the error (a WaferError the user can catch,
    rather than torch's BackendCompilerFailed around it)."""

    _boxed_call = True

    def __init__(self, error: WaferError):
        self.error = error

    def __call__(self, *args):
        raise self.error.with_traceback(None)


def _signature(args: list) -> tuple:
    return tuple(
        (tuple(a.shape), str(a.dtype))
        if isinstance(a, torch.Tensor)
        else (int(a) if isinstance(a, (int, torch.SymInt)) else repr(a))
        for a in args
    )


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """A copy-free view of a contiguous CPU tensor; a contiguous copy of anything else."""
    return as_numpy_view(t) if t.is_contiguous() and t.device.type == "cpu" else to_numpy(t)


def _to_torch(a: np.ndarray) -> torch.Tensor:
    """A runtime output (a fresh array the runtime owns no more) as a torch tensor, without a copy."""
    a = np.asarray(a)
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def graph_name() -> str:
    """``frame0_0``: Dynamo's compile id (frame / recompile) of the graph being compiled."""
    try:
        from torch._guards import CompileContext

        cid = CompileContext.current_compile_id()
    except Exception:  # outside a Dynamo compile (a direct call of the backend)
        cid = None
    base = "frame" + re.sub(r"[^0-9]+", "_", str(cid)).strip("_") if cid is not None else f"graph{next(_COUNTER)}"
    return base


def _counter():
    i = 0
    while True:
        yield i
        i += 1


_COUNTER = _counter()

__all__ = [
    "BackendCheckError",
    "CompiledGraph",
    "FailedGraph",
    "Program",
    "captured_from_graph",
    "compile_program",
    "graph_name",
    "plan_module",
    "specialize",
]
