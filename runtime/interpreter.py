"""The weight-streaming interpreter: runs one WIR function op by op on numpy arrays.

Like torch.fx's Interpreter it keeps an environment of live values and frees each value after its last
use; the schedule (kernel, op, argument slots, values to free) is computed once in ``__init__`` so a run
pays only a list index and a call per op.

Weights: a ``weight.get`` reads its tensor from the MemoryX store when it runs; by default it runs just
before its first user (``lazy_weights=False`` keeps the text order, for a plan that fixes its own). The
order, liveness, weight residency and layers are computed in schedule.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from wafercc.ir import Func, Module, Op, WaferError, verify
from wafercc.ir.plan import load_plan

from .errors import RuntimeExecutionError
from .io import bind_inputs
from .kernels import KERNELS, np_dtype
from .plan import PRECISIONS, round_to
from .planned import PlannedLayers
from .schedule import (
    WEIGHT,
    classify,
    inferred_layers,
    last_uses,
    planned_layers,
    sink_static,
    stream_points,
    weight_releases,
)
from .store import Store


@dataclass
class LayerStat:
    name: str
    seconds: float
    ops: int
    weight_bytes: int  # streamed from MemoryX while this layer ran
    per_pe: dict | None = None  # plan mode: bytes each PE held for the anchor's tiles, by buffer
    peak_chunk_bytes: int = 0  # plan mode: most weight bytes on the wafer at once


@dataclass
class RunStats:
    weight_bytes_streamed: int = 0
    peak_resident_weight_bytes: int = 0
    peak_activation_bytes: int = 0
    seconds: float = 0.0
    layers: list[LayerStat] = field(default_factory=list)

    def summary(self) -> str:
        mib = 1 << 20
        return (
            f"{len(self.layers)} layers in {self.seconds * 1e3:.1f} ms; weights streamed "
            f"{self.weight_bytes_streamed / mib:.2f} MiB, "
            f"peak resident {self.peak_resident_weight_bytes / mib:.2f} MiB; "
            f"peak activations {self.peak_activation_bytes / mib:.2f} MiB"
        )


@dataclass
class RunResult:
    outputs: list[np.ndarray | None]  # None: a result streamed out during the run (Interpreter's stream)
    stats: RunStats
    inputs: list[np.ndarray] = field(default_factory=list)
    generated_inputs: bool = False  # True when run() made seeded random inputs from the signature


class _Step:
    """One scheduled op: everything the run loop needs, precomputed."""

    __slots__ = (
        "act_alloc",
        "act_free",
        "args",
        "expect",
        "free",
        "kernel",
        "layer",
        "op",
        "results",
        "stream",
        "symbol",
        "w_alloc",
        "w_free",
        "release",
    )

    def __init__(self, op: Op, kernel, slot: dict[int, int]):
        self.op = op
        self.kernel = kernel
        self.args = tuple(slot[id(v)] for v in op.operands)
        self.results = tuple(slot[id(r)] for r in op.results)
        self.expect = tuple((r.type.shape, np_dtype(r.type)) for r in op.results)
        sym = op.attrs.get("symbol") if kernel is None else None
        self.symbol = sym.name if sym is not None else None
        self.free: tuple[int, ...] = ()
        self.act_alloc = self.w_alloc = self.act_free = self.w_free = 0
        self.release: tuple[str, ...] = ()  # weights whose pages the store may drop after this step
        self.stream: tuple[tuple[int, int], ...] = ()  # (return position, slot) handed out after this step
        self.layer = 0


# How a layer adds its routed partial sums: one BLAS product, or column by column in route order.
REDUCTION_ORDERS = ("grouped", "ring")


class Interpreter:
    """``Interpreter(module, store).run(inputs) -> RunResult`` for one function of ``module``."""

    def __init__(
        self,
        module: Module,
        store: Store | None = None,
        func: str | None = None,
        lazy_weights: bool = True,
        plan: bool | None = None,
        precision: str = "fp32",
        order: str = "grouped",
        stream: dict[int, tuple[str, ...]] | None = None,
    ):
        verify(module)  # the generic rules (SSA, symbols); op semantics are the kernels' business
        if precision not in PRECISIONS:
            raise RuntimeExecutionError(f"unknown precision '{precision}' (use {', '.join(PRECISIONS)})")
        if order not in REDUCTION_ORDERS:
            raise RuntimeExecutionError(f"unknown reduction order '{order}' (use grouped or ring)")
        self.module = module
        self.func = _pick_func(module, func)
        self.store = store
        self.precision = precision
        # The plan's promises (tiles cover every dimension, every needed route is there, ...) are checked
        # before anything runs: a plan that breaks one is a PlanFormatError, never wrong numbers.
        self.layer_plan = load_plan(module)
        planned = self.layer_plan is not None and any(lp.tiling is not None for lp in self.layer_plan.layers)
        computes = any(op.name != "weight.get" for op in self.func.ops)  # an empty plan has nothing to follow
        if plan and not planned and computes:
            raise RuntimeExecutionError(
                f"module @{module.name} has no tiled layers to follow: compile it "
                "with --emit tiled or later, or run without --plan"
            )
        self.plan = planned if plan is None else plan and planned
        self._check_kernels_and_store()
        order_ops = sink_static(self.func) if lazy_weights else list(self.func.ops)
        self.stream = dict(stream or {})
        bad = [p for p in self.stream if not 0 <= p < len(self.func.returns)]
        if bad:
            raise ValueError(f"stream: @{self.func.name} has no result {bad[0]}")
        self._build(order_ops)
        self.planned = PlannedLayers(self, order) if self.plan else None

    # -- schedule --------------------------------------------------------------------------------
    def _check_kernels_and_store(self) -> None:
        missing = [op for op in self.func.ops if op.name != "weight.get" and op.name not in KERNELS]
        if missing:
            listed = "\n  ".join(op.where() for op in missing)
            raise RuntimeExecutionError(f"the runtime has no kernel for {len(missing)} op(s):\n  {listed}")
        used = {op.attrs["symbol"].name: None for op in self.func.ops if op.name == "weight.get"}
        if used and self.store is None:
            raise RuntimeExecutionError(
                f"@{self.func.name} reads weights ({', '.join('@' + n for n in list(used)[:4])}"
                f"{', ...' if len(used) > 4 else ''}) but no MemoryX store was given"
            )
        if used:
            self.store.check(self.module.weights[n] for n in used)

    def _build(self, order: list[Op]) -> None:
        f = self.func
        slot: dict[int, int] = {id(a): i for i, a in enumerate(f.args)}
        for op in order:
            for r in op.results:
                slot[id(r)] = len(slot)
        self.num_slots = len(slot)
        kind = classify(f, order)
        last = last_uses(f, order, self.stream)
        points = stream_points(f, order, self.stream, last, kind)
        for pos, at in points.items():  # a streamed value lives until it is handed out
            v = f.returns[pos]
            last[id(v)] = max(last.get(id(v), -1), at)
        self.steps = [_Step(op, KERNELS.get(op.name), slot) for op in order]
        self.returns = [slot[id(v)] for v in f.returns]
        self.arg_bytes = sum(a.type.nbytes for a in f.args if id(a) in last)
        freed_args = [slot[id(a)] for a in f.args if id(a) not in last]
        for i, (step, op) in enumerate(zip(self.steps, order)):
            dead = [r for r in op.results if id(r) not in last]
            gone = list({id(v): v for v in op.operands if last.get(id(v)) == i}.values()) + dead
            step.free = tuple(slot[id(v)] for v in gone) + (tuple(freed_args) if i == 0 else ())
            step.act_alloc = sum(r.type.nbytes for r in op.results if kind[id(r)] != WEIGHT)
            step.act_free = sum(v.type.nbytes for v in gone if kind[id(v)] != WEIGHT)
            if op.name == "weight.get":
                step.w_alloc = op.results[0].type.nbytes
        for i, nbytes, sym in weight_releases(order, kind, last):
            self.steps[i].w_free += nbytes
            self.steps[i].release += (sym,)
        # Streamed results: handed to run()'s on_stream after the step at their point (before the step's frees),
        # then dropped; at -1 (an argument returned as is) after the first step; at inf after the last.
        self.stream_end: list[tuple[int, int]] = []
        for pos, at in sorted(points.items()):
            v, s = f.returns[pos], slot[id(f.returns[pos])]
            if last[id(v)] == float("inf") or not self.steps:
                self.stream_end.append((pos, s))
                continue
            step = self.steps[max(int(last[id(v)]), 0)]
            step.stream += ((pos, s),)
            if s not in step.free and last[id(v)] != float("inf"):
                step.free += (s,)
                step.act_free += v.type.nbytes if kind[id(v)] != WEIGHT else 0
        decl = {name: i for i, name in enumerate(self.module.weights)}
        index, self.layer_names = planned_layers(order) or inferred_layers(order, kind, decl)
        for step, layer in zip(self.steps, index):
            step.layer = layer

    # -- running ---------------------------------------------------------------------------------
    def run(self, inputs, on_result=None, on_stream=None) -> RunResult:
        """Run the function on ``inputs`` (a list by position, or a dict by argument name). ``on_result``, if
        given, is called as ``on_result(op, results)`` after every op (bisection compares values there).

        An interpreter built with ``stream`` hands each of those results to ``on_stream(position, value)`` as
        soon as it may (see ``stream_points``) and drops it, and ``outputs`` holds None at that position. The run
        never writes ``value`` again (kernels make new arrays), but it may view a weight's memory, which the
        caller's optimizer may be about to update: copy such a view before keeping it past the call."""
        if self.stream and on_stream is None:
            raise TypeError(f"this interpreter streams results {sorted(self.stream)}: run() needs on_stream")
        args = bind_inputs(self.func, inputs)
        if self.precision != "fp32":
            args = [round_to(a, self.precision) for a in args]
        if self.planned is not None:
            self.planned.reset()
        env: list = [None] * self.num_slots
        env[: len(args)] = args
        stats = RunStats()
        with np.errstate(all="ignore"):  # inf/NaN follow IEEE rules silently, as in torch
            self._loop(env, stats, on_result, on_stream)
            for pos, j in self.stream_end:  # results that had to wait for the end
                on_stream(pos, env[j])
        outputs = [None if p in self.stream else env[s] for p, s in enumerate(self.returns)]
        return RunResult(outputs=_fresh(outputs, args), stats=stats, inputs=list(args))

    def _loop(self, env: list, stats: RunStats, on_result=None, on_stream=None) -> None:
        act = peak_act = self.arg_bytes  # live activation bytes
        res = peak_res = 0  # resident weight bytes
        clock = _LayerClock(stats, self.layer_names)
        step = None
        try:
            for step in self.steps:
                if step.layer != clock.layer:
                    clock.switch(step.layer)
                out = self._execute(step, env)
                for j, r in zip(step.results, out):
                    env[j] = r
                if on_result is not None:
                    on_result(step.op, out)
                for pos, j in step.stream:
                    on_stream(pos, env[j])
                clock.ops += 1
                clock.weight_bytes += step.w_alloc
                act += step.act_alloc
                res += step.w_alloc
                peak_act = max(peak_act, act)
                peak_res = max(peak_res, res)
                for j in step.free:
                    env[j] = None
                for sym in step.release:  # the weight is done: let the store drop its pages (RSS)
                    self.store.release(sym)
                act -= step.act_free
                res -= step.w_free
        except WaferError:
            raise
        except Exception as e:
            raise RuntimeExecutionError(f"{step.op.where()}: {type(e).__name__}: {e}", step.op) from e
        clock.switch(-1)
        stats.seconds = clock.total()
        if self.planned is not None:
            self.planned.report(stats)
        stats.weight_bytes_streamed = sum(layer.weight_bytes for layer in stats.layers)
        stats.peak_activation_bytes, stats.peak_resident_weight_bytes = peak_act, peak_res
        if self.planned is not None:  # the wafer holds streamed chunks, not whole weights
            stats.peak_resident_weight_bytes = max((layer.peak_chunk_bytes for layer in stats.layers), default=0)

    def _execute(self, step: _Step, env: list) -> tuple:
        """Run one op; its results, checked against the declared types (a cheap guard against kernel bugs)."""
        if step.kernel is None:  # weight.get: stream the tensor in from MemoryX
            w = self.store.get(step.symbol, step.op.results[0].type)
            return (w,) if self.precision == "fp32" else (round_to(w, self.precision),)
        out = step.kernel(step.op, *[env[j] for j in step.args])
        if type(out) is not tuple:
            out = (out,)
        if self.precision != "fp32":  # every value the wafer stores is 16-bit
            out = tuple(round_to(r, self.precision) for r in out)
        if len(out) != len(step.expect):
            raise RuntimeExecutionError(
                f"{step.op.where()}: the kernel returned {len(out)} result(s) for {len(step.expect)}", step.op
            )
        for r, (shape, dt) in zip(out, step.expect):
            if r.shape != shape or r.dtype != dt:
                raise RuntimeExecutionError(
                    f"{step.op.where()}: the kernel returned {r.dtype}{list(r.shape)} but the op declares "
                    f"{dt}{list(shape)} (a runtime bug, or a result type the op's rule would reject)",
                    step.op,
                )
        return out


