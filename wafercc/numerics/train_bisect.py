"""``wafercc verify --train --bisect``: name the first gradient that diverges from eager PyTorch and the op
behind it, with the model's source line (docs/training.md, "Bisecting a training mismatch").

    r = bisect_training(model, example_inputs, name="train_mlp", source="examples/train_mlp.py")
    print(r.text()); r.first_grad, r.bisect.first

The joint graph is captured again (AOTAutograd's joint export, as ``compile --train``) and imported at graph
level, one WIR op per FX node; then inference's bisection runs on it (wafercc/numerics/bisect.py): torch runs
the joint GraphModule under torch.fx's Interpreter from the model's initial weights and the first
micro-batch, the runtime runs the joint WIR on the same arrays, and every paired intermediate is compared the
moment the runtime computes it. The first op in program order whose result diverges while its operands
match is the op to blame; the returned gradients are compared with the step-1 gradient bound of the training
policy, and the first one to diverge in program order (the backward makes the last layer's first) is named.

Source lines. AOTAutograd's joint export re-traces its own first graph, so the joint graph's nodes carry
stack traces into that generated code, not into the model. ``attach_source_lines`` gives them the model's
lines back: the forward nodes are matched, in order and by ATen op, with the nodes of a torch.export capture
of the same model (whose stack traces name the model's lines); every other node takes the line of an
operand, preferring one computed from the forward alone (a saved activation or a weight), so a backward op
is attributed to the forward line it differentiates (the relu backward to the ``torch.relu`` line, the
input gradient of a linear layer to that layer's line).
"""

from __future__ import annotations

import copy
import difflib
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch.fx

from wafercc.driver import verify_module
from wafercc.frontend.importer import target_name
from wafercc.frontend.interop import to_numpy
from wafercc.numerics.bisect import BisectResult, bisect_graph, import_with_pairs
from wafercc.numerics.training import BASE_RTOL

_NO_LINE = ("detach", "alias", "lift_fresh_copy", "clone")


@dataclass
class OutputDivergence:
    """A returned value of the joint module (the loss or a gradient) that differs from torch's."""

    role: str  # "loss", "grad" or "update"
    target: str  # the weight it belongs to ("" for the loss)
    max_abs: float
    bound: float
    index: int  # program position of the op that makes it


@dataclass
class TrainBisect:
    bisect: BisectResult
    outputs: list[OutputDivergence]  # the diverging returns, in program order of their making
    phase: str = ""  # of the first diverging op: "forward" or "backward"
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def first_grad(self) -> OutputDivergence | None:
        return next((o for o in self.outputs if o.role == "grad"), None)

    def text(self) -> str:
        b = self.bisect
        lines = [
            f"bisect: compared {b.compared} of {b.values} values of the joint forward + backward WIR with "
            "AOTAutograd's joint graph run by torch (initial weights, the first micro-batch)"
        ]
        g = self.first_grad
        if g is not None:
            others = [o.target for o in self.outputs if o.role == "grad" and o is not g]
            lines.append(
                f"first diverging gradient: {g.target} (max |diff| {g.max_abs:.3g}, bound {g.bound:.3g})"
                + (f"; also {', '.join(others[:5])}{', ...' if len(others) > 5 else ''}" if others else "")
            )
        loss = next((o for o in self.outputs if o.role == "loss"), None)
        if loss is not None:
            lines.append(f"the loss diverges too (max |diff| {loss.max_abs:.3g}, bound {loss.bound:.3g})")
        if b.first is not None:
            lines.append(f"the {self.phase} op behind it (#{b.first.index} in program order):")
            lines.append(b.first.text())
        elif self.outputs:
            lines.append("no intermediate diverges beyond the tolerance: the differences add up in the returns")
        else:
            lines.append(
                "the joint graph's step-1 values all match: the divergence comes from the plan's run of the "
                "layers, the optimizer update, or a later step"
            )
        return "\n".join(lines)


