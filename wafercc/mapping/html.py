"""The plan as one self-contained HTML page (``wafercc report DIR --html report.html``).

    page = html_report(plan, raw)     # plan: the typed Plan; raw: plan.json's dict (for keys the typed plan
                                      # does not know: a layer's phase, the scaling table)

The page holds everything inline (CSS, a few lines of JavaScript that sort the table, SVG pictures with
their heat maps as PNG data URIs): it opens without a network and fetches nothing. Sections: the totals,
the training phases (when layers have a ``phase``), the scaling table (when the plan has one), the
per-layer table (click a column header to sort), and the pictures. A picture is drawn at the scale of its
layer's rectangle, with the whole mesh as a small inset: the rectangle, every route in its router color,
the link load as a heat map under it, the busiest link (x), the SRAM of each PE holding a tile as a bar of
its memory map, and the cost terms with the critical one marked. Layers that would draw the same picture
(structurally identical layers share their rectangle, tiling, routes and cost: the ``structure``
fingerprint) share one picture, which each refers to: a GPT-3 175B plan of 579 layers draws 11.

Same plan, same bytes: nothing depends on the time, the machine or dict order.
"""

from __future__ import annotations

import base64
import html
import math
import struct
import zlib

import numpy as np

from wafercc.ir.plan import LayerPlan, Plan

from .flows import DIRS
from .report import COLUMNS, LEFT_ALIGNED, format_bytes, format_cycles, table_rows, target_of_plan, title
from .viz import SAMPLE, link_load, pool_max, router_rgb, window

MARK = "<!-- wafercc report -->"  # in the first line: what `report --html` may replace (docs/safety.md)
HEAT_CELLS = 96  # heat-map cells along the longer side of a picture's window
MAIN_PX = (560, 340)  # the largest drawing of a layer's window, in CSS pixels
MAX_PX_PER_PE = 28.0  # a tiny rectangle is not blown up beyond this
INSET_PX = 110  # the longer side of the whole-mesh inset
MAX_LINES = 160  # polylines drawn per router color in one picture; beyond, an even sample
SIDE_PX = 250  # the column beside the drawing: inset, SRAM bar, cost terms, legend
PHASES = ("forward", "backward", "optimizer")
# Buffers of the memory map, as the SRAM bar colors them (docs/plan.md "memmap").
BUFFER_RGB = {
    "runtime": "#9e9e9e",
    "activation": "#4e79a7",
    "output": "#59a14f",
    "accumulator": "#f28e2b",
    "weight": "#e15759",
    "tail": "#b07aa1",
    "free": "#ffffff",
}
TERM_RGB = {"compute": "#59a14f", "ingress": "#edc948", "fabric": "#e15759", "latency": "#9e9e9e", "tail": "#bab0ac"}
# YlOrRd, the heat maps' ramp in `wafercc viz` too: low load pale yellow, the busiest link dark red.
_RAMP = np.array([(255, 255, 204), (254, 217, 118), (253, 141, 60), (227, 26, 28), (128, 0, 38)], dtype=float)


def html_report(plan: Plan, raw: dict | None = None) -> str:
    """The page for ``plan`` (``raw``: the plan.json dict it was loaded from, for keys beyond the typed plan)."""
    raw = raw or {}
    groups = picture_groups(plan)
    pic_of = {lp.name: i for i, members in enumerate(groups) for lp in members}
    parts = [
        _head(plan),
        _totals(plan, raw),
        _phases(plan, raw),
        _scaling(raw),
        _table(plan, pic_of),
        _pictures(plan, groups),
        _SCRIPT,
        "</body>\n</html>\n",
    ]
    return "".join(p for p in parts if p)


def phase_of(lp: LayerPlan) -> str | None:
    """The layer's training phase (plan.json's ``phase``: forward, backward, optimizer), if the plan has one."""
    v = dict(lp.extra).get("phase")
    return v if isinstance(v, str) and v else None


