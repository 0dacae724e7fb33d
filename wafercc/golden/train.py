"""Training goldens (docs/golden.md, "Training goldens"): N optimizer steps of a training model, recorded from eager
PyTorch with torch.optim, checked against every later build by training again.

A training golden holds::

    inputs.npz    arg0, arg1, ...   the example inputs (the step's data, as verify --train uses them)
    eager.npz     <weight name>...  eager PyTorch's weights and buffers after N steps: the reference values
    golden.json   as an inference golden's, with "outputs": [] and "train": the optimizer, steps, micro-batches,
                  clipping, the policy's tolerances, eager's loss curve (the reference), the runtime's loss
                  curve at record time, and per weight its name, shape, dtype, kind and the sha256 of the
                  runtime's final bytes

Recording runs ``verify --train``'s measurement (the runtime and eager PyTorch from the same initial weights
and data) and writes nothing unless the runtime is within the training policy (wafercc/numerics/training.py).
A check recompiles, retrains N steps in the runtime and in eager PyTorch, and compares:

    eager now    vs the golden (losses, eager.npz)   did eager move: a torch or model change
    runtime now  vs the golden                        pass or drift, under the recorded training tolerances
    runtime now  vs the recorded sha256 per weight    the same bytes, or bits that moved within tolerance

Importing this module does not import torch; measuring does.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.artifacts import PLAN_FILE, WIR_FILE
from runtime.optim import AdamW, from_dict
from wafercc.errors import UsageError
from wafercc.golden import files as F
from wafercc.golden.check import _verified, golden_inputs
from wafercc.golden.check import check as check_inference
from wafercc.golden.result import GoldenResult, Status
from wafercc.golden.run import Failed, Subject, error_text, make_inputs, versions

# The plan totals a training golden keeps (a training plan's own; docs/training.md, "The training plan").
TRAIN_PLAN_TOTALS = ("layers", "step_seconds", "gradient_bytes_streamed", "samples_per_s")
BASE_RTOL = 1e-5  # the training policy's base (wafercc/numerics/training.py): fp32, as inference
SHOWN_STEPS = 8  # loss rows shown in a report: the first ones and the worst


@dataclass(frozen=True)
class TrainOptions:
    """How a training golden is compiled and trained: a runtime.optim optimizer, the steps, micro-batches per
    step and the clipping norm (as ``compile --train``), on ``target``."""

    optimizer: object
    steps: int = 3
    micro_batches: int = 1
    clip_norm: float | None = None
    target: str = "wse2"


@dataclass
class Trained:
    """One measurement: the runtime's and eager PyTorch's loss curves and final weights, the plan's hashes."""

    runtime_losses: list[float]
    eager_losses: list[float]
    runtime_weights: dict[str, np.ndarray]
    eager_weights: dict[str, np.ndarray]
    kinds: dict[str, str]  # weight name -> parameter | buffer
    verified: object  # wafercc.numerics.training.TrainVerification: runtime vs eager, now
    wir_sha256: str
    plan_sha256: str
    plan_totals: dict


def tolerances(opts: TrainOptions) -> dict[str, float]:
    """The training policy's bounds for ``opts`` (docs/training.md, "Verifying training"): a loss at step t
    within ``loss * t * max(1, |loss|)``; a parameter within ``weight * max(1, max|w|) + weight_abs``; a float
    buffer within ``buffer * max(1, max|b|)``; integer buffers exact."""
    n, adam = opts.steps, isinstance(opts.optimizer, AdamW)
    return {
        "loss": BASE_RTOL,
        "weight": BASE_RTOL * n,
        "weight_abs": 2 * opts.optimizer.lr * n if adam else 0.0,
        "buffer": BASE_RTOL * n,
    }


