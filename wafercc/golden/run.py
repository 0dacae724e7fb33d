"""Measuring a model as a golden sees it: its inputs, eager PyTorch, the compiled plan, the runtime.

Recording and checking do the same measurements; only what they compare them with differs.
"""

from __future__ import annotations

import itertools
import os
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

import runtime
import wafercc
from wafercc.driver import compile
from wafercc.golden.files import display_path, dtype_of, sha256, wir_sha256
from wafercc.golden.result import Status
from wafercc.ir import WaferError
from wafercc.mapping.check import check_plan
from wafercc.mapping.report import plan_json
from wafercc.numerics import Tolerance, tolerance_for

# The plan totals golden.json keeps: enough to say what a plan change did, small enough to diff.
PLAN_TOTALS = ("layers", "cycles", "max_colors", "peak_bytes_per_pe", "utilization")
# A 16-bit storage precision rounds every value the wafer stores: float outputs get that dtype's policy.
STORAGE = {"bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class Options:
    """How a golden is compiled and run. ``seed`` None: the example inputs; ``rtol``/``atol`` None: the
    tolerance policy (docs/runtime.md)."""

    target: str = "wse2"
    mode: str = "stream"
    precision: str = "fp32"
    capture: str = "export"
    seed: int | None = None
    rtol: float | None = None
    atol: float | None = None


@dataclass
class Subject:
    """A model to golden: the module, its example inputs, and where it comes from."""

    name: str  # the golden's directory name
    model: object
    example_inputs: tuple
    source: str  # a model file relative to ``root`` (as golden.json stores it), or a test id
    entry: str | None = None  # --entry MODEL:INPUTS of a model file
    root: Path = field(default_factory=Path.cwd)  # bisect names source lines relative to it


class Failed(Exception):
    """A stage of a measurement failed: the status to report and a one-paragraph message."""

    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def load_subject(path: str | os.PathLike, root: Path, *, entry: str | None = None) -> Subject:
    """Load a model file (WaferError: it does not load). Absolute paths, so that the locations torch
    records do not depend on the directory the command runs in."""
    from wafercc.frontend import load_model_file  # torch

    p = Path(path).resolve()
    model, example_inputs = load_model_file(p, entry)
    return Subject(p.stem, model, example_inputs, display_path(p, root), entry, root)


def on_meta(subject: Subject) -> bool:
    """A model on the meta device has no weight data: it can be planned, not run, so it has no golden."""
    tensors = itertools.chain(subject.model.parameters(), subject.model.buffers(), subject.example_inputs)
    return any(t.device.type == "meta" for t in tensors)


def make_inputs(example_inputs, seed: int | None) -> tuple[list[np.ndarray], str]:
    """The example inputs, or seeded random ones of the same shapes and dtypes. Random integers keep the
    example's range ([min(0, lo), hi + 1)): token ids stay inside the vocabulary, a 0/1 mask stays 0/1."""
    from wafercc.frontend.interop import to_numpy  # torch

    arrays = [to_numpy(t) for t in example_inputs]
    if seed is None:
        return arrays, "the example inputs"
    rng = np.random.default_rng(seed)
    return [_random_like(a, rng) for a in arrays], f"seeded random inputs (seed {seed})"


def _random_like(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if a.dtype == np.bool_:
        return rng.integers(0, 2, a.shape).astype(bool)
    if a.dtype.kind in "iu":
        lo = min(0, int(a.min())) if a.size else 0
        hi = int(a.max()) + 1 if a.size else 1
        return rng.integers(lo, max(hi, lo + 1), a.shape).astype(a.dtype)
    return rng.standard_normal(a.shape, dtype=np.float32).astype(a.dtype)  # floats, bf16 included


def eager(subject: Subject, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from wafercc.numerics.eager import run_eager  # torch

    try:
        return run_eager(subject.model, inputs)
    except (Exception, SystemExit) as e:  # a model that exits fails its golden, never passes it
        raise Failed(Status.RUN_FAILED, f"eager PyTorch raised {error_text(e)}") from e


@dataclass
class Compiled:
    result: object  # wafercc.driver.CompileResult
    wir_sha256: str
    plan_sha256: str
    plan_totals: dict


def compile_subject(subject: Subject, options: Options) -> Compiled:
    """Compile in memory (a golden keeps hashes, not the WIR). No ``source``: it is a location too."""
    try:
        result = compile(
            subject.model,
            subject.example_inputs,
            name=subject.name,
            capture=options.capture,
            target=options.target,
            mode=options.mode,
        )
        plan = plan_json(result.module)
        typed = check_plan(result.module)  # the plan's promises, checked before the golden runs it
    except (Exception, SystemExit) as e:  # a model that exits fails its golden, never passes it
        raise Failed(Status.COMPILE_FAILED, error_text(e)) from e
    totals = typed.totals.to_attrs() if typed is not None and typed.totals is not None else {}
    return Compiled(result, wir_sha256(result.text), sha256(plan), {k: totals[k] for k in PLAN_TOTALS if k in totals})


def run_compiled(compiled: Compiled, inputs: list[np.ndarray], precision: str) -> list[np.ndarray]:
    try:
        interp = runtime.Interpreter(
            compiled.result.module, runtime.MemoryStore(compiled.result.weights), precision=precision
        )
        return interp.run(inputs).outputs
    except (Exception, SystemExit) as e:  # a model that exits fails its golden, never passes it
        raise Failed(Status.RUN_FAILED, f"the runtime raised {error_text(e)}") from e


def tolerance(dtype_name: str, options: Options) -> Tolerance:
    storage = STORAGE.get(options.precision)
    dt = dtype_of(dtype_name)
    is_float = dt.kind == "f" or dt.name == "bfloat16"
    return tolerance_for(dtype_of(storage) if storage and is_float else dt, options.rtol, options.atol)


def tolerance_json(tol: Tolerance) -> dict:
    return asdict(tol)


def tolerance_from_json(d: dict) -> Tolerance:
    """The recorded tolerance (golden.json's schema checked its fields); keys this version does not know are
    ignored, not a crash."""
    return Tolerance(**{f.name: d[f.name] for f in fields(Tolerance) if f.name in d})


def versions() -> dict[str, str]:
    import torch  # torch: only when recording

    return {"numpy": np.__version__, "torch": torch.__version__, "wafercc": wafercc.__version__}


def error_text(e: BaseException) -> str:
    """A user's mistake is a WaferError with a complete message; anything else is a wafercc bug, named with
    the frame that raised it so the report points somewhere without a traceback."""
    if isinstance(e, WaferError):
        return str(e)
    if isinstance(e, SystemExit):
        return f"the model's code called sys.exit({'' if e.code is None else repr(e.code)})"
    frames = traceback.extract_tb(e.__traceback__)
    where = f" (an internal error, at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{where}"


def bisect(subject: Subject, inputs: list[np.ndarray], options: Options):
    """Name the first op whose value leaves the tolerance: (BisectResult or None, a diagnosis when bisect
    finds nothing or cannot run). It compares the graph-level WIR with the captured FX graph, so a drift
    that comes from a pass or the plan shows as "no divergence"; the diagnosis says so."""
    from wafercc.numerics.bisect import bisect_model  # torch

    try:
        r = bisect_model(
            subject.model,
            subject.example_inputs,
            inputs,
            capture=options.capture,
            name=subject.name,
            rtol=options.rtol,
            atol=options.atol,
            cwd=str(subject.root),
        )
    except Exception as e:  # noqa: BLE001 - not swallowed: the report says bisect failed, and why
        return None, f"bisect could not run: {error_text(e)}"
    if r.first is not None:
        return r, ""
    if options.precision != "fp32":
        return r, (
            f"bisect runs in fp32 and found no diverging op: the difference comes from {options.precision} "
            "storage rounding"
        )
    return r, (
        "bisect found every graph-level op equal to PyTorch: the drift comes from a pass or the mapping "
        "(the plan); compare `wafercc compile --emit STAGE` outputs with `wafercc run`"
    )