def picture_groups(plan: Plan) -> list[list[LayerPlan]]:
    """The layers grouped by the picture they draw, in order of each group's first layer: layers with the
    same rectangle, tiling, routes, memory and cost (the same ``structure``) draw the same picture."""
    groups: dict[tuple, list[LayerPlan]] = {}
    for lp in plan.layers:
        key = (lp.kind, lp.rect, lp.tiling, lp.routes, lp.links, lp.memory, lp.memmap, lp.cost)
        groups.setdefault(key, []).append(lp)
    return list(groups.values())


_LEFT = ' class="l"'


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


# -- page sections ---------------------------------------------------------------------------


_CSS = """
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:16px 24px;color:#222}
h1{font-size:17px;margin:0 0 8px}h2{font-size:15px;margin:22px 0 6px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
td,th{padding:2px 7px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#f4f4f4;position:sticky;top:0}
td.l,th.l{text-align:left}
table.sort th{cursor:pointer;user-select:none}
table.sort th:hover{background:#e6e6e6}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
tfoot td{font-weight:bold;border-top:2px solid #ccc}
dl.tot{display:grid;grid-template-columns:max-content max-content;gap:1px 14px;margin:0}
dl.tot dt{color:#555}dl.tot dd{margin:0;text-align:right;font-variant-numeric:tabular-nums}
.b-compute{color:#2e7d32}.b-ingress{color:#9a7b00}.b-fabric{color:#c62828}
figure{margin:14px 0;padding:8px;border:1px solid #e2e2e2;border-radius:4px;display:inline-block;vertical-align:top}
figcaption{max-width:820px;margin-bottom:4px}
figcaption a{margin-right:4px}
.note{color:#666}
svg text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
"""


def _head(plan: Plan) -> str:
    t = target_of_plan(plan)
    return (
        f'<!DOCTYPE html>{MARK}\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>wafercc plan: @{_e(plan.model)} on {_e(t.name)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{_e(title(plan))}</h1>\n"
        '<p class="note">Units: cycles of the target\'s clock, bytes, PEs; x is the PE column from the west edge, '
        "y the PE row from the north edge. The schema of plan.json is docs/plan.md.</p>\n"
    )


# What the report says about each totals key (plan.json's ``totals``); keys it does not know are shown too.
_TOTAL_WORDS = {
    "layers": "layers",
    "structures": "distinct layer structures",
    "cycles": "cycles",
    "seconds": "time",
    "flops": "FLOPs",
    "utilization": "utilization",
    "weight_bytes_streamed": "weights streamed from MemoryX",
    "peak_bytes_per_pe": "peak SRAM per PE",
    "max_colors": "most router colors in a layer",
}


def total_label(key: str) -> str:
    """What a totals key is called on the page: ``optimizer_seconds`` -> "optimizer time"."""
    if key in _TOTAL_WORDS:
        return _TOTAL_WORDS[key]
    return key.replace("_seconds", " time").replace("_per_s", " per second").replace("_", " ")