def measure(subject: Subject, opts: TrainOptions, inputs: list[np.ndarray]) -> Trained:
    """Compile ``subject`` for training (in a temp directory), train ``opts.steps`` steps in the runtime and in
    eager PyTorch with torch.optim from the same weights and data (``inputs`` and, with K micro-batches, the
    K-1 variations verify --train makes). Failed: a stage raised."""
    from wafercc.driver import compile_training  # torch
    from wafercc.frontend.interop import to_torch
    from wafercc.numerics import training as NT

    example = tuple(to_torch(a) for a in inputs)
    eager_model = copy.deepcopy(subject.model)  # the same initial weights; capture leaves the model untouched
    batches = NT.micro_batches(example, opts.micro_batches)
    tmp = Path(tempfile.mkdtemp(prefix="wafercc-golden-train-"))
    out = tmp / "model"
    try:
        try:
            compile_training(
                subject.model,
                example,
                opts.optimizer,
                micro_batches=opts.micro_batches,
                clip_norm=opts.clip_norm,
                name=subject.name,
                target=opts.target,
                out_dir=out,
            )
        except (Exception, SystemExit) as e:  # a model that exits fails its golden, never passes it
            raise Failed(Status.COMPILE_FAILED, error_text(e)) from e
        wir, plan = (out / WIR_FILE).read_text(), (out / PLAN_FILE).read_text()
        try:
            ours = NT.train_in_runtime(out, batches, opts.steps, opts.optimizer, opts.clip_norm)
        except (Exception, SystemExit) as e:
            raise Failed(Status.RUN_FAILED, f"the runtime raised {error_text(e)}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        theirs = NT.train_in_eager(eager_model, batches, opts.steps, opts.optimizer, opts.clip_norm)
    except (Exception, SystemExit) as e:
        raise Failed(Status.RUN_FAILED, f"eager PyTorch raised {error_text(e)}") from e
    verified = NT.compare_runs(ours, theirs, opts.steps, opts.optimizer)
    # a buffer the step never reads nor writes is not in the compiled module: nothing of it to record
    skip = {n for n in theirs["unchanged"] if n not in ours["weights"]}
    theirs["weights"] = {n: w for n, w in theirs["weights"].items() if n not in skip}
    kinds = {n: ("parameter" if n in ours["grads"] else "buffer") for n in theirs["weights"]}
    totals = json.loads(plan).get("totals", {})
    return Trained(
        [float(v) for v in ours["losses"]],
        [float(v) for v in theirs["losses"]],
        ours["weights"],
        theirs["weights"],
        kinds,
        verified,
        F.wir_sha256(wir),
        F.sha256(plan),
        {k: totals[k] for k in TRAIN_PLAN_TOTALS if k in totals},
    )


def weight_sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def settings(opts: TrainOptions) -> dict:
    return {"target": opts.target, "mode": "stream", "precision": "fp32", "capture": "export"}


# -- recording ---------------------------------------------------------------------------------------------


def record_training(subject: Subject, dest: Path, opts: TrainOptions) -> GoldenResult:
    """Train ``subject`` in the runtime and in eager PyTorch and write its training golden to ``dest`` when the
    runtime is within the training policy; otherwise write nothing (NOT_RECORDED, with what failed)."""
    start = time.perf_counter()
    res = GoldenResult(subject.name, subject.source, dest, Status.RECORDED, settings=settings(opts))
    inputs, inputs_from = make_inputs(subject.example_inputs, None)
    try:
        t = measure(subject, opts, inputs)
    except Failed as f:
        res.status, res.message = f.status, f.message
        return _done(res, start)
    if not t.verified.passed:
        bad = "; ".join(f"{c.name} off by {c.max_abs:.3g} (bound {c.bound:.3g})" for c in t.verified.failures()[:5])
        res.status = Status.NOT_RECORDED
        res.message = f"not recorded: the runtime's training does not match eager PyTorch with torch.optim: {bad}"
        return _done(res, start)
    F.write_golden(dest, golden_files(subject, opts, inputs, inputs_from, t))
    res.message = (
        f"{opts.steps} step(s) of {opts.optimizer.kind}, loss {t.eager_losses[0]:.6g} -> {t.eager_losses[-1]:.6g}, "
        f"{len(t.eager_weights)} weight(s); inputs: {inputs_from}"
    )
    return _done(res, start)


def golden_files(subject: Subject, opts: TrainOptions, inputs, inputs_from: str, t: Trained) -> dict[str, bytes]:
    """The bytes of every file of a training golden: the same measurements give the same bytes."""
    names = list(t.eager_weights)
    blobs = {
        F.INPUTS: F.npz_bytes({f"arg{i}": a for i, a in enumerate(inputs)}),
        F.EAGER: F.npz_bytes({n: t.eager_weights[n] for n in names}),
    }
    data = {
        "format": F.FORMAT,
        "name": subject.name,
        "model": subject.source,
        "entry": subject.entry,
        "settings": settings(opts),
        "inputs": {
            "from": inputs_from,
            "seed": None,
            "arrays": [_describe(f"arg{i}", a) for i, a in enumerate(inputs)],
        },
        "tolerance_options": {"rtol": None, "atol": None},
        "outputs": [],
        "train": {
            "optimizer": opts.optimizer.to_dict(),
            "steps": opts.steps,
            "micro_batches": opts.micro_batches,
            "clip_norm": opts.clip_norm,
            "tolerance": tolerances(opts),
            "losses": t.eager_losses,
            "runtime_losses": t.runtime_losses,
            "weights": [
                {
                    **_describe(n, t.eager_weights[n]),
                    "kind": t.kinds[n],
                    "sha256": weight_sha256(t.runtime_weights[n]),
                }
                for n in names
            ],
        },
        "wir_sha256": t.wir_sha256,
        "plan_sha256": t.plan_sha256,
        "plan": t.plan_totals,
        "versions": versions(),
        "files": {name: F.sha256(b) for name, b in blobs.items()},
    }
    return {**blobs, F.GOLDEN_JSON: F.json_text(data).encode()}


def train_options_of(data: dict, target: str | None = None) -> TrainOptions:
    """The options a training golden was recorded with (golden.json already checked against the schema)."""
    tr = data["train"]
    return TrainOptions(
        optimizer=from_dict(tr["optimizer"]),
        steps=tr["steps"],
        micro_batches=tr["micro_batches"],
        clip_norm=tr["clip_norm"],
        target=target or data["settings"]["target"],
    )


def _describe(name: str, a: np.ndarray) -> dict:
    return {"name": name, "shape": list(a.shape), "dtype": a.dtype.name}


def _done(res: GoldenResult, start: float) -> GoldenResult:
    res.seconds = time.perf_counter() - start
    return res


# -- checking ----------------------------------------------------------------------------------------------


def check(
    subject: Subject,
    golden: Path,
    *,
    target: str | None = None,
    mode: str | None = None,
    precision: str | None = None,
    run_bisect: bool = True,
) -> GoldenResult:
    """Check ``subject`` against the golden in ``golden``, an inference golden (wafercc/golden/check.py) or a
    training one (its golden.json has "train"); ``target``/``mode``/``precision`` replace the recorded ones."""
    if (golden / F.GOLDEN_JSON).is_file():
        data = F.read_golden_json(golden)
        if "train" in data:
            return check_training(subject, golden, data, target=target, mode=mode, precision=precision)
    return check_inference(subject, golden, target=target, mode=mode, precision=precision, run_bisect=run_bisect)


@dataclass
class Row:
    """One compared quantity: a loss of one step or a final weight."""

    name: str
    now: float  # runtime now vs the eager golden: max abs difference
    bound: float
    eager: float  # eager now vs the eager golden
    same_bits: bool | None = None  # weights: the runtime's bytes equal the recorded sha256

    @property
    def passed(self) -> bool:
        return self.now <= self.bound

    @property
    def eager_passed(self) -> bool:
        return self.eager <= self.bound


def check_training(
    subject: Subject, golden: Path, data: dict, *, target=None, mode=None, precision=None
) -> GoldenResult:
    """Check ``subject`` against the training golden ``golden`` (golden.json ``data``)."""
    if (mode or "stream") != "stream" or (precision or "fp32") != "fp32":
        raise UsageError(f"{golden} is a training golden: it trains in stream mode, fp32 (no --mode or --precision)")
    start = time.perf_counter()
    opts = train_options_of(data, target)
    res = GoldenResult(subject.name, subject.source, golden, Status.PASS, settings=settings(opts))
    described = data["train"]["weights"]
    _check_lengths(golden, data)
    try:
        inputs = golden_inputs(golden, data, subject)
        reference = dict(zip((d["name"] for d in described), F.read_npz(_verified(golden, F.EAGER, data), described)))
        t = measure(subject, opts, inputs)
    except Failed as f:
        res.status, res.message = f.status, f.message
        return _done(res, start)
    rows = _rows(data, reference, t)
    res.status, res.message = _verdict(rows, t, described)
    res.details = format_rows(rows, data["train"]["runtime_losses"], t.runtime_losses)
    _plan_note(res, data, t)
    return _done(res, start)


def _check_lengths(golden: Path, data: dict) -> None:
    tr = data["train"]
    if len(tr["losses"]) != tr["steps"] or len(tr["runtime_losses"]) != tr["steps"]:
        raise UsageError(
            f"{golden / F.GOLDEN_JSON}: train.losses and train.runtime_losses must hold one loss per step "
            f"({tr['steps']}); the golden is damaged: restore it or re-record it with `wafercc golden record --train`"
        )


def _rows(data: dict, reference: dict[str, np.ndarray], t: Trained) -> list[Row]:
    tr, tol = data["train"], data["train"]["tolerance"]
    rows = []
    for i, want in enumerate(tr["losses"]):
        bound = tol["loss"] * (i + 1) * max(1.0, abs(want))
        now = t.runtime_losses[i] if i < len(t.runtime_losses) else math.nan
        eager = t.eager_losses[i] if i < len(t.eager_losses) else math.nan
        rows.append(Row(f"loss step {i + 1}", _diff(now, want), bound, _diff(eager, want)))
    for d in tr["weights"]:
        name, want = d["name"], reference[d["name"]]
        got, eager = t.runtime_weights.get(name), t.eager_weights.get(name)
        if want.dtype.kind in "iub":
            bound = 0.0
        else:
            scale = max(1.0, float(np.abs(want.astype(np.float64)).max())) if want.size else 1.0
            rel = tol["weight"] if d["kind"] == "parameter" else tol["buffer"]
            bound = rel * scale + (tol["weight_abs"] if d["kind"] == "parameter" else 0.0)
        same = got is not None and weight_sha256(got) == d["sha256"]
        rows.append(Row(name, _max_abs(got, want), bound, _max_abs(eager, want), same))
    return rows


def _diff(a: float, b: float) -> float:
    d = abs(a - b)
    return d if math.isfinite(d) else math.inf


def _max_abs(got, want: np.ndarray) -> float:
    if got is None or np.shape(got) != want.shape:
        return math.inf
    if not want.size:
        return 0.0
    d = np.abs(np.asarray(got, np.float64) - want.astype(np.float64))
    return float(d.max()) if np.all(np.isfinite(d)) else math.inf


def _verdict(rows: list[Row], t: Trained, described: list[dict]) -> tuple[Status, str]:
    eager_moved = [r for r in rows if not r.eager_passed]
    if eager_moved or set(t.eager_weights) != {d["name"] for d in described}:
        which = ", ".join(f"{r.name} by {r.eager:.3g}" for r in eager_moved[:4]) or "its weights' names changed"
        agree = t.verified.passed
        return Status.EAGER_CHANGED, (
            f"eager PyTorch no longer reproduces the golden's training ({which}): torch or the model changed, not "
            "the compiler; "
            + (
                "the runtime's training matches today's eager PyTorch: re-record (--update) if the change is intended"
                if agree
                else "and the runtime's training does not match today's eager PyTorch either"
            )
        )
    drifted = [r for r in rows if not r.passed]
    if drifted:
        which = ", ".join(f"{r.name} by {r.now:.3g} (bound {r.bound:.3g})" for r in drifted[:4])
        return Status.DRIFTED, (
            f"the runtime's training drifted from the eager golden ({which}); eager PyTorch still reproduces the "
            "golden: the compiler's numbers moved"
        )
    moved = [r for r in rows if r.same_bits is False]
    if moved:
        worst = max(moved, key=lambda r: r.now / r.bound if r.bound else 0.0)
        return Status.WEIGHTS_CHANGED, (
            f"the final weights' bytes differ from the recorded sha256 ({len(moved)} of "
            f"{sum(r.same_bits is not None for r in rows)}: {', '.join(r.name for r in moved[:4])}"
            f"{', ...' if len(moved) > 4 else ''}), but every loss and weight is within the training tolerance of "
            f"the eager golden (closest: {worst.name}, {worst.now:.3g} of {worst.bound:.3g} allowed): the runtime's "
            "last bits moved (another summation order or kernel), not its results; re-record (--update) to accept them"
        )
    return Status.PASS, ""


def format_rows(rows: list[Row], recorded_runtime: list[float], runtime_now: list[float]) -> list[str]:
    """The comparison table of a training check: losses (the first steps and the worst), then every weight."""
    losses = [r for r in rows if r.same_bits is None]
    weights = [r for r in rows if r.same_bits is not None]
    shown = losses[:SHOWN_STEPS]
    worst = max(losses, key=lambda r: r.now / r.bound if r.bound else 0.0, default=None)
    if worst is not None and worst not in shown:
        shown.append(worst)
    same_curve = recorded_runtime == runtime_now
    head = ("quantity", "vs eager golden", "bound", "bits vs record", "eager now vs golden")
    table = [head]
    for r in shown:
        table.append((r.name, _num(r.now, r.passed), f"{r.bound:.3g}", "-", _num(r.eager, r.eager_passed)))
    for r in weights:
        bits = "same" if r.same_bits else "moved"
        table.append((r.name, _num(r.now, r.passed), f"{r.bound:.3g}", bits, _num(r.eager, r.eager_passed)))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    note = "the same as" if same_curve else "different from"
    lines.append(f"the runtime's loss curve is {note} the one recorded, bit for bit")
    return lines


def _num(v: float, ok: bool) -> str:
    return f"{v:.3g}" + ("" if ok else "  FAIL")


def _plan_note(res: GoldenResult, data: dict, t: Trained) -> None:
    changed = [
        what
        for what, key, now in (("the WIR", "wir_sha256", t.wir_sha256), ("plan.json", "plan_sha256", t.plan_sha256))
        if data.get(key) != now
    ]
    if not changed:
        return
    res.plan_before, res.plan_after = data.get("plan", {}), t.plan_totals
    note = f"{' and '.join(changed)} changed"
    if res.status is Status.PASS:
        res.status, res.message = Status.PLAN_CHANGED, f"{note}; the numbers did not"
    else:
        res.message += f"; {note}"
