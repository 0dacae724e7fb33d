"""plan.json and the per-layer report, both made from a mapped module (the WIR is the source of truth;
these are views of it for programs and for people). The schema is in docs/plan.md."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING, fields

from wafercc.ir import Module
from wafercc.ir.jsontext import dumps
from wafercc.ir.plan import PLAN_FORMAT, Plan, PlanFormatError, Tiling, load_plan, plain
from wafercc.target import Target

from .plan import target_of


def plan_dict(m: Module) -> dict:
    """plan.json's dict of a mapped module (its plan loaded, so checked, on the way)."""
    return plan_views(m)[0]


def plan_views(m: Module) -> tuple[dict, Plan | dict]:
    """plan.json's dict and what the report is made from (``format_report``), from one load of the module's
    plan: the typed plan itself, with plan.json's target facts in place of the WIR's target spec, which is
    the plan ``Plan.from_json`` makes of the dict (tests/mapping/test_plan_views.py), without loading and
    checking every layer a second time (10 s for the 1T training plan's 2,309 layers)."""
    t = target_of(m)
    plan = load_plan(m)
    d = {
        "format": PLAN_FORMAT,
        "model": m.name,
        "mode": m.attrs.get("mode", "stream"),
        "target": t.describe(),
        "totals": plain(m.attrs.get("plan.totals", {})),
        "layers": _layers_json(plan.layers) if plan is not None else [],
    }
    return d, (dataclasses.replace(plan, target=d["target"]) if plan is not None else d)


def _layers_json(layers) -> list[dict]:
    """Each layer's plan.json dict. Layers whose plan shares one routes tuple (identical layers: the route
    pass gives them one list, which the load reads once) share one JSON list of routes, made once: the
    dicts are to read, not to edit."""
    out = []
    made: dict[int, tuple] = {}  # id(routes tuple) -> (the tuple, its JSON list)
    for lp in layers:
        seen = made.get(id(lp.routes)) if lp.routes else None
        if seen is None or seen[0] is not lp.routes:
            j = lp.to_json()
            if lp.routes:
                made[id(lp.routes)] = (lp.routes, j["routes"])
        else:
            j = dataclasses.replace(lp, routes=()).to_json()
            j["routes"] = seen[1]
        out.append(j)
    return out


def plan_json(m: Module, plan: dict | None = None) -> str:
    """plan.json's text: ``plan`` (``plan_dict(m)`` when not given) as ``json.dumps(indent=1, sort_keys=True)``
    writes it, by wafercc.ir.jsontext (the same bytes, several times faster)."""
    return dumps(plan if plan is not None else plan_dict(m), indent=1, sort_keys=True) + "\n"


def as_plan(plan: Plan | dict) -> Plan:
    """A typed plan: ``plan`` itself, or a plan.json dict loaded (and checked)."""
    return plan if isinstance(plan, Plan) else Plan.from_json(plan)


def target_of_plan(plan: Plan | dict) -> Target:
    """The Target a plan was made for, from plan.json's ``target`` facts (unknown keys are ignored)."""
    d = as_plan(plan).target
    kinds = {f.name: f.type for f in fields(Target)}
    kw = {k: v for k, v in d.items() if k in kinds}
    for k, v in kw.items():
        if k != "flops_per_cycle" and not _FACT_OK[kinds[k]](v):
            raise PlanFormatError("", f"target.{k}", f"{v!r} is not a {_FACT_WORDS[kinds[k]]}")
        if k in _AT_LEAST_ONE and v < 1:
            raise PlanFormatError("", f"target.{k}", f"{v!r} must be at least 1")
    if kw.get("reserved_colors", 0) >= kw.get("colors", 1):
        raise PlanFormatError("", "target.reserved_colors", "leaves no usable color")
    rates = d.get("flops_per_cycle", {})
    if not isinstance(rates, dict) or not all(_positive(r) for r in rates.values()) or "f32" not in rates:
        raise PlanFormatError("", "target.flops_per_cycle", f"{rates!r} is not FLOPs per cycle by dtype (with f32)")
    kw["flops_per_cycle"] = tuple(sorted(rates.items()))
    required = [f.name for f in fields(Target) if f.default is MISSING and f.default_factory is MISSING]
    missing = [k for k in required if k not in kw]
    if missing:
        raise PlanFormatError("", f"target.{missing[0]}", "is missing (plan.json's target must describe the mesh)")
    return Target(**kw)


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


