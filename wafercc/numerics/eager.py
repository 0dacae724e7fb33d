"""Checking a compiled model against eager PyTorch: compile, run the runtime and eager on the same inputs,
compare each output under the tolerance policy (``wafercc.numerics.compare``); bisect a mismatch.

    v = compare_model(model, example_inputs)  # Comparison per output, passed, stats, bisection
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

import runtime
from wafercc.driver import DEFAULT_TARGET, STAGES, compile
from wafercc.errors import UsageError
from wafercc.frontend.interop import to_numpy, to_torch
from wafercc.ir import parse, print_module
from wafercc.numerics.bisect import bisect_model
from wafercc.numerics.compare import Comparison, Tolerance, compare, tolerance_for
from wafercc.passes import run_pipeline


def run_eager(model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Eager PyTorch on ``inputs``: ``model.eval()``, no grad; every tensor of the output, flattened."""
    model.eval()
    with torch.no_grad():
        out = model(*[to_torch(a) for a in inputs])
    return [to_numpy(t) for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


# -- compiled model vs eager --------------------------------------------------------------------


@dataclass
class OutputCheck:
    name: str  # out0, out1, ...
    comparison: Comparison


@dataclass
class ModelComparison:
    outputs: list[OutputCheck]
    passed: bool
    inputs_from: str  # "the example inputs", "seeded random inputs (seed 3)", "inputs.npz"
    reason: str = ""  # a failure that is not one output's (output count)
    stats: object = None  # runtime.RunStats
    seconds: dict[str, float] = field(default_factory=dict)
    bisect: object = None  # wafercc.numerics.bisect.BisectResult when bisect ran
    diagnosis: str = ""  # where a mismatch comes from, when bisect found no diverging op
    stages: list = field(default_factory=list)  # (plan stage, passed, worst max_rel) when bisect ran


def compare_model(
    model,
    example_inputs,
    *,
    inputs=None,
    seed: int | None = None,
    name: str = "model",
    source: str | None = None,
    capture: str = "export",
    target: str | None = None,
    mode: str = "stream",
    out_dir: str | os.PathLike | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    bisect: bool | None = None,
    progress=None,
    precision: str = "fp32",
    plan: bool = True,
    order: str = "grouped",
) -> ModelComparison:
    """Compile ``model``, run the compiled module in the runtime and ``model`` in eager PyTorch on the
    same inputs, and compare every output. ``inputs``: None (the example inputs), an .npz path, or arrays;
    ``seed``: seeded random inputs of the example inputs' shapes and dtypes instead. ``bisect``: None runs
    the bisection when an output mismatches, True always, False never. The runtime follows the plan
    (``plan=False``: the graph-level run) with ``precision`` storage; a 16-bit precision is judged by that
    dtype's tolerance whatever the outputs' declared dtype."""
    if inputs is not None and seed is not None:  # before compiling: the mistake costs no compile
        raise UsageError("give either inputs or a seed, not both")
    say = progress or (lambda _m: None)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    result = compile(
        model,
        example_inputs,
        name=name,
        source=source,
        capture=capture,
        target=target or DEFAULT_TARGET,
        mode=mode,
        out_dir=out_dir,
        progress=progress,
    )
    seconds["compile"] = time.perf_counter() - t
    func = result.module.func()
    arrays, inputs_from = _choose_inputs(func, example_inputs, inputs, seed)

    say("running the runtime")
    store = store_for(result)
    try:
        run = runtime.Interpreter(result.module, store, plan=plan, precision=precision, order=order).run(arrays)
    finally:
        if isinstance(store, runtime.Store):
            store.close()
    seconds["runtime"] = run.stats.seconds
    say("running eager PyTorch")
    t = time.perf_counter()
    want = run_eager(model, arrays)
    seconds["eager"] = time.perf_counter() - t

    checks = [
        OutputCheck(f"out{i}", compare(w, g, _precision_tolerance(w, precision, rtol, atol), rtol=rtol, atol=atol))
        for i, (w, g) in enumerate(zip(want, run.outputs))
    ]
    reason = (
        ""
        if len(want) == len(run.outputs)
        else f"eager PyTorch returns {len(want)} tensor(s), the compiled model {len(run.outputs)}"
    )
    passed = not reason and all(c.comparison.passed for c in checks)
    v = ModelComparison(checks, passed, inputs_from, reason, run.stats, seconds)
    if bisect or (bisect is None and not passed):
        say("bisecting: the FX graph in torch beside the graph-level WIR in the runtime")
        t = time.perf_counter()
        v.bisect = bisect_model(
            model, example_inputs, arrays, capture=capture, name=name, source=source, rtol=rtol, atol=atol
        )
        seconds["bisect"] = time.perf_counter() - t
        if not passed and v.bisect.first is None:
            v.diagnosis = _diagnose(want, v.bisect.graph_outputs, rtol, atol)
        if plan and result.module.layers:
            say("bisecting the plan stages: graph, tiled, placed, routed")
            t = time.perf_counter()
            v.stages = bisect_stages(result.module, store_for(result), arrays, want, precision, rtol, atol)
            seconds["stages"] = time.perf_counter() - t
    return v


def _plan_stages() -> tuple[tuple[str, str], ...]:
    """(stage, the mapping passes that reach it from the one before) for every stage the plan-faithful
    runtime can run: the graph level, then the driver's stages from the first with a tiling on."""
    out, pending = [("graph", "")], []
    for stage in STAGES[1:]:  # after the cleanup pipeline
        pending += stage.passes
        if stage.emit != "layers":  # partitioned but untiled: nothing plan-faithful to run yet
            out.append((stage.emit, ",".join(pending)))
            pending = []
    return tuple(out)


PLAN_STAGES = _plan_stages()


def bisect_stages(module, store, arrays, want, precision: str, rtol, atol) -> list[tuple[str, bool, float]]:
    """Run the model at every plan stage (graph level, then tiled, placed, routed, each with the plan's
    runtime) and compare with eager: the first stage that fails is where the plan moved the numbers.
    Returns (stage, passed, worst max_rel) per stage."""
    m = parse(print_module(module))  # a copy, stripped back to graph level
    m.layers.clear()
    m.attrs.pop("plan.totals", None)
    for op in m.func().ops:
        op.attrs.pop("plan.layer", None)
    out = []
    for stage, passes in PLAN_STAGES:
        if passes:
            m = run_pipeline(m, passes)
        got = runtime.Interpreter(m, store, plan=bool(passes), precision=precision).run(arrays).outputs
        cs = [
            compare(w, g, _precision_tolerance(w, precision, rtol, atol), rtol=rtol, atol=atol)
            for w, g in zip(want, got)
        ]
        out.append((stage, all(c.passed for c in cs), max((c.max_rel for c in cs), default=0.0)))
    return out


def store_for(result):
    return runtime.Store(result.out_dir) if result.out_dir is not None else runtime.MemoryStore(result.weights)


def _precision_tolerance(expected, precision: str, rtol, atol) -> Tolerance | None:
    """With 16-bit storage the policy of that dtype applies (the reason for the looser bound is the storage,
    not the declared f32 of the outputs)."""
    if precision == "fp32" or not np.issubdtype(np.asarray(expected).dtype, np.floating):
        return None
    return tolerance_for("float16" if precision == "fp16" else "bfloat16", rtol, atol)


def _diagnose(eager: list[np.ndarray], graph: list[np.ndarray], rtol, atol) -> str:
    """Bisect found the graph-level WIR equal to the captured graph everywhere: is the captured graph
    itself equal to eager PyTorch?"""
    same = len(eager) == len(graph) and all(
        compare(e, g, rtol=rtol, atol=atol, pcc=False).passed for e, g in zip(eager, graph)
    )
    if not same:
        return (
            "the captured graph itself differs from eager PyTorch on these inputs: the model's forward does "
            "something the capture did not record (Python-side state, randomness, or values baked in at "
            "capture time); the compiled model follows the captured graph"
        )
    return (
        "the graph-level WIR matches PyTorch everywhere: the mismatch comes from a pass or the mapping "
        "(run the stages of `wafercc compile --emit STAGE` with `wafercc run` to find which)"
    )


def _choose_inputs(func, example_inputs, inputs, seed) -> tuple[list[np.ndarray], str]:
    if seed is not None:
        return runtime.random_inputs(func, seed), f"seeded random inputs (seed {seed})"
    if isinstance(inputs, (str, os.PathLike)):
        return runtime.load_inputs(inputs, func), str(inputs)
    if inputs is not None:
        return runtime.bind_inputs(func, inputs), "the given inputs"
    ex = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    return runtime.bind_inputs(func, [to_numpy(t) for t in ex]), "the example inputs"


__all__ = ["ModelComparison", "OutputCheck", "bisect_stages", "compare_model", "run_eager", "store_for"]
