"""The backend's options: ``torch.compile(model, backend="wafercc", options={...})``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from wafercc.driver import DEFAULT_TARGET
from wafercc.errors import UsageError
from wafercc.mapping.plan import MODES
from wafercc.target import parse_target

PRECISIONS = ("fp32", "bf16", "fp16")  # runtime.plan.PRECISIONS: every value the wafer stores


@dataclass(frozen=True)
class BackendOptions:
    target: str = DEFAULT_TARGET  # a preset ("wse2", "wse3") or "mesh:RxC,..." as --target takes
    mode: str = "stream"  # the mapping mode: "stream" (weight streaming) or "pipeline"
    precision: str = "fp32"  # the runtime's storage precision
    check: bool = False  # compare every graph's outputs with eager, name the first diverging op
    dump_dir: str | None = None  # keep each graph's model.wir, plan.json and report.txt here
    # follow the plan in every run (tiles, routed partial sums), or run the planned module at graph level;
    # None: follow it when check is on (qualifying a model), graph level otherwise (3x faster per call)
    plan: bool | None = None

    @property
    def faithful(self) -> bool:
        return self.check if self.plan is None else self.plan

    @classmethod
    def parse(cls, options: dict | None) -> BackendOptions:
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(
                f"unknown wafercc backend option(s) {', '.join(map(repr, unknown))} "
                f"(the options are {', '.join(sorted(known))})"
            )
        o = cls(**options)
        parse_target(o.target)  # a bad target is a usage error before any graph is compiled
        if o.mode not in MODES:
            raise UsageError(f"unknown mode '{o.mode}' (use {' or '.join(MODES)})")
        if o.precision not in PRECISIONS:
            raise UsageError(f"unknown precision '{o.precision}' (use {', '.join(PRECISIONS)})")
        if not isinstance(o.check, bool):
            raise UsageError(f"option 'check' takes True or False, not {o.check!r}")
        if o.plan is not None and not isinstance(o.plan, bool):
            raise UsageError(f"option 'plan' takes True, False or None, not {o.plan!r}")
        if o.dump_dir is not None:
            object.__setattr__(o, "dump_dir", str(Path(o.dump_dir)))
        return o
