"""python -m tests.opinfo --all | --op NAME [--samples 3] [--jobs N] [--show STATUS,...]

Runs OpInfo cases through wafercc (see harness.py) and prints the counts: cases by outcome, ops passing on
every sample, clean rejections by reason, and every crash and wrong answer. Exit 1 if anything fails the
suite's rules (a crash, a wrong answer, an unsupported op not in expected_unsupported.txt).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from collections import Counter

from . import harness

_OPS: list = []


def _run_op(i: int, n: int) -> list[harness.Outcome]:
    import torch

    torch.set_num_threads(1)
    op = _OPS[i]
    return [harness.run_case(op, s, k) for k, s in enumerate(harness.samples(op, n))]


def _star(args):
    return _run_op(*args)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.opinfo", description=__doc__.splitlines()[0])
    p.add_argument("--all", action="store_true", help="every op of op_db")
    p.add_argument("--op", action="append", default=[], help="ops whose full name contains this (repeatable)")
    p.add_argument("--exact", action="store_true", help="--op names an op exactly")
    p.add_argument("--samples", type=int, default=3, help="samples per op (default 3)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--show", default="crash,wrong", help="statuses whose cases to list (default crash,wrong)")
    p.add_argument("--log", help="also write every case's outcome to this file as it finishes")
    a = p.parse_args(argv)
    if not a.all and not a.op:
        p.error("give --all or --op NAME")
    _OPS[:] = harness.op_db()
    harness.preload()  # import wafercc once, before the workers fork

    def chosen(name: str) -> bool:
        return a.all or any((s == name) if a.exact else (s in name) for s in a.op)

    todo = [i for i, op in enumerate(_OPS) if chosen(harness.full_name(op))]
    t0 = time.perf_counter()
    outcomes: list[harness.Outcome] = []
    jobs = [(i, a.samples) for i in todo]
    log = open(a.log, "w") if a.log else None  # noqa: SIM115  (closed below; written as cases finish)

    def done(res: list[harness.Outcome]) -> None:
        outcomes.extend(res)
        if log:
            log.writelines(f"{o.line()}  [{o.seconds:.1f} s]\n" for o in res)
            log.flush()

    if a.jobs > 1 and len(todo) > 1:
        with mp.get_context("fork").Pool(a.jobs, maxtasksperchild=20) as pool:
            for res in pool.imap_unordered(_star, jobs):
                done(res)
    else:
        for j in jobs:
            done(_star(j))
    if log:
        log.close()
    outcomes.sort(key=lambda o: (o.op, o.index))
    report(outcomes, set(a.show.split(",")), time.perf_counter() - t0)
    bad = harness.problems(outcomes, harness.expected_unsupported() if a.all else _listed_only(outcomes))
    if bad:  # say which rule broke, not only the exit code
        print(f"\n{len(bad)} problem(s) fail the suite's rules (docs/opinfo.md):")
        for b in bad:
            print("  " + b)
    return 1 if bad else 0


def _listed_only(outcomes):
    exp = harness.expected_unsupported()
    return {o.op: exp[o.op] for o in outcomes if o.op in exp} | {k: v for k, v in exp.items()}


def report(outcomes: list[harness.Outcome], show: set[str], seconds: float) -> None:
    by_op: dict[str, list[harness.Outcome]] = {}
    for o in outcomes:
        by_op.setdefault(o.op, []).append(o)
    cases = Counter(o.status for o in outcomes)
    for o in outcomes:
        if o.status in show or "all" in show:
            print(o.line())
    reached = {op for op, os_ in by_op.items() if any(o.status not in ("skip", "capture-failure") for o in os_)}
    passing = {
        op
        for op, os_ in by_op.items()
        if any(o.status == "pass" for o in os_) and all(o.status in ("pass", "skip") for o in os_)
    }
    print(f"\n{len(outcomes)} cases of {len(by_op)} ops in {seconds:.0f} s")
    print("cases: " + ", ".join(f"{s} {cases.get(s, 0)}" for s in harness.STATUSES))
    print(f"ops passing on every sample: {len(passing)} of {len(reached)} that reached compilation")
    for status in ("crash", "wrong", "unsupported", "capture-failure"):
        ops = sorted(op for op, os_ in by_op.items() if any(o.status == status for o in os_))
        print(f"ops with a {status}: {len(ops)}")
    reasons = Counter()
    for o in outcomes:
        if o.status == "unsupported":
            for r in _split_reasons(o.reason):
                reasons[r] += 1
    print("\nclean rejections by reason (cases):")
    for r, n in reasons.most_common():
        print(f"  {n:4d}  {r}")
    caps = Counter(o.reason.split(": ", 1)[-1][:90] for o in outcomes if o.status == "capture-failure")
    print(f"capture failures: {sum(caps.values())} cases")
    for r, n in caps.most_common(8):
        print(f"  {n:4d}  {r}")


def _split_reasons(reason: str) -> list[str]:
    """The ops a rejection names, split at the commas between them (not those inside a reason's parentheses)."""
    out, depth, cur = [], 0, ""
    for ch in reason:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [*out, cur.strip()]


if __name__ == "__main__":
    sys.exit(main())
