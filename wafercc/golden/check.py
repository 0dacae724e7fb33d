"""Checking a golden: recompile, rerun, compare with what was recorded. A check never writes.

Three comparisons per output, each under the tolerance recorded in golden.json:

    runtime now  vs eager.npz     pass or drift: eager PyTorch is the reference
    runtime now  vs runtime.npz   did the compiler's numbers move at all, and by how much
    eager now    vs eager.npz     did eager move (torch or the model changed): not the compiler's doing

A drift runs the bisection, which names the first op whose value moved and its line in the model.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from wafercc.golden import files as F
from wafercc.golden.record import options_of, settings
from wafercc.golden.result import GoldenResult, OutputResult, Status
from wafercc.golden.run import (
    Failed,
    Options,
    Subject,
    bisect,
    compile_subject,
    eager,
    run_compiled,
    tolerance,
    tolerance_from_json,
)
from wafercc.errors import UsageError
from wafercc.numerics import Comparison, compare


def check(
    subject: Subject,
    golden: Path,
    *,
    target: str | None = None,
    mode: str | None = None,
    precision: str | None = None,
    run_bisect: bool = True,
) -> GoldenResult:
    """Check ``subject`` against the golden in ``golden``; ``target``/``mode``/``precision`` replace the
    recorded ones. UsageError: the golden is unreadable or was edited since it was recorded."""
    start = time.perf_counter()
    if not (golden / F.GOLDEN_JSON).is_file():
        return GoldenResult(
            subject.name,
            subject.source,
            golden,
            Status.NO_GOLDEN,
            f"no golden in {golden}: record one with `wafercc golden record` (a check never does)",
        )
    data = F.read_golden_json(golden)
    options = options_of(data, target=target, mode=mode, precision=precision)
    res = GoldenResult(subject.name, subject.source, golden, Status.PASS, settings=settings(options))
    try:
        inputs = golden_inputs(golden, data, subject)
        eager_now = eager(subject, inputs)
        compiled = compile_subject(subject, options)
        got = run_compiled(compiled, inputs, options.precision)
    except Failed as f:
        res.status, res.message = f.status, f.message
        res.seconds = time.perf_counter() - start
        return res
    ref, previous = (_recorded(golden, name, data) for name in (F.EAGER, F.RUNTIME))
    tols = _tolerances(data, options)
    res.outputs = [
        OutputResult(f"out{i}", _cmp(ref, got, i, tol), _cmp(previous, got, i, tol), _cmp(ref, eager_now, i, tol))
        for i, tol in enumerate(tols)
    ]
    res.status, res.message, compiler_wrong = _verdict(res.outputs, ref, got, eager_now, tols)
    _plan(res, data, compiled)
    if run_bisect and compiler_wrong:
        res.bisect, res.diagnosis = bisect(subject, inputs, options)
    res.seconds = time.perf_counter() - start
    return res


def golden_inputs(golden: Path, data: dict, subject: Subject) -> list[np.ndarray]:
    """inputs.npz, once the model's example inputs still have its shapes and dtypes."""
    described = data["inputs"]["arrays"]
    recorded = [(d["shape"], d["dtype"]) for d in described]
    now = [(list(t.shape), str(t.dtype).removeprefix("torch.")) for t in subject.example_inputs]
    if now != recorded:
        raise Failed(
            Status.EAGER_CHANGED,
            f"the model's example inputs changed: now {_sig(now)}, the golden has "
            f"{_sig(recorded)}; re-record it (--update) if that is intended",
        )
    return F.read_npz(_verified(golden, F.INPUTS, data), described)


def _recorded(golden: Path, name: str, data: dict) -> list[np.ndarray]:
    return F.read_npz(_verified(golden, name, data), data["outputs"])


