"""`python -m tests.fuzz [--budget SECONDS] [--only NAME]`: run every fuzzer in tests/fuzz for a time budget
each and print what happened to the mutants. A broken promise stops the run with the mutant written to
tests/fuzz/crashes/ so it can become a regression test."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import time
import warnings
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

import tests.fuzz as pkg

CRASHES = Path(pkg.__file__).parent / "crashes"


def fuzzers() -> dict[str, object]:
    """name -> module for every module of tests/fuzz with ``mutants()`` and ``check()``."""
    out = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"tests.fuzz.{info.name}")
        if hasattr(mod, "mutants") and hasattr(mod, "check"):
            out[info.name] = mod
    return out


def run(name: str, mod, budget: float) -> Counter:
    counts: Counter = Counter()
    deadline = time.monotonic() + budget

    @settings(
        max_examples=10**9,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(mod.mutants())
    def one(mutant):
        if time.monotonic() > deadline:
            raise _TimeUp
        try:
            counts[mod.check(*mutant)] += 1
        except Exception as e:  # noqa: BLE001 - recorded and reported, the run goes on
            CRASHES.mkdir(exist_ok=True)
            path = CRASHES / f"{name}-{sum(counts.values())}.txt"
            path.write_text(repr(mutant))
            counts["BROKEN"] += 1
            print(f"{name}: BROKEN by a mutant ({path}): {type(e).__name__}: {str(e).splitlines()[0][:200]}")

    try:
        one()
    except _TimeUp:
        pass
    return counts


class _TimeUp(Exception):
    """The budget is spent: the only way to end a hypothesis run from inside."""


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz")
    ap.add_argument("--budget", type=float, default=60, help="seconds per fuzzer (default 60)")
    ap.add_argument("--only", help="run one fuzzer")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # hypothesis warns about the size of a mutant's repr; the counts are the report
    broken = 0
    for name, mod in fuzzers().items():
        if args.only and name != args.only:
            continue
        counts = run(name, mod, args.budget)
        broken += counts["BROKEN"]
        total = sum(counts.values())
        print(f"{name}: {total} mutants: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