class _LayerClock:
    """Per-layer wall time, op count and streamed bytes; read at layer boundaries only, not per op."""

    def __init__(self, stats: RunStats, names: list[str]):
        self.stats, self.names = stats, names
        self.layer, self.ops, self.weight_bytes = -1, 0, 0
        self.start = self.t0 = time.perf_counter()

    def switch(self, layer: int) -> None:
        now = time.perf_counter()
        if self.layer >= 0:
            self.stats.layers.append(LayerStat(self.names[self.layer], now - self.t0, self.ops, self.weight_bytes))
        self.layer, self.ops, self.weight_bytes, self.t0 = layer, 0, 0, now

    def total(self) -> float:
        return time.perf_counter() - self.start


def _fresh(outputs: list, inputs: list[np.ndarray]) -> list:
    """Outputs the caller may keep and write: a copy where a result is a view (of a store weight, an input,
    another value), an input itself, or the same array as an earlier output."""
    seen = {id(a) for a in inputs}
    out = []
    for v in outputs:
        if v is None:  # streamed out during the run
            out.append(v)
            continue
        if id(v) in seen or not (v.flags.owndata and v.flags.writeable and v.flags.c_contiguous):
            v = np.array(v, order="C")
        seen.add(id(v))
        out.append(v)
    return out


def _pick_func(module: Module, name: str | None) -> Func:
    if name is None and len(module.funcs) == 1:
        return module.funcs[0]
    try:
        return module.func(name or "forward")
    except KeyError:
        have = ", ".join("@" + f.name for f in module.funcs) or "none"
        raise RuntimeExecutionError(
            f"module @{module.name} has no function @{name or 'forward'} (it has {have})"
        ) from None