def bisect_training(
    model, example_inputs, *, name: str = "model", source: str | None = None, cwd: str | None = None
) -> TrainBisect:
    """Capture ``model``'s joint graph, import it at graph level and bisect it on ``example_inputs`` (the
    first micro-batch) from the model's current weights."""
    from wafercc.frontend.training import capture_training  # torch

    cwd = cwd or os.getcwd()
    example_inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    reference = copy.deepcopy(model)  # the export capture puts its model in eval mode
    t = time.perf_counter()
    captured, roles, targets = capture_training(model, example_inputs)
    attach_source_lines(captured, reference, example_inputs)
    imported, pairs, _ = import_with_pairs(captured, name=name, source=source, cwd=cwd)
    verify_module(imported.module)
    t_capture = time.perf_counter() - t
    weights = {s: to_numpy(w.tensor) for s, w in imported.weights.items()}
    r = bisect_graph(captured, imported.module, weights, pairs, [to_numpy(x) for x in example_inputs], cwd=cwd)
    func = imported.module.func()
    made = {id(r): i for i, op in enumerate(func.ops) for r in op.results}
    outs = []
    for i, (role, target) in enumerate(zip(roles, targets)):
        d = _output_divergence(role, target, r, i, made.get(id(func.returns[i]), -1))
        if d is not None:
            outs.append(d)
    outs.sort(key=lambda o: o.index)
    phase = ""
    if r.first is not None:
        ends = [o for o, role in zip(captured.outputs, roles) if role != "grad"]  # the loss, buffer updates
        forward = {n.name for o in ends for n in _ancestors(o)}
        phase = "forward" if r.first.node in forward else "backward"
    return TrainBisect(r, outs, phase, {"capture": t_capture, **r.seconds})


def _output_divergence(role: str, target: str, r: BisectResult, i: int, index: int) -> OutputDivergence | None:
    if i >= len(r.graph_outputs) or i >= len(r.runtime_outputs):
        return None
    want = np.asarray(r.graph_outputs[i], dtype=np.float64)
    got = np.asarray(r.runtime_outputs[i], dtype=np.float64)
    if want.shape != got.shape:
        return OutputDivergence(role, target, float("inf"), 0.0, index)
    diff = np.abs(got - want)
    worst = float(diff.max()) if diff.size else 0.0
    if not np.all(np.isfinite(diff)):
        worst = float("inf")
    bound = BASE_RTOL * max(1.0, float(np.abs(want).max()) if want.size else 1.0)
    return OutputDivergence(role, target, worst, bound, index) if not worst <= bound else None


def _ancestors(node: torch.fx.Node) -> set[torch.fx.Node]:
    return _closure(node, lambda n: n.all_input_nodes)


def _descendants(node: torch.fx.Node) -> set[torch.fx.Node]:
    return _closure(node, lambda n: n.users)


def _closure(node: torch.fx.Node, step) -> set[torch.fx.Node]:
    """``node`` and every node reached from it by ``step`` (its inputs, or its users), transitively."""
    seen: set[torch.fx.Node] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(step(n))
    return seen


def attach_source_lines(captured, model, example_inputs) -> int:
    """Give the joint graph's call nodes the model's stack traces (module docstring); returns how many
    forward nodes were matched with the torch.export capture (0 when the model does not export)."""
    from wafercc import frontend
    from wafercc.ir import WaferError

    try:
        ref = frontend.capture(model, example_inputs, "export")
    except WaferError:
        return 0
    graph = captured.graph
    loss = captured.outputs[0]
    forward = [n for n in graph.nodes if n.op == "call_function" and n in _ancestors(loss)]
    forward = [n for n in forward if target_name(n.target).split(".")[0] not in _NO_LINE]
    theirs = [n for n in ref.graph.nodes if n.op == "call_function" and n.meta.get("stack_trace")]
    a = [target_name(n.target) for n in forward]
    b = [target_name(n.target) for n in theirs]
    traces: dict[torch.fx.Node, str] = {}
    for blk in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        for k in range(blk.size):
            traces[forward[blk.a + k]] = theirs[blk.b + k].meta["stack_trace"]
    matched = len(traces)
    backward = _descendants(loss)
    order = {n: i for i, n in enumerate(graph.nodes)}
    for n in graph.nodes:
        if n.op != "call_function" or n in traces:
            continue
        lined = sorted((o for o in n.all_input_nodes if o in traces), key=order.__getitem__)
        pick = [o for o in lined if o not in backward] or lined
        if pick:
            traces[n] = traces[pick[-1]]
    for n, trace in traces.items():
        n.meta["stack_trace"] = trace
    return matched


__all__ = ["OutputDivergence", "TrainBisect", "attach_source_lines", "bisect_training"]