# What each kind of Target fact in plan.json must be (the dataclass's annotations, as strings).
_FACT_OK = {
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "int": _count,
    "float": _positive,
}
_AT_LEAST_ONE = {
    "width",
    "height",
    "sram_bytes",
    "colors",
    "link_bytes_per_cycle",
    "io_ports_per_edge",
    "reduce_tree_levels",
}
_FACT_WORDS = {"str": "string", "bool": "boolean", "int": "count (an integer >= 0)", "float": "positive number"}


# The per-layer table, one set of columns for report.txt and the terminal (``wafercc report``): a row's cost
# terms add up, total = max(compute, ingress, fabric) + lat+tail.
COLUMNS = (
    "layer",
    "kind",
    "rect WxH@x,y",
    "tiling M/y K/x N",
    "PEs",
    "SRAM/PE (B)",
    "colors",
    "streamed",
    "compute",
    "ingress",
    "fabric",
    "lat+tail",
    "total",
    "bound",
    "util",
)
LEFT_ALIGNED = frozenset({0, 1, 2, 3, 13})
BOUND_COLUMN = 13


def table_rows(plan: Plan | dict) -> tuple[list[tuple[str, ...]], tuple[str, ...]]:
    """The table's cells as strings: one row per layer, and the totals row."""
    plan = as_plan(plan)
    t = target_of_plan(plan)
    budget, colors = t.usable_sram, t.usable_colors
    rows = []
    for lp in plan.layers:
        tl, c, mem = lp.tiling, lp.cost, lp.memory
        x, y, w, h = lp.rect.to_attrs()
        rows.append(
            (
                lp.name,
                lp.kind,
                f"{w}x{h}@{x},{y}",
                format_tiling(tl),
                f"{tl.pes:,}",
                f"{mem.total:,}/{budget:,}",
                f"{lp.colors}/{colors}",
                format_bytes(lp.stream.bytes),
                format_cycles(c.compute),
                format_cycles(c.ingress),
                format_cycles(c.fabric),
                format_cycles(c.latency + c.tail),
                format_cycles(c.total),
                c.bound,
                f"{c.utilization:.1%}",
            )
        )
    tot = plan.totals
    total = (
        "total",
        f"{tot.layers} layers",
        "",
        "",
        "",
        f"{tot.peak_bytes_per_pe:,}/{budget:,}",
        f"{tot.max_colors}/{colors}",
        format_bytes(tot.weight_bytes_streamed),
        "",
        "",
        "",
        "",
        format_cycles(tot.cycles),
        "",
        f"{tot.utilization:.1%}",
    )
    return rows, total


def title(plan: Plan | dict) -> str:
    plan = as_plan(plan)
    t, tot = target_of_plan(plan), plan.totals
    return (
        f"wafercc plan for @{plan.model} on {t.name} ({t.width}x{t.height} PEs, {t.clock_hz / 1e9:.2f} GHz), "
        f"{plan.mode} mode: {tot.layers} layers, {tot.cycles:,.0f} cycles = {tot.seconds * 1e3:.4g} ms, "
        f"utilization {tot.utilization:.1%}"
    )


def format_report(plan: Plan | dict) -> str:
    """report.txt: the per-layer table with totals, from a typed plan or a plan.json dict."""
    plan = as_plan(plan)  # once: loading a plan.json dict checks every layer (it was loaded twice)
    rows, total = table_rows(plan)
    widths = [max(len(r[i]) for r in [COLUMNS, total, *rows]) for i in range(len(COLUMNS))]

    def line(r) -> str:
        return "  ".join(
            v.ljust(w) if i in LEFT_ALIGNED else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([title(plan), "", line(COLUMNS), sep, *map(line, rows), sep, line(total)]) + "\n"


def format_tiling(tl: Tiling) -> str:
    """M tile/parts, K tile/parts, N chunk x steps, with row groups (g), passes (p), batch groups (b:
    groups x products) and causal skipping (c: s for scores, p for probs, with the diagonal's offset when it
    is not 0) when there are any."""
    n = tl.N
    c = tl.causal
    return (
        f"{tl.M.tile}/{tl.M.parts} {tl.K.tile}/{tl.K.parts} {n.chunk}x{n.steps}"
        + (f" g{n.groups}" if n.groups > 1 else "")
        + (f" b{tl.B.parts}x{tl.B.tile}" if tl.B is not None else "")
        + (f" p{tl.passes}" if tl.passes > 1 else "")
        + ((f" c{c.on[0]}" + (f"{c.offset:+d}" if c.offset else "")) if c is not None else "")
    )


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