def format_value(key: str, v: object) -> str:
    """A plan.json number as people read it, judged by its key's name (bytes, seconds, cycles, fractions)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return _e(v if not isinstance(v, (list, dict)) else "…")
    if key.endswith("per_s"):
        return f"{v:,.4g}/s"
    if "bytes" in key:
        return format_bytes(v) + (f" ({int(v):,} B)" if v >= 1024 else "")
    if key.endswith("seconds") or key.endswith("_s"):
        return f"{v * 1e3:,.4g} ms" if v < 10 else f"{v:,.4g} s"
    if "cycles" in key:
        return f"{v:,.0f}"
    if key in ("utilization", "efficiency") or key.endswith("_fraction") or key.endswith("_efficiency"):
        return f"{v:.1%}"
    return f"{v:,}" if isinstance(v, int) else f"{v:,.4g}"


def _totals(plan: Plan, raw: dict) -> str:
    t = target_of_plan(plan)
    tot = dict(raw.get("totals") or {}) if isinstance(raw.get("totals"), dict) else {}
    if plan.totals is not None:
        tot.update(plan.totals.to_attrs())
    rows = []
    for k in [*_TOTAL_WORDS, *sorted(set(tot) - set(_TOTAL_WORDS))]:
        if k in tot and not isinstance(tot[k], (list, dict)):
            rows.append(f"<dt>{_e(total_label(k))}</dt><dd>{format_value(k, tot[k])}</dd>")
    facts = (
        f"{t.name}: {t.width}x{t.height} PEs, {t.sram_bytes:,} B SRAM per PE ({t.usable_sram:,} B for a layer), "
        f"{t.usable_colors} usable router colors, clock {t.clock_hz / 1e9:.2f} GHz, links "
        f"{t.link_bytes_per_cycle} B/cycle, MemoryX {t.io_bytes_per_s / 1e9:g} GB/s"
    )
    return (
        f'<h2 id="totals">Totals</h2>\n<p>{_e(plan.mode)} mode on {_e(facts)}</p>\n'
        f'<dl class="tot">{"".join(rows)}</dl>\n'
    )


def _phases(plan: Plan, raw: dict) -> str:
    """Per training phase: its layers, their cycles (and share of the layers' cycles), the phase's time
    (plan.json's ``totals.<phase>_seconds`` when the plan has it: the optimizer runs in MemoryX, on no
    layer), weight bytes streamed, FLOPs."""
    by: dict[str, list[LayerPlan]] = {}
    for lp in plan.layers:
        p = phase_of(lp)
        if p is not None:
            by.setdefault(p, []).append(lp)
    if not by:
        return ""
    tot = raw.get("totals") if isinstance(raw.get("totals"), dict) else {}
    timed = {p for p in PHASES if _number(tot.get(f"{p}_seconds"))}
    order = [p for p in PHASES if p in by or p in timed] + sorted(set(by) - set(PHASES))
    whole = sum(lp.cost.total for lp in plan.layers) or 1.0
    clock = target_of_plan(plan).clock_hz
    head = "".join(f"<th{_LEFT if i == 0 else ''}>{c}</th>" for i, c in enumerate(_PHASE_COLUMNS))
    rows = []
    for p in order:
        ls = by.get(p, [])
        cyc = sum(lp.cost.total for lp in ls)
        secs = tot[f"{p}_seconds"] if p in timed else cyc / clock
        cells = (
            _e(p),
            f"{len(ls):,}" if ls else "in MemoryX",
            f"{cyc:,.0f}" if ls else "",
            f"{cyc / whole:.1%}" if ls else "",
            format_value("seconds", secs),
            format_bytes(sum(lp.stream.bytes for lp in ls)),
            f"{sum(lp.flops for lp in ls):,}",
        )
        rows.append("<tr>" + "".join(f"<td{_LEFT if i == 0 else ''}>{c}</td>" for i, c in enumerate(cells)) + "</tr>")
    untagged = len(plan.layers) - sum(len(v) for v in by.values())
    note = f'<p class="note">{untagged} layers have no phase.</p>\n' if untagged else ""
    return (
        '<h2 id="phases">Training phases</h2>\n'
        f'<table id="phase-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>\n{note}'
    )


_PHASE_COLUMNS = ("phase", "layers", "cycles", "share of layer cycles", "time", "weights streamed", "FLOPs")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def scaling_rows(raw: dict) -> list[dict]:
    """The data-parallel scaling table of plan.json (``scaling``, or ``totals.scaling``): one object per
    number of systems; anything else is no table."""
    rows = raw.get("scaling")
    if rows is None and isinstance(raw.get("totals"), dict):
        rows = raw["totals"].get("scaling")
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, dict)]


def _scaling(raw: dict) -> str:
    rows = scaling_rows(raw)
    if not rows:
        return ""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in sorted(r) if k not in keys and not isinstance(r[k], (list, dict))]
    keys.sort(key=lambda k: k != "systems")  # stable: the systems first, the rest as they come
    head = "".join(f"<th>{_e(k.replace('_', ' '))}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{format_value(k, r[k]) if k in r else ''}</td>" for k in keys) + "</tr>" for r in rows
    )
    return (
        '<h2 id="scaling">Data-parallel scaling</h2>\n'
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"
    )


def _sort_keys(lp: LayerPlan) -> tuple:
    """Per column of ``COLUMNS``, the value the table sorts that column by."""
    tl, c, mem = lp.tiling, lp.cost, lp.memory
    return (
        lp.index,
        lp.kind,
        lp.rect.w * lp.rect.h,
        tl.pes,
        tl.pes,
        mem.total,
        lp.colors,
        lp.stream.bytes,
        c.compute,
        c.ingress,
        c.fabric,
        c.latency + c.tail,
        c.total,
        c.bound,
        c.utilization,
    )


def _num(v) -> str:
    return v if isinstance(v, str) else repr(round(float(v), 6)) if isinstance(v, float) else str(v)


def _table(plan: Plan, pic_of: dict[str, int]) -> str:
    rows, total = table_rows(plan)
    phased = any(phase_of(lp) for lp in plan.layers)
    cols = list(COLUMNS) + (["phase"] if phased else []) + ["picture"]
    left = set(LEFT_ALIGNED) | ({len(COLUMNS)} if phased else set()) | {len(cols) - 1}
    kinds = ["n" if not isinstance(v, str) else "s" for v in _sort_keys(plan.layers[0])] + ["s"] * (len(cols) - 15)
    kinds[-1] = "n"
    head = "".join(
        f'<th data-k="{k}"{_LEFT if i in left else ""}>{_e(c)}</th>' for i, (c, k) in enumerate(zip(cols, kinds))
    )
    body = []
    for lp, row in zip(plan.layers, rows):
        keys = _sort_keys(lp)
        cells = list(row)
        cells[0] = f'<a id="{_e(lp.name)}"></a>{_e(row[0])}'
        cells[13] = f'<span class="b-{_e(row[13])}">{_e(row[13])}</span>'
        vals = list(keys)
        if phased:
            cells.append(_e(phase_of(lp) or ""))
            vals.append(phase_of(lp) or "")
        pic = pic_of[lp.name]
        cells.append(f'<a href="#p{pic}">#{pic + 1}</a>')
        vals.append(pic)
        tds = "".join(
            f'<td data-v="{_e(_num(v))}"{_LEFT if i in left else ""}>'
            f"{c if i in (0, 13) or i == len(cols) - 1 else _e(c)}</td>"
            for i, (c, v) in enumerate(zip(cells, vals))
        )
        body.append(f"<tr>{tds}</tr>\n")
    foot = list(total) + ([""] if phased else []) + [""]
    tfoot = "".join(f"<td{_LEFT if i in left else ''}>{_e(c)}</td>" for i, c in enumerate(foot))
    return (
        f'<h2 id="layers">Layers ({len(plan.layers):,})</h2>\n'
        '<p class="note">Click a column header to sort (again: reverse). Tiling: tile/parts of M on rows and K on '
        "columns, N chunk x steps (g: row groups, p: passes over M, b: batch groups x products, c: causal tiles "
        "skipped). Cycles: "
        "compute, ingress and fabric overlap; "
        "total = max(compute, ingress, fabric) + lat+tail; bound names the largest. picture: the drawing of the "
        "layer below.</p>\n"
        f'<table class="sort" id="layer-table"><thead><tr>{head}</tr></thead>\n<tbody>\n{"".join(body)}</tbody>\n'
        f"<tfoot><tr>{tfoot}</tr></tfoot></table>\n"
    )


_SCRIPT = """<script>
(function(){
  var t=document.getElementById("layer-table");if(!t)return;
  var hs=t.tHead.rows[0].cells;
  Array.prototype.forEach.call(hs,function(h,i){h.addEventListener("click",function(){
    var up=h.getAttribute("aria-sort")!=="ascending";
    Array.prototype.forEach.call(hs,function(o){o.removeAttribute("aria-sort");});
    h.setAttribute("aria-sort",up?"ascending":"descending");
    var num=h.getAttribute("data-k")==="n",b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows);
    rows.sort(function(x,y){var a=x.cells[i].getAttribute("data-v"),c=y.cells[i].getAttribute("data-v");
      var r=num?(parseFloat(a)-parseFloat(c)):(a<c?-1:a>c?1:0);return up?r:-r;});
    rows.forEach(function(r){b.appendChild(r);});
  });});
})();
</script>
"""


def _pictures(plan: Plan, groups: list[list[LayerPlan]]) -> str:
    out = [
        f'<h2 id="pictures">Pictures ({len(groups):,} for {len(plan.layers):,} layers)</h2>\n',
        '<p class="note">Each picture is drawn at the scale of its layer\'s rectangle (its window on the mesh); '
        "the inset shows where that window lies on the whole mesh. Routes in their router colors (a bundle of "
        f"more than {SAMPLE} parallel paths: a sample of its paths and its dashed box; a dot: where paths start); "
        "under them the link load (the busiest link out of each PE, in link cycles; x: the busiest link). Beside "
        "it: the SRAM of each PE holding a tile (its memory map against the budget) and the cost terms, the "
        "critical one outlined. Structurally identical layers draw one picture.</p>\n",
    ]
    t = target_of_plan(plan)
    for i, members in enumerate(groups):
        lp = members[0]
        refs = " ".join(f'<a href="#{_e(m.name)}">{_e(m.name)}</a>' for m in members[:40])
        if len(members) > 40:
            refs += f" … and {len(members) - 40:,} more"
        struct_note = f", structure {_e(lp.structure)}" if lp.structure else ""
        x, y, w, h = lp.rect.to_attrs()
        out.append(
            f'<figure id="p{i}"><figcaption><b>#{i + 1}</b>: {lp.kind}, {w}x{h} PEs at ({x},{y}){struct_note}; '
            f"{len(members):,} layer{'s' * (len(members) != 1)}: {refs}</figcaption>\n"
            f"{layer_svg(plan, lp, t, str(i))}</figure>\n"
        )
    return "".join(out)


# -- one picture ------------------------------------------------------------------------------


class _Svg:
    """A tiny SVG writer: elements as strings, numbers rounded to 0.1 px."""

    def __init__(self):
        self.parts: list[str] = []

    def add(self, s: str) -> None:
        self.parts.append(s)

    def rect(self, x, y, w, h, **kw) -> None:
        self.add(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}"{_attrs(kw)}/>')

    def text(self, x, y, s: str, **kw) -> None:
        self.add(f'<text x="{x:.1f}" y="{y:.1f}"{_attrs(kw)}>{_e(s)}</text>')


def _attrs(kw: dict) -> str:
    return "".join(f' {k.rstrip("_").replace("_", "-")}="{_e(v)}"' for k, v in kw.items())


def _cross(svg: _Svg, x: float, y: float, d: float) -> None:
    svg.add(
        f'<path d="M{x - d:.1f} {y - d:.1f}L{x + d:.1f} {y + d:.1f}M{x - d:.1f} {y + d:.1f}'
        f'L{x + d:.1f} {y - d:.1f}" stroke="#000" stroke-width="1.8"/>'
    )


def layer_svg(plan: Plan, lp: LayerPlan, t=None, uid: str = "0") -> str:
    """The picture of one layer: its window of the mesh (load heat map, routes, rectangle, busiest link) and
    beside it the whole-mesh inset, the SRAM bar, the cost terms and the legend. ``uid``: unique on the page
    (the window's clip path is named by it)."""
    t = t or target_of_plan(plan)
    x0, y0, x1, y1 = window(lp, t.width, t.height)
    vw, vh = x1 - x0 + 1, y1 - y0 + 1
    s = min(MAIN_PX[0] / vw, MAIN_PX[1] / vh, MAX_PX_PER_PE)
    mw, mh = vw * s, vh * s
    top = 18
    svg = _Svg()

    def px(x, y):  # PE coordinates (cell centres at integers) -> pixels
        return (x - x0 + 0.5) * s, top + (y - y0 + 0.5) * s

    svg.text(2, 12, f"x {x0}-{x1}, y {y0}-{y1} ({vw}x{vh} PEs of {t.width}x{t.height})", font_size=11, fill="#555")
    svg.rect(0, top, mw, mh, fill="#fafafa", stroke="#ccc")
    clip = f"clip-{uid}"  # what lies beyond the window (ingress from far port rows, a pooled heat cell) is cut
    svg.add(f'<clipPath id="{clip}"><rect x="0" y="{top}" width="{mw:.1f}" height="{mh:.1f}"/></clipPath>')
    svg.add(f'<g clip-path="url(#{clip})">')
    load_max, busiest = _heat(svg, plan, lp, (x0, y0, x1, y1), s, top, t)
    _routes(svg, lp.routes or (), px, s)
    rx, ry = px(lp.rect.x - 0.5, lp.rect.y - 0.5)
    svg.rect(rx, ry, lp.rect.w * s, lp.rect.h * s, fill="none", stroke="#222", stroke_width=1.6)
    tw, th = lp.tiling.size
    if (tw, th) != (lp.rect.w, lp.rect.h):
        svg.rect(rx, ry, tw * s, th * s, fill="none", stroke="#222", stroke_width=0.8, stroke_dasharray="2 2")
    if busiest is not None:
        _cross(svg, *px(*busiest), max(3.0, min(6.0, s / 2)))
    svg.add("</g>")
    side = mw + 16
    used = _inset(svg, lp, (x0, y0, x1, y1), t, side, top, busiest)
    used = _sram(svg, lp, side, used + 10)
    used = _cost(svg, lp, side, used + 10)
    used = _legend(svg, lp, side, used + 10, load_max, t)
    height = math.ceil(max(top + mh, used) + 4)
    width = math.ceil(side + SIDE_PX)
    body = "".join(svg.parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="layer {_e(lp.name)}">{body}</svg>\n'
    )


def _heat(svg: _Svg, plan: Plan, lp: LayerPlan, view, s: float, top: float, t):
    """The link load under the window, block max-pooled (a hot link never disappears) into a PNG; returns
    (the scale's maximum in link cycles, the busiest link's PE or None)."""
    x0, y0, x1, y1 = view
    load = link_load(plan, [lp])
    per_pe = np.maximum.reduce([load.load[d] for d in DIRS])[y0 : y1 + 1, x0 : x1 + 1] / t.link_bytes_per_cycle
    vmax = float(per_pe.max())
    if vmax <= 0:
        return 0.0, None
    block = max(1, math.ceil(max(per_pe.shape) / HEAT_CELLS))
    pooled = pool_max(per_pe, block)
    gh, gw = pooled.shape
    rep = max(1, min(8, math.ceil(block * s)))  # pixels per cell: crisp even where the viewer smooths images
    rgba = heat_rgba(np.repeat(np.repeat(pooled / vmax, rep, axis=0), rep, axis=1))
    uri = "data:image/png;base64," + base64.b64encode(png(rgba)).decode()
    svg.add(
        f'<image x="0" y="{top:.1f}" width="{gw * block * s:.1f}" height="{gh * block * s:.1f}" '
        f'preserveAspectRatio="none" image-rendering="optimizeSpeed" '
        f'style="image-rendering:pixelated" href="{uri}"/>'
    )
    _, (bx, by, _) = load.busiest()
    return vmax, (bx, by)


def heat_rgba(frac: np.ndarray) -> np.ndarray:
    """Fractions 0..1 as YlOrRd colors, zero transparent: (h, w, 4) uint8."""
    f = np.clip(frac, 0.0, 1.0) * (len(_RAMP) - 1)
    i = np.minimum(f.astype(int), len(_RAMP) - 2)
    w = (f - i)[..., None]
    rgb = _RAMP[i] * (1 - w) + _RAMP[i + 1] * w
    alpha = np.where(frac > 0, 215, 0)[..., None]
    return np.concatenate([np.rint(rgb), alpha], axis=-1).astype(np.uint8)


def png(rgba: np.ndarray) -> bytes:
    """A minimal RGBA PNG (no metadata: the same pixels give the same bytes)."""
    h, w, _ = rgba.shape
    raw = b"".join(b"\x00" + rgba[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _routes(svg: _Svg, routes, px, s: float) -> None:
    """Every route in its router color, one path element per color: a routed path whole, a bundle as a
    sample of its paths (its box dashed when it has more than SAMPLE); a color with more than MAX_LINES
    lines draws an even sample of them (the legend says how many routes each color has)."""
    from .viz import _route_lines

    lines: dict[int, list] = {}
    for r in routes:
        polylines, starts, big = _route_lines(r)
        lines.setdefault(r.color, []).extend(zip(polylines, starts))
        if big:
            bx0, by0, bx1, by1 = r.box
            ax, ay = px(bx0 - 0.5, by0 - 0.5)
            rgb = router_rgb(r.color)
            svg.rect(ax, ay, (bx1 - bx0 + 1) * s, (by1 - by0 + 1) * s, fill=rgb, fill_opacity="0.05", stroke=rgb,
                     stroke_opacity="0.7", stroke_width=0.7, stroke_dasharray="4 3")  # fmt: skip
    width = min(1.4, max(0.5, 0.6 * s))
    for color in sorted(lines):
        drawn = _even(lines[color], MAX_LINES)
        d = "".join("M" + "L".join("%.1f %.1f" % px(*p) for p in pl) for pl, _ in drawn)
        dots = "".join("M%.1f %.1fh0" % px(*start) for _, start in drawn)
        rgb = router_rgb(color)
        svg.add(f'<path d="{d}" stroke="{rgb}" stroke-width="{width:.2f}" stroke-opacity="0.85" fill="none"/>')
        svg.add(f'<path d="{dots}" stroke="{rgb}" stroke-width="{3 * width:.2f}" stroke-linecap="round"/>')


def _even(items: list, most: int) -> list:
    """At most ``most`` of ``items``, evenly spread, in order."""
    if len(items) <= most:
        return items
    return [items[i * len(items) // most] for i in range(most)]


def _inset(svg: _Svg, lp: LayerPlan, view, t, x: float, y: float, busiest) -> float:
    """The whole mesh, small: its outline, the layer's rectangle filled, the window dashed, the busiest
    link (x) wherever it is."""
    k = INSET_PX / max(t.width, t.height)
    w, h = t.width * k, t.height * k
    svg.text(x, y + 10, f"the {t.width}x{t.height} mesh", font_size=11, fill="#555")
    top = y + 16
    svg.rect(x, top, w, h, fill="#fff", stroke="#444", stroke_width=1)
    r = lp.rect
    svg.rect(x + r.x * k, top + r.y * k, max(r.w * k, 1.5), max(r.h * k, 1.5), fill="#4e79a7", fill_opacity="0.7")
    x0, y0, x1, y1 = view
    svg.rect(
        x + x0 * k, top + y0 * k, max((x1 - x0 + 1) * k, 2), max((y1 - y0 + 1) * k, 2), fill="none", stroke="#c62828",
        stroke_width=0.8, stroke_dasharray="3 2",
    )  # fmt: skip
    if busiest is not None:
        _cross(svg, x + (busiest[0] + 0.5) * k, top + (busiest[1] + 0.5) * k, 3.0)
    return top + h


def _sram(svg: _Svg, lp: LayerPlan, x: float, y: float) -> float:
    """SRAM per PE: the memory map as a stacked bar over the whole SRAM (runtime share included)."""
    mem, mm = lp.memory, lp.memmap or ()
    size = max((e.end for e in mm), default=mem.budget) or 1
    bar_w = SIDE_PX - 20
    svg.text(x, y + 10, f"SRAM per PE: {mem.total:,} of {mem.budget:,} B ({mem.total / max(mem.budget, 1):.0%})",
             font_size=11)  # fmt: skip
    top = y + 15
    for e in mm:
        if e.bytes:
            svg.rect(x + e.offset / size * bar_w, top, e.bytes / size * bar_w, 12,
                     fill=BUFFER_RGB.get(e.buffer, "#ccc"))  # fmt: skip
    svg.rect(x, top, bar_w, 12, fill="none", stroke="#444", stroke_width=0.8)
    shown = [e.buffer for e in mm if e.bytes and e.buffer != "free"] + ["free"]
    ly = top + 16
    for i, b in enumerate(shown):
        cx, cy = x + (i % 3) * (bar_w / 3), ly + (i // 3) * 13
        svg.rect(cx, cy, 8, 8, fill=BUFFER_RGB.get(b, "#ccc"), stroke="#888", stroke_width=0.5)
        svg.text(cx + 11, cy + 8, b, font_size=9.5)
    return ly + ((len(shown) + 2) // 3) * 13


def _cost(svg: _Svg, lp: LayerPlan, x: float, y: float) -> float:
    """The cost terms as bars; compute, ingress and fabric overlap (the largest, the critical one, bounds
    the layer: outlined)."""
    c = lp.cost
    terms = [("compute", c.compute), ("ingress", c.ingress), ("fabric", c.fabric), ("latency", c.latency),
             ("tail", c.tail)]  # fmt: skip
    top = max(v for _, v in terms) or 1.0
    svg.text(x, y + 10, f"cycles: {format_cycles(c.total)} total, {c.bound}-bound", font_size=11, font_weight="bold")
    bar_w = SIDE_PX - 120
    for i, (k, v) in enumerate(terms):
        ry = y + 16 + i * 14
        crit = k == c.bound
        svg.text(x, ry + 9, k, font_size=10, font_weight="bold" if crit else "normal")
        svg.rect(x + 60, ry, max(v / top * bar_w, 0.5), 10, fill=TERM_RGB[k],
                 stroke="#000" if crit else "none", stroke_width=1.5 if crit else 0)  # fmt: skip
        svg.text(x + 64 + bar_w, ry + 9, format_cycles(v), font_size=10)
    return y + 16 + len(terms) * 14


def _legend(svg: _Svg, lp: LayerPlan, x: float, y: float, load_max: float, t) -> float:
    """Router colors with the flows each carries, and the link-load scale."""
    kinds: dict[int, set] = {}
    count: dict[int, int] = {}
    for r in lp.routes or ():
        kinds.setdefault(r.color, set()).add(r.flow)
        count[r.color] = count.get(r.color, 0) + 1
    svg.text(x, y + 10, "router colors", font_size=11, font_weight="bold")
    y += 16
    for color in sorted(kinds):
        svg.add(f'<path d="M{x:.1f} {y + 5:.1f}h16" stroke="{router_rgb(color)}" stroke-width="3"/>')
        n = count[color]
        svg.text(x + 20, y + 9, f"color {color}: {', '.join(sorted(kinds[color]))} ({n} route{'s' * (n != 1)})",
                 font_size=10)  # fmt: skip
        y += 13
    if load_max > 0:
        y += 4
        svg.text(x, y + 10, f"link load, cycles ({t.link_bytes_per_cycle} B/cycle)", font_size=11, font_weight="bold")
        y += 15
        ramp = heat_rgba(np.linspace(0.0, 1.0, 64)[None, 1:])
        uri = "data:image/png;base64," + base64.b64encode(png(ramp)).decode()
        svg.add(f"<image x=\"{x:.1f}\" y=\"{y:.1f}\" width=\"150\" height=\"9\" preserveAspectRatio=\"none\" "
                f"href=\"{uri}\"/>")  # fmt: skip
        svg.text(x, y + 21, "0", font_size=9.5)
        svg.text(x + 150, y + 21, format_cycles(load_max), font_size=9.5, text_anchor="end")
        svg.text(x + 158, y + 9, "x busiest", font_size=9.5)
        y += 24
    return y
