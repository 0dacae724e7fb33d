"""plan.json and the per-layer report, both made from a mapped module (the WIR is the source of truth;
these are views of it for programs and for people). The schema is in docs/plan.md."""

from __future__ import annotations

import json
from dataclasses import fields

from wafercc.ir import Module
from wafercc.ir.plan import PLAN_FORMAT, Plan, PlanFormatError, Tiling, load_plan, plain
from wafercc.target import Target

from .plan import target_of


def plan_dict(m: Module) -> dict:
    """plan.json's dict of a mapped module (its plan loaded, so checked, on the way)."""
    t = target_of(m)
    plan = load_plan(m)
    return {
        "format": PLAN_FORMAT,
        "model": m.name,
        "mode": m.attrs.get("mode", "stream"),
        "target": t.describe(),
        "totals": plain(m.attrs.get("plan.totals", {})),
        "layers": [lp.to_json() for lp in plan.layers] if plan is not None else [],
    }


def plan_json(m: Module) -> str:
    return json.dumps(plan_dict(m), indent=1, sort_keys=True) + "\n"


def as_plan(plan: Plan | dict) -> Plan:
    """A typed plan: ``plan`` itself, or a plan.json dict loaded (and checked)."""
    return plan if isinstance(plan, Plan) else Plan.from_json(plan)


def target_of_plan(plan: Plan | dict) -> Target:
    """The Target a plan was made for, from plan.json's ``target`` facts (unknown keys are ignored)."""
    d = as_plan(plan).target
    known = {f.name for f in fields(Target)}
    kw = {k: v for k, v in d.items() if k in known}
    kw["flops_per_cycle"] = tuple(sorted(d.get("flops_per_cycle", {}).items()))
    try:
        return Target(**kw)
    except (TypeError, ValueError) as e:
        raise PlanFormatError("", "target", f"not a target ({e})") from None


COLUMNS = ("layer", "kind", "rect", "tiling (M/y K/x N)", "PEs", "SRAM/PE", "colors", "streamed", "compute",
           "ingress", "fabric", "total", "bound", "util")


def format_report(plan: Plan | dict) -> str:
    """A per-layer table with totals, from a typed plan or a plan.json dict (``plan_dict`` or a loaded
    plan.json)."""
    plan = as_plan(plan)
    t = target_of_plan(plan)
    budget, colors = t.usable_sram, t.usable_colors
    rows = []
    for lp in plan.layers:
        tl, c, (x, y, w, h) = lp.tiling, lp.cost, lp.rect.to_attrs()
        rows.append((
            lp.name, lp.kind, f"{w}x{h}@{x},{y}", format_tiling(tl), f"{tl.pes:,}", f"{lp.memory.total:,}/{budget:,}",
            f"{lp.colors}/{colors}", format_bytes(lp.stream.bytes), format_cycles(c.compute),
            format_cycles(c.ingress), format_cycles(c.fabric), format_cycles(c.total), c.bound,
            f"{c.utilization:.1%}",
        ))
    tot = plan.totals
    rows.append(("total", "", "", "", "", f"{tot.peak_bytes_per_pe:,}/{budget:,}", f"{tot.max_colors}/{colors}",
                 format_bytes(tot.weight_bytes_streamed), "", "", "", format_cycles(tot.cycles), "",
                 f"{tot.utilization:.1%}"))
    widths = [max(len(str(r[i])) for r in [COLUMNS] + rows) for i in range(len(COLUMNS))]
    line = lambda r: "  ".join(str(v).ljust(w) if i < 4 or i == 12 else str(v).rjust(w)  # noqa: E731
                               for i, (v, w) in enumerate(zip(r, widths))).rstrip()
    head = (f"wafercc plan for @{plan.model} on {t.name} ({t.width}x{t.height} PEs, "
            f"{t.clock_hz / 1e9:.2f} GHz), mode {plan.mode}: {tot.layers} layers, "
            f"{tot.cycles:,.0f} cycles = {tot.seconds * 1e3:.4g} ms, utilization {tot.utilization:.1%}")
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([head, "", line(COLUMNS), sep] + [line(r) for r in rows[:-1]] + [sep, line(rows[-1])]) + "\n"


def format_tiling(tl: Tiling) -> str:
    """M tile/parts, K tile/parts, N chunk x steps, with row groups (g) and passes (p) when there are any."""
    n = tl.N
    return (f"{tl.M.tile}/{tl.M.parts} {tl.K.tile}/{tl.K.parts} {n.chunk}x{n.steps}"
            + (f" g{n.groups}" if n.groups > 1 else "") + (f" p{tl.passes}" if tl.passes > 1 else ""))


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def format_cycles(c: float) -> str:
    if c >= 1e9:
        return f"{c / 1e9:.2f}G"
    if c >= 1e6:
        return f"{c / 1e6:.2f}M"
    if c >= 1e4:
        return f"{c / 1e3:.1f}k"
    return f"{c:.0f}"
