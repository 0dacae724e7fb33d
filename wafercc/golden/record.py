"""Recording a golden: eager PyTorch's outputs are the reference; the runtime must match them to be recorded.

A golden is never made from wafercc alone: if the compiled model does not match eager PyTorch at record
time, nothing is written and the result says which op diverges (bisect).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from wafercc.golden import files as F
from wafercc.golden.result import GoldenResult, OutputResult, Status
from wafercc.golden.run import (
    Compiled,
    Failed,
    Options,
    Subject,
    bisect,
    compile_subject,
    eager,
    make_inputs,
    run_compiled,
    tolerance,
    tolerance_json,
    versions,
)
from wafercc.ir import WaferError
from wafercc.numerics import compare


def record(subject: Subject, dest: Path, options: Options) -> GoldenResult:
    """Measure ``subject`` and write its golden to ``dest`` (replacing any golden there) when the runtime
    matches eager PyTorch under the tolerance; otherwise write nothing (status NOT_RECORDED)."""
    start = time.perf_counter()
    res = GoldenResult(subject.name, subject.source, dest, Status.RECORDED, settings=settings(options))
    try:
        inputs, inputs_from = make_inputs(subject.example_inputs, options.seed)
        want = kept_eager(dest, inputs, eager(subject, inputs), options)
        compiled = compile_subject(subject, options)
        got = run_compiled(compiled, inputs, options.precision)
    except Failed as f:
        res.status, res.message = f.status, f.message
        return _done(res, start)
    res.outputs = [
        OutputResult(f"out{i}", compare(w, g, tolerance(w.dtype.name, options)))
        for i, (w, g) in enumerate(zip(want, got))
    ]
    problem = _mismatch(want, got, res.outputs)
    if problem:
        res.status, res.message = Status.NOT_RECORDED, f"not recorded: {problem}"
        res.bisect, res.diagnosis = bisect(subject, inputs, options)
        return _done(res, start)
    F.write_golden(dest, golden_files(subject, options, (inputs, inputs_from), want, got, res.outputs, compiled))
    res.message = f"{len(want)} output(s), inputs: {inputs_from}"
    return _done(res, start)


def kept_eager(dest: Path, inputs: list[np.ndarray], want: list[np.ndarray], options: Options) -> list[np.ndarray]:
    """The eager reference to record: the golden's own eager.npz when one was recorded on the same inputs
    (byte for byte) and today's eager PyTorch reproduces it under the tolerance, else today's outputs.

    Eager PyTorch's last bits depend on the machine, not on wafercc: the same torch build gives outputs up to
    a few ulps apart on one CPU under MKL's AVX2 and AVX-512 kernels (measured on examples/mlp.py: 8e-8).
    Re-recording a golden after a plan change must not move its reference, so a reference eager still
    reproduces is kept; a golden that cannot be read, or whose inputs or eager outputs moved, gets new ones."""
    try:
        data = F.read_golden_json(dest)
        if data["settings"]["precision"] != options.precision or data["inputs"].get("seed") != options.seed:
            return want
        for name in (F.INPUTS, F.EAGER):  # files edited since they were recorded are no reference
            if F.sha256((dest / name).read_bytes()) != data["files"][name]:
                return want
        recorded_inputs = F.read_npz(dest / F.INPUTS, data["inputs"]["arrays"])
        recorded = F.read_npz(dest / F.EAGER, data["outputs"])
    except (WaferError, OSError, KeyError, TypeError):
        return want  # no golden there, or a damaged one: record afresh
    same_inputs = len(recorded_inputs) == len(inputs) and all(
        a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        for a, b in zip(recorded_inputs, inputs)
    )
    if not same_inputs or len(recorded) != len(want):
        return want
    for r, w in zip(recorded, want):
        if r.dtype != w.dtype or r.shape != w.shape or not compare(r, w, tolerance(w.dtype.name, options)).passed:
            return want
    return recorded


def _mismatch(want: list[np.ndarray], got: list[np.ndarray], outputs: list[OutputResult]) -> str:
    if len(want) != len(got):
        return f"eager PyTorch returns {len(want)} tensor(s), the compiled model {len(got)}"
    bad = [o for o in outputs if not o.vs_golden.passed]
    if bad:
        return "the runtime does not match eager PyTorch: " + "; ".join(f"{o.name}: {o.vs_golden.reason}" for o in bad)
    return ""


def golden_files(
    subject: Subject,
    options: Options,
    inputs: tuple[list[np.ndarray], str],
    want: list[np.ndarray],
    got: list[np.ndarray],
    outputs: list[OutputResult],
    compiled: Compiled,
) -> dict[str, bytes]:
    """The bytes of every file of the golden: the same measurements give the same bytes."""
    arrays, inputs_from = inputs
    blobs = {
        F.INPUTS: F.npz_bytes({f"arg{i}": a for i, a in enumerate(arrays)}),
        F.EAGER: F.npz_bytes({f"out{i}": a for i, a in enumerate(want)}),
        F.RUNTIME: F.npz_bytes({f"out{i}": a for i, a in enumerate(got)}),
    }
    data = {
        "format": F.FORMAT,
        "name": subject.name,
        "model": subject.source,
        "entry": subject.entry,
        "settings": settings(options),
        "inputs": {
            "from": inputs_from,
            "seed": options.seed,
            "arrays": [_describe(f"arg{i}", a) for i, a in enumerate(arrays)],
        },
        "tolerance_options": {"rtol": options.rtol, "atol": options.atol},
        "outputs": [
            {
                **_describe(o.name, w),
                "tolerance": tolerance_json(o.vs_golden.tolerance),
                "recorded": _errors(o.vs_golden),
            }
            for o, w in zip(outputs, want)
        ],
        "wir_sha256": compiled.wir_sha256,
        "plan_sha256": compiled.plan_sha256,
        "plan": compiled.plan_totals,
        "versions": versions(),
        "files": {name: F.sha256(b) for name, b in blobs.items()},
    }
    return {**blobs, F.GOLDEN_JSON: F.json_text(data).encode()}


def settings(options: Options) -> dict:
    return {"target": options.target, "mode": options.mode, "precision": options.precision, "capture": options.capture}


def options_of(data: dict, **overrides) -> Options:
    """The options a golden was recorded with, with the given (non-None) ones replacing them."""
    s, tol = data["settings"], data.get("tolerance_options", {})
    recorded = {
        "target": s["target"],
        "mode": s["mode"],
        "precision": s["precision"],
        "capture": s.get("capture", "export"),
        "seed": data["inputs"].get("seed"),
        "rtol": tol.get("rtol"),
        "atol": tol.get("atol"),
    }
    recorded.update({k: v for k, v in overrides.items() if v is not None})
    return Options(**recorded)


def _describe(name: str, a: np.ndarray) -> dict:
    return {"name": name, "shape": list(a.shape), "dtype": a.dtype.name}


def _errors(c) -> dict:
    return {"max_abs": c.max_abs, "max_rel": c.max_rel, "pcc": c.pcc}


def _done(res: GoldenResult, start: float) -> GoldenResult:
    res.seconds = time.perf_counter() - start
    return res
