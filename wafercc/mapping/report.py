"""plan.json and the per-layer report, both made from a mapped module (the WIR is the source of truth;
these are views of it for programs and for people). The schema is in docs/plan.md."""

from __future__ import annotations

import json

from wafercc.ir import DType, Module, SymbolRef

from .plan import target_of

PLAN_FORMAT = "wafercc-plan/1"


def _plain(v):
    """Attribute values as JSON values: symbols as "@name", dtypes as their names."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, SymbolRef):
        return str(v)
    if isinstance(v, DType):
        return v.value
    return v


def plan_dict(m: Module) -> dict:
    t = target_of(m)
    layers = sorted(m.layers.values(), key=lambda layer: layer.attrs["index"])
    return {
        "format": PLAN_FORMAT,
        "model": m.name,
        "mode": m.attrs.get("mode", "stream"),
        "target": t.describe(),
        "totals": _plain(m.attrs.get("plan.totals", {})),
        "layers": [{"name": layer.name, **_plain(layer.attrs)} for layer in layers],
    }


def plan_json(m: Module) -> str:
    return json.dumps(plan_dict(m), indent=1, sort_keys=True) + "\n"


COLUMNS = ("layer", "kind", "rect", "tiling (M/y K/x N)", "PEs", "SRAM/PE", "colors", "streamed", "compute",
           "ingress", "fabric", "total", "bound", "util")


def format_report(plan: dict) -> str:
    """A per-layer table with totals, from a plan dict (``plan_dict`` or a loaded plan.json)."""
    t = plan["target"]
    budget = t["sram_bytes"] - t["runtime_reserved_bytes"]
    colors = t["colors"] - t["reserved_colors"]
    rows = []
    for layer in plan["layers"]:
        tl, c = layer["tiling"], layer["cost"]
        rows.append((
            layer["name"], layer["kind"], "{}x{}@{},{}".format(*layer["rect"][2:], *layer["rect"][:2]),
            format_tiling(tl),
            f"{tl['pes']:,}", f"{layer['memory']['total']:,}/{budget:,}", f"{layer['colors']}/{colors}",
            format_bytes(layer["stream"]["bytes"]), format_cycles(c["compute"]), format_cycles(c["ingress"]), format_cycles(c["fabric"]),
            format_cycles(c["total"]), c["bound"], f"{c['utilization']:.1%}",
        ))
    tot = plan["totals"]
    rows.append(("total", "", "", "", "", f"{tot['peak_bytes_per_pe']:,}/{budget:,}", f"{tot['max_colors']}/{colors}",
                 format_bytes(tot["weight_bytes_streamed"]), "", "", "", format_cycles(tot["cycles"]), "",
                 f"{tot['utilization']:.1%}"))
    widths = [max(len(str(r[i])) for r in [COLUMNS] + rows) for i in range(len(COLUMNS))]
    line = lambda r: "  ".join(str(v).ljust(w) if i < 4 or i == 12 else str(v).rjust(w)  # noqa: E731
                               for i, (v, w) in enumerate(zip(r, widths))).rstrip()
    head = (f"wafercc plan for @{plan['model']} on {t['name']} ({t['width']}x{t['height']} PEs, "
            f"{t['clock_hz'] / 1e9:.2f} GHz), mode {plan['mode']}: {tot['layers']} layers, "
            f"{tot['cycles']:,.0f} cycles = {tot['seconds'] * 1e3:.4g} ms, utilization {tot['utilization']:.1%}")
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([head, "", line(COLUMNS), sep] + [line(r) for r in rows[:-1]] + [sep, line(rows[-1])]) + "\n"


def format_tiling(tl: dict) -> str:
    """M tile/parts, K tile/parts, N chunk x steps, with row groups (g) and passes (p) when there are any."""
    n = tl["N"]
    return (f"{tl['M']['tile']}/{tl['M']['parts']} {tl['K']['tile']}/{tl['K']['parts']} {n['chunk']}x{n['steps']}"
            + (f" g{n['groups']}" if n["groups"] > 1 else "") + (f" p{tl['passes']}" if tl["passes"] > 1 else ""))


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
