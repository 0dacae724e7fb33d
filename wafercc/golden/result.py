"""What recording or checking one golden found: a status per model and three comparisons per output."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from wafercc.numerics import Comparison


class Status(str, enum.Enum):
    PASS = "pass"
    PLAN_CHANGED = "plan changed"  # the WIR or plan.json hash moved, the numbers did not: a pass
    DRIFTED = "drifted"  # the runtime left the eager golden's tolerance: the compiler's numbers moved
    EAGER_CHANGED = "eager changed"  # eager PyTorch no longer reproduces eager.npz: a torch or model change
    COMPILE_FAILED = "failed to compile"
    RUN_FAILED = "failed to run"
    NO_GOLDEN = "no golden"
    NOT_RECORDED = "not recorded"  # record: the runtime does not match eager PyTorch, nothing written
    RECORDED = "recorded"
    SKIPPED = "skipped"  # a meta-device model in a directory: it can be planned, never run
    # A training golden: the final weights' bytes differ from the recorded sha256, every value within tolerance.
    WEIGHTS_CHANGED = "weights' bits changed"

    @property
    def ok(self) -> bool:
        return self in (Status.PASS, Status.PLAN_CHANGED, Status.WEIGHTS_CHANGED, Status.RECORDED, Status.SKIPPED)


FAILURES = (Status.DRIFTED, Status.EAGER_CHANGED, Status.COMPILE_FAILED, Status.RUN_FAILED, Status.NOT_RECORDED)


@dataclass
class OutputResult:
    name: str  # out0, out1, ...
    vs_golden: Comparison | None  # the runtime now against eager.npz: decides pass or drift
    vs_runtime: Comparison | None = None  # ... against runtime.npz: did the compiler's numbers move at all
    eager: Comparison | None = None  # eager PyTorch now against eager.npz: did eager move


@dataclass
class GoldenResult:
    name: str  # the golden's directory name
    model: str  # where the model comes from (a path, a test id)
    golden: Path
    status: Status
    message: str = ""  # why, in a line or a few: the error, what changed
    outputs: list[OutputResult] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # target, mode, precision this run used
    plan_before: dict | None = None  # plan totals at record time and now, when the plan changed
    plan_after: dict | None = None
    bisect: object = None  # wafercc.numerics.bisect.BisectResult, on a drift
    diagnosis: str = ""  # what bisect's silence means, or why it could not run
    details: list[str] = field(default_factory=list)  # a training golden's comparison table
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status.ok


def exit_code(results: list[GoldenResult], strict: bool = False) -> int:
    """0 all passed (plan changes included); 1 any drift or failure; 3 only missing goldens, or 2 with
    ``strict`` (a CI that names a model without a golden is misconfigured). docs/golden.md has the table."""
    statuses = {r.status for r in results}
    if strict and Status.NO_GOLDEN in statuses:
        return 2
    if statuses & set(FAILURES):
        return 1
    if Status.NO_GOLDEN in statuses:
        return 3
    return 0