def _verified(golden: Path, name: str, data: dict) -> Path:
    """A golden's file, once its bytes are the ones golden.json recorded: a hand-edited or half-merged
    reference would otherwise read as "eager changed"."""
    path = golden / name
    want = data.get("files", {}).get(name)
    if not path.is_file() or (want and F.sha256(path.read_bytes()) != want):
        raise UsageError(
            f"{path} is missing or differs from what golden.json recorded (its sha256): the "
            "golden was edited or damaged; restore it or re-record it with `wafercc golden record`"
        )
    return path


def _tolerances(data: dict, options: Options) -> list:
    """The recorded tolerances; the policy's for the new precision when a check overrides it."""
    if options.precision != data["settings"]["precision"]:
        return [tolerance(o["dtype"], options) for o in data["outputs"]]
    return [tolerance_from_json(o["tolerance"]) for o in data["outputs"]]


def _cmp(expected: list[np.ndarray], actual: list[np.ndarray], i: int, tol) -> Comparison | None:
    if i >= len(expected) or i >= len(actual):
        return None
    return compare(expected[i], actual[i], tol)


def _verdict(outputs: list[OutputResult], ref, got, eager_now, tols) -> tuple[Status, str, bool]:
    """The status, why, and whether the compiled model disagrees with eager PyTorch (worth a bisect).
    Eager moving comes first: the reference itself is then stale."""
    if len(eager_now) != len(ref) or not all(o.eager.passed for o in outputs if o.eager):
        moved = _which(outputs, "eager") or f"it now returns {len(eager_now)} tensor(s), the golden has {len(ref)}"
        today = [compare(e, g, t) for e, g, t in zip(eager_now, got, tols)]
        agree = len(eager_now) == len(got) and all(c.passed for c in today)
        return (
            Status.EAGER_CHANGED,
            (
                f"eager PyTorch no longer reproduces eager.npz ({moved}): "
                "torch or the model changed, not the compiler; "
                + (
                    "the compiled model matches today's eager PyTorch: re-record (--update) if the change is intended"
                    if agree
                    else "and the compiled model does not match today's eager PyTorch either"
                )
            ),
            not agree,
        )
    if len(got) != len(ref) or not all(o.vs_golden.passed for o in outputs if o.vs_golden):
        moved = (
            _which(outputs, "vs_golden")
            or f"the compiled model returns {len(got)} tensor(s), the golden has {len(ref)}"
        )
        return (
            Status.DRIFTED,
            (
                f"the runtime drifted from the eager golden ({moved}); eager PyTorch still "
                "reproduces eager.npz: the compiler's numbers moved"
            ),
            True,
        )
    return Status.PASS, "", False


def _which(outputs: list[OutputResult], field: str) -> str:
    bad = [(o.name, getattr(o, field)) for o in outputs if getattr(o, field) and not getattr(o, field).passed]
    return ", ".join(f"{name} by max abs {c.max_abs:.3g}" for name, c in bad)


def _plan(res: GoldenResult, data: dict, compiled) -> None:
    """Hashes that moved: a pass still, reported so that a reviewer sees the plan changed."""
    changed = [
        what
        for what, key, now in (
            ("the WIR", "wir_sha256", compiled.wir_sha256),
            ("plan.json", "plan_sha256", compiled.plan_sha256),
        )
        if data.get(key) != now
    ]
    if not changed:
        return
    res.plan_before, res.plan_after = data.get("plan", {}), compiled.plan_totals
    moved = [f"{k} {res.plan_before.get(k)} -> {v}" for k, v in res.plan_after.items() if res.plan_before.get(k) != v]
    note = f"{' and '.join(changed)} changed" + (f" ({', '.join(moved)})" if moved else "")
    if res.status is Status.PASS:
        res.status, res.message = Status.PLAN_CHANGED, f"{note}; the numbers did not"
    else:
        res.message += f"; {note}"


def _sig(items: list[tuple[list[int], str]]) -> str:
    return "(" + ", ".join(f"{d}{s}" for s, d in items) + ")"
