"""Bisect a numerical mismatch: name the first WIR op whose result diverges from PyTorch's.

    from wafercc.numerics.bisect import bisect_model
    r = bisect_model(model, example_inputs)      # or inputs=[arrays...]
    print(r.text()); r.first.loc                 # Divergence: op text, loc, errors, worst index

The model is captured once and imported at graph level (no passes: one WIR op per FX node, named after
it). Each side then runs once, on the same inputs and weights: first the core-ATen FX graph under a
torch.fx Interpreter that keeps only the values some WIR result is paired with; then the runtime's
interpreter on the WIR, which compares each result the moment it is computed and drops the torch value.
Nothing is re-run. The first divergence in program order is the op to blame: its operands all matched
(an operand comes before its user), so its own kernel, or its own import, is wrong.

Pairing an FX node with its WIR value comes from the importer itself (what each node's converter
returned), not from names: a converter that emits a helper op first (``add`` with ``alpha`` emits a
``mul`` named ``add``) would make name pairing compare the wrong values.
"""

from __future__ import annotations

import linecache
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx

from runtime import Interpreter, MemoryStore
from wafercc import frontend
from wafercc.driver import verify_module
from wafercc.frontend.context import TORCH_DTYPES, tensor_type
from wafercc.frontend.importer import target_name
from wafercc.frontend.interop import as_numpy_view, to_numpy, to_torch
from wafercc.ir import Loc, Module, Op, WaferError, format_op
from wafercc.numerics.compare import Comparison, compare


@dataclass
class Divergence:
    index: int  # the op's position in the function, program (text) order
    op: str  # its WIR text
    value: str  # the diverging result, without '%'
    loc: Loc | None
    node: str  # the FX node it was compared with
    target: str  # that node's ATen op
    comparison: Comparison | None  # None when the runtime could not execute the op at all
    error: str = ""  # why it could not
    source_line: str | None = None  # the line of the model at ``loc``, when the file is readable

    def text(self, indent: str = "  ") -> str:
        lines = [f"{indent}{self.op}"]
        if self.loc:
            lines.append(f"{indent}at {self.loc}" + (f":  {self.source_line}" if self.source_line else ""))
        lines.append(f"{indent}compared with FX node '{self.node}' ({self.target})")
        c = self.comparison
        if c is None:
            lines.append(f"{indent}the runtime failed on it: {self.error}")
        else:
            lines.append(f"{indent}{c.dtype}{list(c.shape)}: {c.summary()}")
            if c.worst is not None:
                lines.append(f"{indent}{c.worst_text()}")
        return "\n".join(lines)


@dataclass
class BisectResult:
    first: Divergence | None  # the first diverging op in program order, or None: everything matched
    roots: list[Divergence]  # every divergence whose operands all matched, program order (first included)
    compared: int  # WIR values compared with an FX value
    diverged: int  # ... of which beyond the tolerance
    values: int  # results in the graph-level WIR, weights not counted
    pairing: str  # "importer" (exact) or "names" (fallback, see pair_by_names)
    seconds: dict[str, float] = field(default_factory=dict)
    graph_outputs: list[np.ndarray] = field(default_factory=list)  # the FX graph's outputs, as torch ran it
    runtime_outputs: list[np.ndarray] = field(default_factory=list)  # the WIR's, as the runtime ran it (if it ran)

    def text(self) -> str:
        head = (
            f"bisect: compared {self.compared} of {self.values} computed values of the graph-level WIR with the "
            f"FX graph run by torch ({', '.join(f'{k} {v:.2f} s' for k, v in self.seconds.items())})"
        )
        if self.first is None:
            return head + "\nno divergence: every compared value matches within the tolerance"
        lines = [head, f"first diverging op (#{self.first.index} in program order):", self.first.text()]
        later = self.diverged - 1
        others = [d for d in self.roots if d is not self.first]
        if later:
            lines.append(
                f"{later} later value(s) diverge too"
                + (
                    f"; {len(others)} of them independently of this op (their operands match): "
                    + ", ".join(f"%{d.value} at {d.loc or '?'}" for d in others[:5])
                    + (", ..." if len(others) > 5 else "")
                    if others
                    else ", all downstream of it"
                )
            )
        return "\n".join(lines)


