"""Numerics: the tolerance policy, comparing arrays, and checking a compiled model against eager PyTorch.

    cmp = compare(expected, actual)          # Comparison(max_abs, max_rel, pcc, passed, reason, ...)
    v = verify_model(model, example_inputs)  # compile, run the runtime and eager PyTorch, compare each output

The policy, per dtype of the expected value (docs/runtime.md says why):

    f64    rtol 1e-7   atol 1e-7 * scale
    f32    rtol 1e-5   atol 1e-5 * scale     scale = max(1, max|expected|): accumulation order differs
    f16    rtol 1e-3   atol 1e-3 * scale     between BLAS implementations, and its error grows with the
    bf16   rtol 1e-2   atol 1e-2 * scale     magnitude of the sums, not of each element; + PCC >= 0.999
    ints, bool         exact

NaN in the same place on both sides is equal; so is an infinity of the same sign. ``compare`` runs on
numpy alone; ``verify_model`` imports torch when called.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np

# dtype name -> (rtol, atol before scaling, minimum PCC or None)
POLICY: dict[str, tuple[float, float, float | None]] = {
    "float64": (1e-7, 1e-7, None),
    "float32": (1e-5, 1e-5, None),
    "float16": (1e-3, 1e-3, 0.999),
    "bfloat16": (1e-2, 1e-2, 0.999),
}


@dataclass(frozen=True)
class Tolerance:
    """``|actual - expected| <= atol' + rtol * |expected|`` elementwise, where ``atol' = atol * max(1,
    max|expected|)`` when ``scale_atol`` (else ``atol``); and PCC >= ``min_pcc`` when it is set."""

    rtol: float = 0.0
    atol: float = 0.0
    scale_atol: bool = True
    min_pcc: float | None = None
    exact: bool = False  # integers and bools: equal or not

    def describe(self, atol_used: float | None = None) -> str:
        if self.exact:
            return "exact"
        atol = f"atol {atol_used:.2g}" if atol_used is not None else f"atol {self.atol:.2g}" + (
            " x max(1, max|expected|)" if self.scale_atol else "")
        return f"rtol {self.rtol:.2g}, {atol}" + (f", PCC >= {self.min_pcc}" if self.min_pcc is not None else "")


def tolerance_for(dtype, rtol: float | None = None, atol: float | None = None) -> Tolerance:
    """The policy's tolerance for ``dtype``; a given ``rtol``/``atol`` replaces the policy's (an ``atol``
    given by the user is absolute: it is not scaled)."""
    name = np.dtype(dtype).name
    if name not in POLICY:
        return Tolerance(exact=True)
    r, a, pcc = POLICY[name]
    tol = Tolerance(r, a, True, pcc)
    if rtol is not None:
        tol = replace(tol, rtol=float(rtol))
    if atol is not None:
        tol = replace(tol, atol=float(atol), scale_atol=False)
    return tol


@dataclass
class Comparison:
    """How far ``actual`` is from ``expected``. ``max_rel`` is over the elements where expected != 0;
    ``worst`` is the index that breaks the tolerance most (or differs most when none does)."""

    shape: tuple[int, ...]
    dtype: str
    max_abs: float
    max_rel: float
    pcc: float | None  # None for non-float values, and where it is undefined (constant arrays)
    mismatches: int  # elements outside the tolerance
    size: int
    passed: bool
    reason: str  # why it failed ("" when it passed)
    tolerance: Tolerance
    atol_used: float = 0.0
    worst: tuple[int, ...] | None = None
    expected_at: float | None = None
    actual_at: float | None = None

    def summary(self) -> str:
        """One line: errors and verdict."""
        pcc = f"  pcc {self.pcc:.6f}" if self.pcc is not None else ""
        verdict = "ok" if self.passed else f"FAIL: {self.reason}"
        return f"max abs {self.max_abs:.3g}  max rel {self.max_rel:.3g}{pcc}  {verdict}"

    def worst_text(self) -> str:
        if self.worst is None:
            return ""
        return f"worst at {list(self.worst)}: expected {self.expected_at:.8g}, got {self.actual_at:.8g}"


def compare(expected, actual, tol: Tolerance | None = None, *, rtol: float | None = None,
            atol: float | None = None, pcc: bool = True) -> Comparison:
    """Compare ``actual`` with ``expected`` under ``tol`` (default: the policy for expected's dtype).
    ``pcc=False`` skips the correlation where the tolerance does not need it (bisect's intermediates)."""
    e, a = np.asarray(expected), np.asarray(actual)
    tol = tol or tolerance_for(e.dtype, rtol, atol)
    if e.shape != a.shape or e.dtype != a.dtype:
        what = "shape" if e.shape != a.shape else "dtype"
        return Comparison(e.shape, e.dtype.name, math.inf, math.inf, None, e.size, e.size, False,
                          f"{what} differs: expected {e.dtype.name}{list(e.shape)}, got {a.dtype.name}{list(a.shape)}",
                          tol)
    if tol.exact:
        return _compare_exact(e, a, tol)
    return _compare_float(e, a, tol, pcc or tol.min_pcc is not None)


def _compare_exact(e: np.ndarray, a: np.ndarray, tol: Tolerance) -> Comparison:
    shape = e.shape
    e, a = np.atleast_1d(e), np.atleast_1d(a)  # numpy turns 0-d results into scalars
    bad = e != a
    n = int(np.count_nonzero(bad))
    diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
    c = Comparison(shape, e.dtype.name, _max(diff), _max_rel(diff, np.abs(e.astype(np.float64))), None, n, e.size,
                   n == 0, "" if n == 0 else f"{n} of {e.size} elements differ (exact)", tol)
    if n:
        _set_worst(c, np.argmax(bad), e, a)
    return c


def _compare_float(e: np.ndarray, a: np.ndarray, tol: Tolerance, want_pcc: bool) -> Comparison:
    shape, name = e.shape, e.dtype.name
    # f16/bf16 are exact in f32, and f32 differences need no more: f64 only for f64 (half the memory traffic).
    ct = np.float64 if e.dtype == np.float64 else np.float32
    e, a = np.atleast_1d(e).astype(ct, copy=False), np.atleast_1d(a).astype(ct, copy=False)
    with np.errstate(all="ignore"):
        diff = np.abs(a - e)
        mag = np.abs(e)
        if not np.isfinite(diff).all():  # NaN or inf somewhere: the rare, slower path
            same = (e == a) | (np.isnan(e) & np.isnan(a))  # equal infinities, NaN in the same place
            diff[same] = 0
            diff[np.isnan(diff)] = np.inf  # NaN on one side only
            mag[~np.isfinite(mag)] = 0  # an infinite expected value allows no slack: equal or wrong
        scale = max(1.0, _max(mag)) if tol.scale_atol else 1.0
        atol = tol.atol * scale
        excess = diff - (atol + tol.rtol * mag)
        n = int(np.count_nonzero(excess > 0))
    pcc = pearson(e, a) if want_pcc else None
    reasons = [f"{n} of {e.size} elements outside {tol.describe(atol)}"] if n else []
    if tol.min_pcc is not None and pcc is not None and pcc < tol.min_pcc:
        reasons.append(f"PCC {pcc:.6f} < {tol.min_pcc}")
    c = Comparison(shape, name, _max(diff),
                   _max_rel(diff, mag), pcc, n, e.size, not reasons, "; ".join(reasons), tol, atol)
    if n or c.max_abs > 0:
        _set_worst(c, np.argmax(excess) if n else np.argmax(diff), e, a)
    return c


def pearson(e: np.ndarray, a: np.ndarray) -> float | None:
    """Pearson correlation over the elements finite on both sides, in f64; None where undefined."""
    e, a = np.asarray(e, np.float64).reshape(-1), np.asarray(a, np.float64).reshape(-1)
    ok = np.isfinite(e) & np.isfinite(a)
    if np.count_nonzero(ok) < 2:
        return None
    x, y = (e, a) if ok.all() else (e[ok], a[ok])
    x, y = x - x.mean(), y - y.mean()

    def dot(u, v) -> float:  # einsum, not BLAS: no thread pool to wake between the runtime's kernels
        return float(np.einsum("i,i->", u, v))

    den = math.sqrt(dot(x, x) * dot(y, y))
    return dot(x, y) / den if den > 0 else None


def _max(x: np.ndarray) -> float:
    return float(x.max()) if x.size else 0.0


def _max_rel(diff: np.ndarray, mag: np.ndarray) -> float:
    """max(diff / |expected|) over the elements where expected is finite and not 0."""
    rel = np.divide(diff, mag, out=np.zeros_like(diff), where=mag > 0)
    return _max(rel)


def _set_worst(c: Comparison, flat: int, e: np.ndarray, a: np.ndarray) -> None:
    """``flat`` indexes ``e`` and ``a`` raveled; the index is reported in ``c.shape``."""
    c.worst = tuple(int(i) for i in np.unravel_index(int(flat), c.shape))
    idx = np.unravel_index(int(flat), e.shape)
    c.expected_at, c.actual_at = float(e[idx]), float(a[idx])


# -- torch <-> numpy ----------------------------------------------------------------------------


def to_torch(a: np.ndarray):
    """A numpy array as a torch tensor (bf16 through its bits)."""
    import ml_dtypes
    import torch

    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(a, copy=True))


def to_numpy(t) -> np.ndarray:
    from wafercc.driver import to_numpy as _to_numpy

    return _to_numpy(t)


def run_eager(model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Eager PyTorch on ``inputs``: ``model.eval()``, no grad; every tensor of the output, flattened."""
    import torch

    model.eval()
    with torch.no_grad():
        out = model(*[to_torch(a) for a in inputs])
    return [to_numpy(t) for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


class MemoryStore:
    """The runtime's Store interface (``check``, ``get``) over in-memory arrays: running a model just
    compiled needs no weights file. Arrays are handed out read-only, as the MemoryX store does."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights = weights
        self.bytes_read = 0

    def check(self, declared) -> None:
        from runtime import StoreError

        for w in declared:
            a = self.weights.get(w.name)
            if a is None or a.shape != w.type.shape or a.dtype.name != _np_name(w.type):
                raise StoreError(f"weight '{w.name}' ({w.type}) is not among the compiled weights")

    def release(self, name: str) -> None:
        """Nothing to give back: the arrays are the caller's."""

    def get(self, name: str, expect=None) -> np.ndarray:
        v = self.weights[name].view()
        v.flags.writeable = False
        self.bytes_read += v.nbytes
        return v


def _np_name(t) -> str:
    from runtime.kernels import np_dtype

    return np_dtype(t).name


# -- verify: compiled model vs eager ------------------------------------------------------------


@dataclass
class OutputCheck:
    name: str  # out0, out1, ...
    comparison: Comparison


@dataclass
class Verification:
    outputs: list[OutputCheck]
    passed: bool
    inputs_from: str  # "the example inputs", "seeded random inputs (seed 3)", "inputs.npz"
    reason: str = ""  # a failure that is not one output's (output count)
    stats: object = None  # runtime.RunStats
    seconds: dict[str, float] = field(default_factory=dict)
    bisect: object = None  # wafercc.bisect.BisectResult when bisect ran
    diagnosis: str = ""  # where a mismatch comes from, when bisect found no diverging op
    stages: list = field(default_factory=list)  # (plan stage, passed, worst max_rel) when bisect ran


def verify_model(model, example_inputs, *, inputs=None, seed: int | None = None, name: str = "model",
                 source: str | None = None, capture: str = "export", target: str | None = None,
                 mode: str = "stream", out_dir: str | os.PathLike | None = None, rtol: float | None = None,
                 atol: float | None = None, bisect: bool | None = None, progress=None, precision: str = "fp32",
                 plan: bool = True, order: str = "grouped") -> Verification:
    """Compile ``model``, run the compiled module in the runtime and ``model`` in eager PyTorch on the
    same inputs, and compare every output. ``inputs``: None (the example inputs), an .npz path, or arrays;
    ``seed``: seeded random inputs of the example inputs' shapes and dtypes instead. ``bisect``: None runs
    the bisection when an output mismatches, True always, False never. The runtime follows the plan
    (``plan=False``: the graph-level run) with ``precision`` storage; a 16-bit precision is judged by that
    dtype's tolerance whatever the outputs' declared dtype."""
    import runtime
    from wafercc.driver import DEFAULT_TARGET, compile

    say = progress or (lambda _m: None)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    result = compile(model, example_inputs, name=name, source=source, capture=capture, target=target or DEFAULT_TARGET,
                     mode=mode, out_dir=out_dir, progress=progress)
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

    checks = [OutputCheck(f"out{i}", compare(w, g, _precision_tolerance(w, precision, rtol, atol), rtol=rtol,
                                             atol=atol)) for i, (w, g) in enumerate(zip(want, run.outputs))]
    reason = "" if len(want) == len(run.outputs) else \
        f"eager PyTorch returns {len(want)} tensor(s), the compiled model {len(run.outputs)}"
    passed = not reason and all(c.comparison.passed for c in checks)
    v = Verification(checks, passed, inputs_from, reason, run.stats, seconds)
    if bisect or (bisect is None and not passed):
        from wafercc.bisect import bisect_model

        say("bisecting: the FX graph in torch beside the graph-level WIR in the runtime")
        t = time.perf_counter()
        v.bisect = bisect_model(model, example_inputs, arrays, capture=capture, name=name, source=source,
                                rtol=rtol, atol=atol)
        seconds["bisect"] = time.perf_counter() - t
        if not passed and v.bisect.first is None:
            v.diagnosis = _diagnose(want, v.bisect.graph_outputs, rtol, atol)
        if plan and result.module.layers:
            say("bisecting the plan stages: graph, tiled, placed, routed")
            t = time.perf_counter()
            v.stages = bisect_stages(result.module, store_for(result), arrays, want, precision, rtol, atol)
            seconds["stages"] = time.perf_counter() - t
    return v


STAGES = (("graph", ""), ("tiled", "partition,tile"), ("placed", "place"), ("routed", "route,memplan,cost"))


def bisect_stages(module, store, arrays, want, precision: str, rtol, atol) -> list[tuple[str, bool, float]]:
    """Run the model at every plan stage (graph level, then tiled, placed, routed, each with the plan's
    runtime) and compare with eager: the first stage that fails is where the plan moved the numbers.
    Returns (stage, passed, worst max_rel) per stage."""
    import runtime
    from wafercc.ir import parse, print_module
    from wafercc.passes import run_pipeline

    m = parse(print_module(module))  # a copy, stripped back to graph level
    m.layers.clear()
    m.attrs.pop("plan.totals", None)
    for op in m.func().ops:
        op.attrs.pop("plan.layer", None)
    out = []
    for stage, passes in STAGES:
        if passes:
            m = run_pipeline(m, passes)
        got = runtime.Interpreter(m, store, plan=bool(passes), precision=precision).run(arrays).outputs
        cs = [compare(w, g, _precision_tolerance(w, precision, rtol, atol), rtol=rtol, atol=atol)
              for w, g in zip(want, got)]
        out.append((stage, all(c.passed for c in cs), max((c.max_rel for c in cs), default=0.0)))
    return out


def store_for(result):
    import runtime

    return runtime.Store(result.out_dir) if result.out_dir is not None else MemoryStore(result.weights)


def _precision_tolerance(expected, precision: str, rtol, atol) -> Tolerance | None:
    """With 16-bit storage the policy of that dtype applies (the reason for the looser bound is the storage,
    not the declared f32 of the outputs)."""
    if precision == "fp32" or not np.issubdtype(np.asarray(expected).dtype, np.floating):
        return None
    r, a, pcc = POLICY["float16" if precision == "fp16" else "bfloat16"]
    tol = Tolerance(r, a, True, pcc)
    if rtol is not None:
        tol = replace(tol, rtol=float(rtol))
    if atol is not None:
        tol = replace(tol, atol=float(atol), scale_atol=False)
    return tol


def _diagnose(eager: list[np.ndarray], graph: list[np.ndarray], rtol, atol) -> str:
    """Bisect found the graph-level WIR equal to the captured graph everywhere: is the captured graph
    itself equal to eager PyTorch?"""
    same = len(eager) == len(graph) and all(compare(e, g, rtol=rtol, atol=atol, pcc=False).passed
                                            for e, g in zip(eager, graph))
    if not same:
        return ("the captured graph itself differs from eager PyTorch on these inputs: the model's forward does "
                "something the capture did not record (Python-side state, randomness, or values baked in at "
                "capture time); the compiled model follows the captured graph")
    return ("the graph-level WIR matches PyTorch everywhere: the mismatch comes from a pass or the mapping "
            "(run the stages of `wafercc compile --emit STAGE` with `wafercc run` to find which)")


def _choose_inputs(func, example_inputs, inputs, seed) -> tuple[list[np.ndarray], str]:
    from runtime import bind_inputs, load_inputs, random_inputs

    if inputs is not None and seed is not None:
        from wafercc.errors import UsageError

        raise UsageError("error: give either inputs or a seed, not both")
    if seed is not None:
        return random_inputs(func, seed), f"seeded random inputs (seed {seed})"
    if isinstance(inputs, (str, os.PathLike)):
        return load_inputs(inputs, func), str(inputs)
    if inputs is not None:
        return bind_inputs(func, inputs), "the given inputs"
    ex = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    return bind_inputs(func, [to_numpy(t) for t in ex]), "the example inputs"


__all__ = ["POLICY", "Comparison", "MemoryStore", "OutputCheck", "Tolerance", "Verification", "compare", "pearson",
           "run_eager", "tolerance_for", "verify_model"]
