"""``wafercc report`` and ``wafercc viz``: read a compiled output directory's plan.json and show it.

    wafercc report build/gpt                      # the per-layer table (report.txt; a rich table on a terminal)
    wafercc report build/gpt --layer L6           # one layer: tiling, memory map, routes and colors, cost terms
    wafercc report build/gpt --json               # the plan (or with --layer, the layer) as JSON
    wafercc report build/gpt --html report.html   # one self-contained page: totals, sortable table, pictures
    wafercc viz build/gpt -o mesh.png --layer all --show all

Both read only plan.json (the schema is docs/plan.md), never the model: they run in a second on any plan.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import zlib
from pathlib import Path

from runtime.artifacts import PLAN_FILE, check_output_file, write_atomic
from wafercc.cli.training import training_summary
from wafercc.errors import UsageError
from wafercc.ir.plan import PLAN_FORMAT, LayerPlan, Plan, Route
from wafercc.mapping.report import BOUND_COLUMN, COLUMNS, LEFT_ALIGNED, format_report, table_rows, target_of_plan, title
from wafercc.mapping.viz import FORMATS, find_layer, render
from wafercc.target import Target


def add_commands(sub) -> None:
    add_report(sub)
    add_viz(sub)


def load_plan(out_dir: str | os.PathLike) -> Plan:
    """The plan of a compiled output directory, loaded and checked (``Plan.from_json``: a plan that breaks
    a rule is a PlanFormatError naming the layer, field and rule); a UsageError when there is none."""
    return load_plan_and_json(out_dir)[0]


def load_plan_and_json(out_dir: str | os.PathLike) -> tuple[Plan, dict]:
    """``load_plan``, and plan.json's dict as read (keys the typed plan does not keep: a layer's phase, the
    scaling table)."""
    if not Path(out_dir).is_dir():
        raise UsageError(f"{out_dir} is not a directory: give an output directory of `wafercc compile`")
    path = Path(out_dir) / PLAN_FILE
    advice = "compile with the default --emit routed"
    if not path.is_file():
        raise UsageError(f"{out_dir} has no {PLAN_FILE}: {advice}")
    try:
        plan = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else e
        raise UsageError(f"{path} is not a plan ({why}): {advice}") from None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT or not plan.get("layers"):
        found = plan.get("format") if isinstance(plan, dict) else type(plan).__name__
        raise UsageError(f"{path} is not a plan (format {found!r}, expected {PLAN_FORMAT!r}): {advice}")
    return Plan.from_json(plan), plan


# -- report -----------------------------------------------------------------------------------


def add_report(sub) -> None:
    p = sub.add_parser("report", help="print the per-layer plan of a compiled output directory")
    p.add_argument("out_dir", metavar="OUT_DIR", help="a directory written by `wafercc compile`")
    p.add_argument("--layer", metavar="NAME", help="one layer in detail (its name, or its L<index> prefix)")
    p.add_argument("--json", action="store_true", help="print the plan (or the layer) as JSON")
    p.add_argument(
        "--html",
        metavar="FILE",
        help="write the plan as one self-contained HTML page (totals, training phases, sortable per-layer table, "
        "a picture per distinct layer) instead of printing the table",
    )
    p.add_argument("--force", action="store_true", help="with --html: replace FILE even if wafercc did not write it")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    if args.html is not None:
        return write_html(args)

    plan = load_plan(args.out_dir)
    layer = find_layer(plan, args.layer) if args.layer else None
    if args.json:
        shown = layer.to_json() if layer is not None else plan.to_json()
        sys.stdout.write(json.dumps(shown, indent=1, sort_keys=True) + "\n")
    elif layer is not None:
        sys.stdout.write(layer_detail(plan, layer))
    elif sys.stdout.isatty():
        from rich.console import Console

        Console().print(rich_report(plan))
    else:
        sys.stdout.write(format_report(plan))
    if layer is None and not args.json:  # a training plan: its phases
        sys.stdout.write(training_summary(args.out_dir))
    return 0


_BOUND_STYLE = {"compute": "green", "ingress": "yellow", "fabric": "red"}


def rich_report(plan: Plan):
    """The per-layer table of report.txt (``mapping.report.table_rows``) as a rich Table, for a terminal."""
    from rich.table import Table

    table = Table(
        title=title(plan),
        caption="Tiling: tile/parts of M on rows and K on columns; N chunk x steps (g: row groups, p: passes "
        "over M, b: batch groups x products, c: causal tiles skipped). Cycles: compute, ingress and fabric overlap.",
        show_footer=True,
        header_style="bold",
        footer_style="bold",
        pad_edge=False,
    )
    rows, total = table_rows(plan)
    for i, (col, foot) in enumerate(zip(COLUMNS, total)):
        table.add_column(col, footer=foot, justify="left" if i in LEFT_ALIGNED else "right", no_wrap=i in (0, 2, 3))
    for row in rows:
        cells = list(row)
        cells[BOUND_COLUMN] = f"[{_BOUND_STYLE.get(row[BOUND_COLUMN], 'default')}]{row[BOUND_COLUMN]}[/]"
        table.add_row(*cells)
    return table


def layer_detail(plan: Plan, lp: LayerPlan, most_routes: int = 64) -> str:
    """One layer in full: what it computes, its tiling, memory map, routes with colors, stream and cost."""
    t = target_of_plan(plan)
    tl = lp.tiling
    x, y, w, h = lp.rect.to_attrs()
    dims = sorted(lp.dims.to_attrs().items()) if lp.dims is not None else []  # B K M N, as plan.json sorts them
    out = [
        f"layer @{lp.name}: {lp.kind}, index {lp.index}, step {lp.step}, {lp.ops} ops"
        + (f", anchor {lp.anchor}" if lp.anchor is not None else "")
    ]
    out.append(
        f"  dims      {' '.join(f'{k}={v:,}' for k, v in dims) or '-'}   dtype {lp.dtype.value}   {lp.flops:,} FLOPs"
    )
    out.append(f"  weights   {', '.join('@' + w for w in lp.weights) or '-'} ({lp.weight_bytes:,} B)")
    out.append(
        f"  rect      x={x} y={y} w={w} h={h}: {tl.pes:,} PEs hold tiles ({tl.size[0]}x{tl.size[1]}) "
        f"of the {t.width}x{t.height} mesh ({tl.pes / (t.width * t.height):.1%})"
    )
    out += ["", "tiling"]
    n = tl.N
    out.append(f"  M  on y     {tl.M.parts:,} parts, {tl.M.tile:,} per PE")
    out.append(f"  K  on x     {tl.K.parts:,} parts, {tl.K.tile:,} per PE (partial sums reduced along rows)")
    where = "streamed in time" if n.axis == "time" else f"on {n.axis} (resident)"
    out.append(
        f"  N  {where}: chunks of {_n(n.chunk, 'column')} x {_n(n.steps, 'step')}"
        + (f", {n.groups} row groups" if n.groups > 1 else "")
    )
    out.append(f"  passes over M: {tl.passes}")
    if tl.B is not None:
        out.append(
            f"  B  on x     {tl.B.parts:,} batch groups of {tl.B.tile:,} products side by side, "
            f"{tl.K.parts:,} columns each (each reduced within its own columns)"
        )
    if tl.causal is not None:
        c = tl.causal
        what = "score tiles" if c.on == "scores" else "blocks of P"
        diag = "key > query" + (f" {c.offset:+d}" if c.offset else "")
        out.append(f"  causal      {what} wholly above the mask's diagonal ({diag}) are skipped")
    out += ["", _memory(lp, t), "", *_routes(lp, t, most_routes), "", _stream(lp), "", *_cost(lp, t)]
    return "\n".join(out) + "\n"


def _memory(lp: LayerPlan, t: Target) -> str:
    mem = lp.memory
    head = (
        f"memory per PE: {mem.total:,} of the {mem.budget:,}-byte budget "
        f"({mem.total / max(mem.budget, 1):.1%}); SRAM {t.sram_bytes:,} B, runtime "
        f"{t.runtime_reserved_bytes:,} B"
    )
    lines = [head, f"  {'offset':>7}  {'bytes':>7}  buffer"]
    for e in lp.memmap or ():
        lines.append(f"  {e.offset:>7,}  {e.bytes:>7,}  {e.buffer}")
    return "\n".join(lines)


def _routes(lp: LayerPlan, t: Target, most: int) -> list[str]:
    routes = lp.routes
    links = lp.links
    bx, by, bd = links.busiest
    head = (
        f"routes: {len(routes)} flows on {lp.colors} colors of {t.usable_colors} usable; busiest link "
        f"({bx},{by}) {bd}: {links.bytes:,} B = {links.cycles:,.0f} cycles"
    )
    lines = [head]
    by_color: dict[int, list] = {}
    for r in routes:
        by_color.setdefault(r.color, []).append(r)
    for color in sorted(by_color):
        rs = by_color[color]
        kinds = sorted({r.flow for r in rs})
        lines.append(f"  color {color:>2}: {len(rs)} x {', '.join(kinds)}")
    lines.append(f"  {'color':>5}  {'flow':<10} {'bytes':>10}  where")
    for r in routes[:most]:
        lines.append(f"  {r.color:>5}  {r.flow:<10} {r.bytes:>10,}  {_where(r)}")
    if len(routes) > most:
        lines.append(f"  ... {len(routes) - most} more (wafercc report DIR --layer NAME --json lists every route)")
    return lines


def _where(r: Route) -> str:
    if r.box is not None:
        x0, y0, x1, y1 = r.box
        axis = r.axis
        n = (y1 - y0 + 1) if axis == "x" else (x1 - x0 + 1)
        src = r.src if r.src is not None else x0 if axis == "x" else y0
        text = f"box ({x0},{y0})-({x1},{y1}): {n} path{'s' * (n != 1)} along {axis} from {axis}={src}"
        if r.feeds is not None:
            text += f", feeding columns {r.feeds[0]}-{r.feeds[1]}"
        return text
    pts = " -> ".join(f"({p[0]},{p[1]})" for p in r.path or ())
    return f"path {pts}" + (f" (from @{r.peer})" if r.peer else "")


def _stream(lp: LayerPlan) -> str:
    s = lp.stream
    if not s.bytes:
        return f"stream: nothing streamed (order {s.order}; weights resident or none)"
    return f"stream: order {s.order}, {s.bytes:,} B in {_n(s.chunks, 'chunk')} of {s.chunk_bytes:,} B" + (
        "; prefetched while the previous layer runs" if s.prefetch else ""
    )


def _cost(lp: LayerPlan, t: Target) -> list[str]:
    c, est = lp.cost, lp.estimate
    clock = t.clock_hz
    rows = [
        ("compute", c.compute, "FMACs over the PEs, plus a pipeline fill per chunk"),
        ("ingress", c.ingress, f"weights at {t.io_bytes_per_s / 1e9:g} GB/s from MemoryX"),
        (
            "fabric",
            c.fabric,
            (f"max of broadcast {est.broadcast:,.0f}, reduce {est.reduce:,.0f}, busiest link {lp.links.cycles:,.0f}"),
        ),
        ("latency", c.latency, "hops across the rectangle and relays of the reduction"),
        ("tail", c.tail, "the elementwise ops after the anchor"),
    ]
    lines = [f"cost (cycles at {clock / 1e9:.2f} GHz)"]
    lines += [f"  {k:<11} {v:>12,.1f}  {why}" for k, v, why in rows]
    lines.append(
        f"  {'total':<11} {c.total:>12,.1f}  = max(compute, ingress, fabric) + latency + tail = "
        f"{c.total / clock * 1e6:.4g} us"
    )
    lines.append(f"  {'bound':<11} {c.bound:>12}")
    ratio = f", estimate / roofline = {c.total / c.roofline:.3f}" if c.roofline else ""
    lines.append(f"  {'roofline':<11} {c.roofline:>12,.1f}  by {est.roofline_by}{ratio}")
    lines.append(f"  {'utilization':<11} {c.utilization:>12.2%}")
    return lines


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


# -- report --html ----------------------------------------------------------------------------


HTML_SUFFIXES = (".html", ".htm")


def write_html(args) -> int:
    """``report DIR --html FILE``: the plan as one self-contained page (wafercc/mapping/html.py), written
    atomically; FILE may replace only a page wafercc wrote (or anything but a directory with --force)."""
    from wafercc.mapping.html import html_report

    out = Path(args.html)
    others = [flag for flag, given in (("--layer", args.layer), ("--json", args.json)) if given]
    if others:
        raise UsageError(f"--html writes the whole plan: it does not take {' or '.join(others)}")
    if out.suffix.lower() not in HTML_SUFFIXES:
        raise UsageError(f"cannot write '{out}': the --html file name must end in .html")
    check_output_file(out, is_html_report, "an HTML report", force=args.force)
    plan, raw = load_plan_and_json(args.out_dir)
    page = html_report(plan, raw).encode()
    write_atomic(out, page)
    print(f"wrote {out} ({len(page) / 1024:,.0f} KB, {len(plan.layers):,} layers)")
    return 0


def is_html_report(p: Path) -> bool:
    """A page ``report --html`` wrote: its first line carries the mark (docs/safety.md)."""
    from wafercc.mapping.html import MARK

    with open(p, "rb") as f:
        first = f.readline(1 << 12).decode("utf-8", errors="replace")
    return MARK in first


# -- viz --------------------------------------------------------------------------------------


SHOWS = ("regions", "routes", "load", "sram", "all")  # = wafercc.mapping.viz.SHOWS (not imported: fast startup)


def add_viz(sub) -> None:
    p = sub.add_parser("viz", help="draw a compiled plan on the mesh (PNG or SVG)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="a directory written by `wafercc compile`")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="the picture: a .png or .svg file")
    p.add_argument(
        "--layer",
        default="all",
        metavar="NAME",
        help="one layer (its name or L<index>), or all (default): small multiples in stream mode, "
        "the floorplan in pipeline mode",
    )
    p.add_argument(
        "--show",
        default="all",
        choices=SHOWS,
        help="regions, routes (by router color), load (link load), sram (per PE), or all (default)",
    )
    p.add_argument("--force", action="store_true", help="replace the -o file even if it is not a picture viz drew")
    p.set_defaults(func=cmd_viz)


def cmd_viz(args) -> int:

    out = Path(args.output)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UsageError(f"cannot draw '{out}': the file name must end in .png or .svg")
    check_output_file(out, is_viz_picture, "a picture", force=args.force)
    plan = load_plan(args.out_dir)
    write_atomic(out, stamp_picture(render(plan, fmt, layer=args.layer, show=args.show), fmt))
    print(f"wrote {out}")
    return 0


# A picture viz drew says so inside (a PNG text chunk, an SVG comment), so that `viz -o` may replace it
# again and nothing else (docs/safety.md).
_PNG_SIGNATURE, _PNG_IHDR_END = b"\x89PNG\r\n\x1a\n", 33
_PNG_MARK = b"Source\0wafercc viz"
_SVG_MARK = b"<!-- wafercc viz -->\n"


def stamp_picture(data: bytes, fmt: str) -> bytes:
    if fmt == "png" and data.startswith(_PNG_SIGNATURE):
        chunk = struct.pack(">I", len(_PNG_MARK)) + b"tEXt" + _PNG_MARK
        chunk += struct.pack(">I", zlib.crc32(b"tEXt" + _PNG_MARK))
        return data[:_PNG_IHDR_END] + chunk + data[_PNG_IHDR_END:]
    if fmt == "svg":
        head, sep, rest = data.partition(b"\n")
        return head + sep + _SVG_MARK + rest if head.startswith(b"<?xml") else _SVG_MARK + data
    return data


def is_viz_picture(p: Path) -> bool:
    with open(p, "rb") as f:
        head = f.read(256)
    return (head.startswith(_PNG_SIGNATURE) and _PNG_MARK in head) or _SVG_MARK in head