def bisect_model(
    model,
    example_inputs,
    inputs=None,
    *,
    capture: str = "export",
    name: str = "model",
    source: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    cwd: str | None = None,
) -> BisectResult:
    """Capture and import ``model`` at graph level, then bisect on ``inputs`` (arrays by position;
    default: the example inputs)."""

    cwd = cwd or os.getcwd()
    t = time.perf_counter()
    captured = frontend.capture(model, example_inputs, capture)
    t_capture = time.perf_counter() - t
    t = time.perf_counter()
    imported, pairs, how = import_with_pairs(captured, name=name, source=source, cwd=cwd)
    verify_module(imported.module)
    t_import = time.perf_counter() - t
    if inputs is None:
        ex = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
        inputs = [to_numpy(x) for x in ex]
    weights = {s: to_numpy(w.tensor) for s, w in imported.weights.items()}
    r = bisect_graph(captured, imported.module, weights, pairs, list(inputs), rtol=rtol, atol=atol, cwd=cwd)
    r.pairing = how
    r.seconds = {"capture": t_capture, "import": t_import, **r.seconds}
    return r


# -- pairing FX nodes with WIR values ---------------------------------------------------------------

Pairs = dict[str, tuple[str, "int | None"]]  # WIR value name -> (FX node name, result index or None)


def import_with_pairs(captured, *, name: str = "model", source: str | None = None, cwd: str | None = None):
    """``import_graph`` that also returns which WIR value each FX node became, and how that was found."""
    imported = frontend.import_graph(captured, name=name, source=source, cwd=cwd)
    seen = imported.node_values
    pairs: Pairs = {}
    for node, result in seen.items():
        many = isinstance(result, (list, tuple))
        for i, v in enumerate(result if many else [result]):
            if v is not None and v.name not in pairs:  # an identity (clone) maps to its operand: keep the first
                pairs[v.name] = (node, i if many else None)
    return imported, pairs, "importer"


def pair_by_names(captured, module: Module) -> Pairs:
    """Best-effort pairing of a module not imported here: the value named like the node, of the node's
    type. Wrong where a converter emits a helper op under the node's name first (``add`` with alpha)."""
    values = {r.name: r for f in module.funcs for op in f.ops for r in op.results}
    pairs: Pairs = {}
    for n in captured.graph.nodes:
        if n.op != "call_function":
            continue
        val = n.meta.get("val")
        many = isinstance(val, (list, tuple))
        for i, t in enumerate(val if many else [val]):
            v = values.get(f"{n.name}.{i}" if many else n.name)
            if isinstance(t, torch.Tensor) and t.dtype in TORCH_DTYPES and v is not None and v.type == tensor_type(t):
                pairs.setdefault(v.name, (n.name, i if many else None))
    return pairs


# -- the two runs -----------------------------------------------------------------------------------


