"""Text for people: one screen per golden that did not pass, and a summary table of all of them."""

from __future__ import annotations

import sys

from wafercc.golden.result import GoldenResult, Status
from wafercc.ir import DType

HEAD = ("output", "shape", "dtype", "vs eager golden", "tolerance", "vs runtime at record", "eager vs golden")


def format_result(r: GoldenResult) -> str:
    """Everything about one golden that a reader needs to act on: the verdict and why, per output the
    errors against each reference and the tolerance, the worst element, and the op bisect blames."""
    s = r.settings
    where = f" on {s['target']} ({s['mode']}, {s['precision']})" if s else ""
    lines = [f"{r.status.value}: {r.model}{where}"] + [f"  {line}" for line in r.message.splitlines()]
    if r.outputs:
        lines += _table([HEAD] + [_row(o) for o in r.outputs], "  ")
        for o in r.outputs:
            c = o.vs_golden
            if c is not None and not c.passed:
                lines.append(f"  {o.name}: {c.reason}" + (f"; {c.worst_text()}" if c.worst else ""))
    lines += [f"  {line}" for line in r.details]
    if r.plan_before is not None:
        lines.append(f"  plan at record: {_totals(r.plan_before)}")
        lines.append(f"  plan now:       {_totals(r.plan_after)}")
    if r.bisect is not None:
        lines += ["  " + line for line in r.bisect.text().splitlines()]
    if r.diagnosis:
        lines.append(f"  {r.diagnosis}")
    if r.status is not Status.SKIPPED:
        lines.append(f"  golden: {r.golden}")
    return "\n".join(lines)


def _row(o) -> tuple[str, ...]:
    c = o.vs_golden or o.eager
    shape, dtype = (str(list(c.shape)), DType.wir_name(c.dtype)) if c else ("?", "?")
    golden = _errors(o.vs_golden)
    tol = "-" if o.vs_golden is None else o.vs_golden.tolerance.describe(o.vs_golden.atol_used or None)
    return (o.name, shape, dtype, golden, tol, _errors(o.vs_runtime, short=True), _errors(o.eager, short=True))


def _errors(c, short: bool = False) -> str:
    if c is None:
        return "-"
    verdict = "" if c.passed else "  FAIL"
    if short:
        return f"{c.max_abs:.3g}{verdict}"
    return f"max abs {c.max_abs:.3g}, rel {c.max_rel:.3g}{verdict}"


def _totals(t: dict | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((t or {}).items())) or "-"


def _table(rows: list[tuple[str, ...]], indent: str = "") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


# -- the summary ------------------------------------------------------------------------------------

SUMMARY_HEAD = ("model", "status", "max abs vs golden", "time", "note")


def summary_rows(results: list[GoldenResult]) -> list[tuple[str, ...]]:
    rows = []
    for r in results:
        worst = max((o.vs_golden.max_abs for o in r.outputs if o.vs_golden), default=None)
        rows.append((r.model, r.status.value, "-" if worst is None else f"{worst:.3g}", f"{r.seconds:.1f} s", _note(r)))
    return rows


def _note(r: GoldenResult) -> str:
    if r.bisect is not None and r.bisect.first is not None:
        d = r.bisect.first
        return f"first diverging op: {d.op.split('=', 1)[-1].split()[0]} at {d.loc or '?'}"
    first = r.message.splitlines()[0] if r.message else ""
    return first if len(first) <= 100 else first[:97] + "..."


def counts(results: list[GoldenResult]) -> str:
    seen: dict[Status, int] = {}
    for r in results:
        seen[r.status] = seen.get(r.status, 0) + 1
    return ", ".join(f"{n} {s.value}" for s, n in seen.items())


def print_summary(results: list[GoldenResult], file=None) -> None:
    """A rich table on a terminal, plain aligned text otherwise (CI logs, pipes)."""
    file = file or sys.stdout
    if file.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(*SUMMARY_HEAD)
        for r, row in zip(results, summary_rows(results)):  # Text, not markup: a test id may hold "[...]"
            table.add_row(Text(row[0]), Text(row[1], style="green" if r.ok else "red"), *map(Text, row[2:]))
        Console(file=file).print(table)
    else:
        print("\n".join(_table([SUMMARY_HEAD] + summary_rows(results))), file=file)