def run_fx(captured, inputs: list[np.ndarray], wanted: set[str]) -> tuple[dict[str, object], list[np.ndarray]]:
    """Run the captured core-ATen graph under torch.fx's Interpreter (values freed after their last use).
    Returns the results of the ``wanted`` nodes by node name, and the graph's outputs as numpy arrays."""
    gm = captured.graph.owning_module
    feeds = dict(zip(captured.inputs, (to_torch(a) for a in inputs)))
    args = []
    for n in captured.graph.nodes:
        if n.op == "placeholder":
            src = captured.weights.get(n)
            if src is None and n not in feeds:
                raise WaferError(f"bisect cannot feed the graph input '{n.name}'")
            args.append(src.tensor if src is not None else feeds[n])
    outputs = {n.name for n in captured.outputs}
    kept: dict[str, object] = {}
    returned: dict[str, object] = {}

    class Keep(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n.name in wanted:
                kept[n.name] = out
            if n.name in outputs:
                returned[n.name] = out
            return out

    with torch.no_grad():
        Keep(gm, garbage_collect_values=True).run(*args, enable_io_processing=False)
    return kept, [to_numpy(returned[n.name]) for n in captured.outputs]


class _Checker:
    """Compares each WIR result, as the runtime computes it, with the kept FX value; frees that value."""

    def __init__(self, module: Module, pairs: Pairs, kept: dict, targets: dict[str, str], rtol, atol, cwd: str):
        self.pairs, self.kept, self.targets = dict(pairs), kept, targets
        self.node_of = {v: node for v, (node, _) in pairs.items()}
        self.uses: dict[str, int] = {}
        for node, _ in self.pairs.values():
            self.uses[node] = self.uses.get(node, 0) + 1
        self.index = {id(op): i for i, op in enumerate(module.func().ops)}
        self.rtol, self.atol, self.cwd = rtol, atol, cwd
        self.tainted: set[int] = set()  # values that diverged, or were computed from ones that did
        self.compared = self.diverged = 0
        self.first: Divergence | None = None
        self.roots: list[Divergence] = []

    def __call__(self, op: Op, out: tuple) -> None:
        upstream = any(id(v) in self.tainted for v in op.operands)
        for r, got in zip(op.results, out):
            want = self._take(r.name)
            if want is None:
                if upstream:
                    self.tainted.add(id(r))
                continue
            c = compare(as_numpy_view(want), got, rtol=self.rtol, atol=self.atol, pcc=False)
            self.compared += 1
            if not c.passed:
                self.tainted.add(id(r))
                self._record(op, r.name, c, root=not upstream)

    def failed(self, op: Op, error: str) -> None:
        """The runtime raised on ``op``: that op is where the run stops, and a divergence."""
        self._record(op, op.results[0].name if op.results else "", None, root=True, error=error)

    def _take(self, name: str):
        key = self.pairs.pop(name, None)
        if key is None:
            return None
        node, i = key
        val = self.kept.get(node)
        self.uses[node] -= 1
        if not self.uses[node]:
            self.kept.pop(node, None)
        v = val if i is None else val[i]
        return v if isinstance(v, torch.Tensor) else None

    def _record(self, op: Op, value: str, c: Comparison | None, *, root: bool, error: str = "") -> None:
        self.diverged += 1
        index = self.index.get(id(op), -1)
        if not root and self.first is not None and index > self.first.index:
            return  # downstream of a divergence already found: only counted
        node = self.node_of.get(value, "?")
        d = Divergence(
            index,
            format_op(op),
            value,
            op.loc,
            node,
            self.targets.get(node, "?"),
            c,
            error,
            _source_line(op.loc, self.cwd),
        )
        if root:
            self.roots.append(d)
        if self.first is None or index < self.first.index:
            self.first = d


def bisect_graph(
    captured,
    module: Module,
    weights: dict[str, np.ndarray],
    pairs: Pairs,
    inputs: list[np.ndarray],
    *,
    rtol: float | None = None,
    atol: float | None = None,
    cwd: str | None = None,
) -> BisectResult:
    """Run ``captured`` in torch and the graph-level ``module`` in the runtime on ``inputs``; compare the
    paired values."""
    t = time.perf_counter()
    kept, graph_outputs = run_fx(captured, inputs, {node for node, _ in pairs.values()})
    t_torch = time.perf_counter() - t
    targets = {n.name: target_name(n.target) for n in captured.graph.nodes if n.op == "call_function"}
    check = _Checker(module, pairs, kept, targets, rtol, atol, cwd or os.getcwd())

    t = time.perf_counter()
    runtime_outputs: list[np.ndarray] = []
    try:
        runtime_outputs = Interpreter(module, MemoryStore(weights)).run(inputs, on_result=check).outputs
    except WaferError as e:
        if getattr(e, "op", None) is None:
            raise
        check.failed(e.op, str(e))
    t_runtime = time.perf_counter() - t
    values = sum(len(op.results) for op in module.func().ops if op.name != "weight.get")
    return BisectResult(
        check.first,
        sorted(check.roots, key=lambda d: d.index),
        check.compared,
        check.diverged,
        values,
        "importer",
        {"torch": t_torch, "runtime": t_runtime},
        graph_outputs,
        runtime_outputs,
    )


def _source_line(loc: Loc | None, cwd: str) -> str | None:
    if loc is None:
        return None
    path = loc.file if os.path.isabs(loc.file) else os.path.join(cwd, loc.file)
    line = linecache.getline(path, loc.line).strip()
    return line or None


__all__ = ["BisectResult", "Divergence", "bisect_graph", "bisect_model", "import_with_pairs", "pair_by_names", "run_fx"]
