"""Pictures of a plan: the mesh with each layer's rectangle, its routes by router color, the link load, and
the SRAM each PE uses.

    png = render(plan, "png", layer="all", show="all")     # plan: a loaded plan.json

Views (``show``): ``regions`` (the rectangles, labeled; in stream mode the I/O port rows on both edges),
``routes`` (every flow in its router color: a path is a polyline; a bundle of parallel paths is a sample
of its paths and, when it has more, its tinted box with a dashed edge; a dot marks where the paths start),
``load`` (bytes over the busiest link out of each PE, recomputed from the routes with ``LinkLoad``, in link
cycles), ``sram`` (memory used over the budget, per PE of each layer's tiling), ``all`` (the four). Stream
mode runs one layer at a time, so ``layer="all"`` draws small multiples (one panel per layer, the first
``MAX_PANELS``), each cropped to its layer's ``window`` (the rectangle and a small margin) with the whole mesh
as an inset beside it, titles wrapped to the panel, and one legend and color scale below; a single stream
layer is drawn cropped the same way. Pipeline mode runs every layer at once, so it draws one floorplan.
``figure`` gives the Figure itself (tests check that no two of its texts overlap).

Coordinates are PE coordinates: x is the column from the west edge, y the row from the north edge (drawn
downwards). Heat maps of big meshes are reduced by block max-pooling, so a hot link never disappears and a
750 x 994 mesh draws in well under a second per panel.

Only the Agg canvas is used (no pyplot, no display, no global state), and the same plan gives the same
bytes: no date or version in the metadata, a fixed SVG hash salt.
"""

from __future__ import annotations

import difflib
import io
import math
from dataclasses import dataclass

import numpy as np

from wafercc.errors import UsageError
from wafercc.ir.plan import LayerPlan, Plan, Route
from wafercc.target import Target

from .flows import DIRS, Flow, LinkLoad
from .report import as_plan, format_cycles, target_of_plan

SHOWS = ("regions", "routes", "load", "sram", "all")
FORMATS = ("png", "svg")
MAX_PANELS = 24  # small multiples beyond this are unreadable; the rest are named in a note
SAMPLE = 6  # paths drawn per bundle; a bundle with more is drawn as its tinted, dashed box plus a sample
HEAT_PX = 240  # heat-map cells along the longer mesh side of a single panel (small multiples: half)
DPI = 100
# Router colors 0..23 as distinct hues (tab20, then four of Dark2): color k is always drawn the same.
_ROUTER_RGB = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
    "#1b9e77",
    "#d95f02",
    "#7570b3",
    "#e7298a",
)


def router_rgb(color: int) -> str:
    return _ROUTER_RGB[color % len(_ROUTER_RGB)] if color >= 0 else "#000000"


# -- reading a plan ---------------------------------------------------------------------------


def flow_of(layer: str, r: Route) -> Flow:
    """A route of the plan as the Flow the route pass made."""
    return Flow(
        r.flow, layer, r.box, r.axis or "x", r.src, float(r.bytes), r.feeds, list(r.path or ()), r.color, r.peer or ""
    )


def find_layer(plan: Plan | dict, name: str) -> LayerPlan:
    """A layer by its name (``L3_fc1``, with or without ``@``) or its unique ``L<index>`` prefix."""
    plan = as_plan(plan)
    name = name.lstrip("@")
    by_name = {lp.name: lp for lp in plan.layers}
    if name in by_name:
        return by_name[name]
    prefixed = [lp for lp in plan.layers if lp.name.startswith(name + "_")]
    if len(prefixed) == 1:
        return prefixed[0]
    close = difflib.get_close_matches(name, by_name, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; layers: {_some(list(by_name))}"
    raise UsageError(f"plan of @{plan.model} has no layer '{name}'{hint}")


def _some(names: list[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def link_load(plan: Plan | dict, layers: list[LayerPlan]) -> LinkLoad:
    t = target_of_plan(plan)
    load = LinkLoad(t.width, t.height)
    for lp in layers:
        for r in lp.routes or ():
            load.add(flow_of(lp.name, r))
    return load


def pool_max(a: np.ndarray, block: int) -> np.ndarray:
    """Block max-pooling: each block x block tile of ``a`` becomes its largest value."""
    if block <= 1:
        return a
    h, w = a.shape
    gh, gw = -(-h // block), -(-w // block)
    padded = np.zeros((gh * block, gw * block), dtype=a.dtype)
    padded[:h, :w] = a
    return padded.reshape(gh, block, gw, block).max(axis=(1, 3))


def sram_map(plan: Plan | dict, layers: list[LayerPlan]) -> np.ndarray:
    """Per PE, the largest fraction of the SRAM budget any of ``layers`` uses there."""
    t = target_of_plan(plan)
    out = np.zeros((t.height, t.width))
    for lp in layers:
        x, y = lp.rect.x, lp.rect.y
        w, h = lp.tiling.size  # the PEs holding tiles (a pipeline region may be larger)
        frac = lp.memory.total / max(lp.memory.budget, 1)
        view = out[y : y + h, x : x + w]
        np.maximum(view, frac, out=view)
    return out


# -- rendering --------------------------------------------------------------------------------


@dataclass
class _Ctx:
    plan: Plan
    target: Target
    fig: object
    view: tuple[int, int, int, int]  # x0, y0, x1, y1 (inclusive): the part of the mesh drawn
    heat_px: int  # heat-map cells along the view's longer side
    small: bool  # small multiples: fewer labels, one shared colorbar and legend
    load_max: float = 0.0  # shared scale of the load panels of a figure (0: each its own)
    busiest: str = ""  # the load panel's busiest link, for its title


def render(plan: Plan | dict, fmt: str, layer: str = "all", show: str = "all") -> bytes:
    """The picture of ``plan`` (typed, or a plan.json dict: loaded and checked) as PNG or SVG bytes."""
    import matplotlib

    if fmt not in FORMATS:
        raise UsageError(f"cannot draw a '.{fmt}' file: use .png or .svg")
    with matplotlib.rc_context(_RC):
        fig = figure(plan, layer, show)
        freeze_layout(fig)
        buf = io.BytesIO()
        meta = {"Software": None} if fmt == "png" else {"Creator": None, "Date": None}
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta)
    return buf.getvalue()


def freeze_layout(fig, digits: int = 9) -> None:
    """Run the constrained layout once and fix every position it chose, rounded to ``digits`` decimals of
    the figure. The layout solver's results carry noise near 1e-15 that depends on Python's hash seed (a
    0 can come out as -1e-16), which an SVG prints as "-0" and hashes into its clip-path ids: rounded and
    frozen, the same plan gives the same bytes in every process."""
    from matplotlib.transforms import Bbox

    fig.draw_without_rendering()

    def fix(f) -> None:
        for text in (getattr(f, name, None) for name in ("_suptitle", "_supxlabel", "_supylabel")):
            if text is not None:
                text.set_position(tuple(float(v) for v in np.round(text.get_position(), digits) + 0.0))
        for ax in f.axes:
            ax.set_position(Bbox(np.round(ax.get_position().get_points(), digits) + 0.0), which="both")
        for sub in f.subfigs:
            sub._redo_transform_rel_fig(bbox=Bbox(np.round(sub.bbox_relative.get_points(), digits) + 0.0))
            fix(sub)

    fix(fig)
    fig.set_layout_engine("none")


def figure(plan: Plan | dict, layer: str = "all", show: str = "all"):
    """The matplotlib Figure ``render`` saves (Agg canvas; no pyplot): small multiples of every layer in
    stream mode, else the floorplan of one layer or of the pipeline."""
    import matplotlib
    from matplotlib.figure import Figure

    plan = as_plan(plan)
    if show not in SHOWS:
        raise UsageError(f"unknown view '{show}' (choose from {', '.join(SHOWS)})")
    chosen = None if layer == "all" else find_layer(plan, layer)
    with matplotlib.rc_context(_RC):
        if plan.mode == "stream" and chosen is None:
            return _small_multiples(plan, show, Figure)
        return _floorplan(plan, ["regions", "routes", "load", "sram"] if show == "all" else [show], chosen, Figure)


_RC = {
    "svg.hashsalt": "wafercc",
    "svg.fonttype": "path",
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "image.interpolation": "nearest",
    "image.resample": False,
}


def _floorplan(plan, views, chosen, Figure):
    """One panel per view: a chosen layer (with the layers of its step as grey context) or, in pipeline
    mode, every layer at once. A chosen layer of a stream plan is drawn cropped to its rectangle, with the
    whole mesh as an inset beside the panels."""
    t = target_of_plan(plan)
    layers = [chosen] if chosen is not None else list(plan.layers)
    context = (
        []
        if plan.mode == "stream" or chosen is None
        else [lp for lp in plan.layers if lp is not chosen and lp.step == chosen.step]
    )
    cropped = chosen is not None and plan.mode == "stream"
    view = window(chosen, t.width, t.height) if cropped else _view(plan, layers + context)
    ncols = 2 if len(views) > 1 else 1
    nrows = -(-len(views) // ncols)
    pw, ph = _panel_size(view, 5.0)
    side = 1.6 if cropped else 0.0
    extra = max(2.6, _legend_inches(layers) + 0.4) if "routes" in views else 2.6  # the legend beside a panel
    fig = Figure(figsize=(ncols * (pw + extra) + side, nrows * (ph + 0.75) + 0.6), layout="constrained")
    where = fig
    if cropped:
        where, aside = fig.subfigures(1, 2, width_ratios=[ncols * (pw + extra), side])
    ctx = _Ctx(plan, t, where, view, HEAT_PX, small=False)
    axes = where.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, v in zip(axes, views):
        _panel(ctx, ax, v, layers, context)
        ax.set_title(_wrap(_view_title(ctx, v), pw + 2.0, 8.5))
    for ax in axes[len(views) :]:
        ax.set_axis_off()
    if cropped:
        inset = aside.subplots(3, 1, height_ratios=[1, 2, 1])[1]
        aside.axes[0].set_axis_off()
        aside.axes[2].set_axis_off()
        _mesh_inset(inset, ctx, chosen, float(chosen.links.cycles if chosen.links else 0.0))
        inset.set_title(_wrap(f"the whole {t.width}x{t.height} mesh: the layer's load and rectangle, the window "
                              "drawn (dashed)", side, 6.5), fontsize=6.5)  # fmt: skip
    fig.suptitle(_wrap(_headline(plan, chosen) + _zoom_note(plan, view), fig.get_figwidth(), 9.5), fontsize=9.5)
    return fig


def _legend_inches(layers: list[LayerPlan]) -> float:
    """About how wide the router-color legend of ``layers`` is (7-point text, a line sample, padding)."""
    labels = [h.get_label() for h in _color_handles([r for lp in layers for r in lp.routes or ()])]
    return 0.7 + 0.062 * max((len(x) for x in labels), default=0)


def _view_title(ctx: _Ctx, v: str) -> str:
    head = _VIEW_TITLES[v]
    if v == "regions" and ctx.plan.mode == "stream":
        from .ports import port_rows

        head = head[:-1] + f"; > < I/O port rows, {len(port_rows(ctx.target))} per edge)"
    if v == "load" and ctx.busiest:
        head += f"\n{ctx.busiest} (x)"
    return head


def _small_multiples(plan, show, Figure):
    """Stream mode, every layer: one panel per layer, each cropped to its layer's window (its rectangle and
    routes) with the whole mesh as an inset beside it, so a small rectangle is not a speck in a mostly empty
    mesh. ``all`` draws the overview: the link load under the layer's rectangle, with its SRAM use and
    colors in the title. One shared scale (colorbar) and one legend below the panels; titles are wrapped to
    their panel's width, so no two texts overlap."""
    shown = list(plan.layers[:MAX_PANELS])
    t = target_of_plan(plan)
    ncols = min(4, len(shown))
    nrows = -(-len(shown) // ncols)
    fig = Figure(figsize=(ncols * PANEL_IN[0], nrows * PANEL_IN[1] + 1.9), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[nrows * PANEL_IN[1], 1.9])
    cells = top.subfigures(nrows, ncols, squeeze=False).ravel()
    v = "overview" if show == "all" else show
    load_max = 0.0
    if v in ("load", "overview"):
        load_max = max(float(lp.links.cycles if lp.links else 0.0) for lp in shown) or 1.0
    mappable = None
    for cell, lp in zip(cells, shown):
        ax, inset = cell.subplots(1, 2, width_ratios=[4, 1.1])
        ctx = _Ctx(plan, t, cell, window(lp, t.width, t.height), HEAT_PX // 2, small=True, load_max=load_max)
        mappable = _panel(ctx, ax, v, [lp], []) or mappable
        _mesh_inset(inset, ctx, lp, load_max)
        c, mem = lp.cost, lp.memory
        text = (
            f"{lp.name}: {format_cycles(c.total)} cycles, {c.bound}-bound, "
            f"SRAM {mem.total / max(mem.budget, 1):.0%}, {lp.colors} colors"
        )
        cell.suptitle(_wrap(text, PANEL_IN[0], 7), fontsize=7)
    for cell in cells[len(shown) :]:
        cell.set_visible(False)
    _small_legend(plan, bottom, v, shown, mappable, t)
    note = (
        ""
        if len(plan.layers) <= MAX_PANELS
        else (f"\nfirst {MAX_PANELS} of {len(plan.layers)} layers; draw the others with --layer NAME")
    )
    hint = (
        "\nper layer: link load under its rectangle; --show routes for router colors, --layer NAME for one "
        "layer in full"
        if v == "overview"
        else ""
    )
    fig.suptitle(_wrap(_headline(plan, None) + note + hint, ncols * PANEL_IN[0], 9.5), fontsize=9.5)
    return fig


PANEL_IN = (3.4, 3.0)  # inches per small-multiples panel (the layer's window and its mesh inset)


def _wrap(text: str, inches: float, points: float) -> str:
    """``text`` wrapped to fit ``inches`` at a font of ``points`` (an average glyph is ~0.6 em wide)."""
    import textwrap

    width = max(12, int(inches * 72 / (points * 0.62)))
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def window(lp: LayerPlan, width: int, height: int) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 (inclusive): the layer's rectangle with a small margin, the part of the mesh a picture
    of the layer draws at full scale (routes beyond it, such as ingress from distant port rows, are clipped;
    the whole-mesh inset shows them as load)."""
    x, y, w, h = lp.rect.to_attrs()
    out = []
    for lo, n, size in ((x, w, width), (y, h, height)):
        pad = max(1, round(0.03 * n))
        out.append((max(0, lo - pad), min(size - 1, lo + n - 1 + pad)))
    (x0, x1), (y0, y1) = out
    return x0, y0, x1, y1


def _mesh_inset(ax, ctx: _Ctx, lp: LayerPlan, load_max: float) -> None:
    """The whole mesh, small: the layer's link load everywhere (max-pooled, on the panels' scale), its
    rectangle, and the window the panel draws (dashed)."""
    t = ctx.target
    ax.set_xlim(-0.5, t.width - 0.5)
    ax.set_ylim(t.height - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_color("#404040")
    if load_max > 0:
        whole = _Ctx(ctx.plan, t, ctx.fig, (0, 0, t.width - 1, t.height - 1), INSET_CELLS, small=True)
        load = link_load(ctx.plan, [lp])
        per_pe = np.maximum.reduce([load.load[d] for d in DIRS]) / t.link_bytes_per_cycle
        _heat(whole, ax, per_pe, cmap="YlOrRd", vmin=0, vmax=load_max)
    x, y, w, h = lp.rect.to_attrs()
    ax.add_patch(_patches().Rectangle((x - 0.5, y - 0.5), w, h, fc=INSET_RGB, alpha=0.45, ec=INSET_RGB, lw=0.8))
    x0, y0, x1, y1 = ctx.view
    ax.add_patch(
        _patches().Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ec=WINDOW_RGB, lw=0.8, ls="--")
    )
    ax.set_title("mesh", fontsize=6.5)


INSET_CELLS = 48  # heat-map cells along the longer side of the mesh inset
INSET_RGB, WINDOW_RGB = "#4e79a7", "#c62828"


def _small_legend(plan, where, v: str, shown, mappable, t: Target) -> None:
    """Below the panels: the shared color scale, and what every color and mark means."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], color="#202020", lw=1.2, label="layer rectangle"),
        Patch(fc=INSET_RGB, alpha=0.45, ec=INSET_RGB, label="inset: the rectangle on the whole mesh"),
        Line2D([], [], color=WINDOW_RGB, lw=0.8, ls="--", label="inset: the window drawn"),
    ]
    if v in ("load", "overview"):
        handles.append(Line2D([], [], color="#000000", marker="x", lw=0, ms=6, mew=1.5, label="busiest link"))
    if v == "regions":
        handles.append(Line2D([], [], color="#303030", marker=">", lw=0, ms=4, label="I/O port rows"))
    if v == "routes":
        handles += _color_handles([r for lp in shown for r in lp.routes])
    label_ctx = _Ctx(plan, t, where, (0, 0, 0, 0), 0, small=True)
    if mappable is not None:
        gs = where.add_gridspec(3, 2, height_ratios=[1, 1, 1], width_ratios=[1, 1.3])
        cax = where.add_subplot(gs[1, 0])
        where.colorbar(mappable, cax=cax, orientation="horizontal", label=_COLORBAR[v](label_ctx))
        host = where.add_subplot(gs[:, 1])
    else:
        host = where.add_subplot(1, 1, 1)
    host.set_axis_off()
    host.legend(handles=handles, loc="center", ncols=1 if len(handles) <= 5 else 2, frameon=False, title="legend")


_VIEW_TITLES = {
    "regions": "regions (layer rectangles)",
    "routes": "routes by router color (dot: where paths start)",
    "load": "link load",
    "sram": "SRAM per PE",
}
_LOAD_LABEL = "busiest link out of each PE, cycles ({} B/cycle)"
_COLORBAR = {
    "load": lambda c: _LOAD_LABEL.format(c.target.link_bytes_per_cycle),
    "overview": lambda c: _LOAD_LABEL.format(c.target.link_bytes_per_cycle),
    "sram": lambda c: f"SRAM used / budget ({c.target.usable_sram:,} B per PE)",
}


def _panel(ctx: _Ctx, ax, view: str, layers: list[LayerPlan], context: list[LayerPlan]):
    """Draw one view of ``layers`` on ``ax``; return the heat map's image (for a shared colorbar), if any."""
    _frame(ctx, ax)
    image = None
    if view in ("load", "overview"):
        image = _load_heat(ctx, ax, layers)
    elif view == "sram":
        image = _sram_heat(ctx, ax, layers)
    for layer in context:
        _rect(ax, layer, fill=False, color="#a0a0a0", label=True)
    for layer in layers:
        rgb = "#202020" if ctx.small and view != "regions" else _layer_rgb(layer)
        _rect(ax, layer, fill=view == "regions", color=rgb, label=not ctx.small)
    if view == "regions" and ctx.plan.mode == "stream":
        _ports(ctx, ax)
    if view == "routes":
        _routes(ax, [r for lp in layers for r in lp.routes])
        if not ctx.small:
            _legend(ax, [r for lp in layers for r in lp.routes])
    if view == "regions" and not ctx.small and len(layers) > 1:
        _layer_legend(ax, layers)
    if image is not None and not ctx.small:
        ctx.fig.colorbar(image, ax=ax, shrink=0.8, label=_COLORBAR[view](ctx))
    return image


def _view(plan: Plan, layers: list[LayerPlan]) -> tuple[int, int, int, int]:
    """The window worth drawing: the box around the layers' rectangles and routes, padded; an axis the
    box covers mostly is shown whole."""
    t = target_of_plan(plan)
    xs, ys = [], []
    for lp in layers:
        x, y, w, h = lp.rect.to_attrs()
        xs += [x, x + w - 1]
        ys += [y, y + h - 1]
        for r in lp.routes:
            pts = r.points()
            xs += [p[0] for p in pts]
            ys += [p[1] for p in pts]
    out = []
    for lo, hi, n in ((min(xs), max(xs), t.width), (min(ys), max(ys), t.height)):
        pad = max(1, round(0.04 * n))
        lo, hi = max(0, lo - pad), min(n - 1, hi + pad)
        out.append((0, n - 1) if hi - lo + 1 > 0.75 * n else (lo, hi))
    (x0, x1), (y0, y1) = out
    return x0, y0, x1, y1


def _zoom_note(plan: Plan, view) -> str:
    t = target_of_plan(plan)
    x0, y0, x1, y1 = view
    if (x0, y0, x1, y1) == (0, 0, t.width - 1, t.height - 1):
        return ""
    return f" [showing x {x0}-{x1}, y {y0}-{y1}; nothing is drawn outside]"


def _frame(ctx: _Ctx, ax) -> None:
    x0, y0, x1, y1 = ctx.view
    t = ctx.target
    ax.set_xlim(x0 - 0.5, x1 + 0.5)
    ax.set_ylim(y1 + 0.5, y0 - 0.5)  # row 0 (north) on top
    ax.set_aspect("equal")
    ax.xaxis.set_major_locator(_ticker().MaxNLocator(nbins="auto", integer=True))
    ax.yaxis.set_major_locator(_ticker().MaxNLocator(nbins="auto", integer=True))
    ax.set_xlabel("x (PE column)")
    ax.set_ylabel("y (PE row)")
    ax.add_patch(_patches().Rectangle((-0.5, -0.5), t.width, t.height, fill=False, lw=1.0, ec="#404040"))


def _ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def _patches():
    import matplotlib.patches

    return matplotlib.patches


def _layer_rgb(lp: LayerPlan) -> str:
    return _ROUTER_RGB[(lp.index * 7) % 20]  # neighbors in execution order get distant hues


def _rect(ax, lp: LayerPlan, fill: bool, color: str, label: bool) -> None:
    x, y, w, h = lp.rect.to_attrs()
    ax.add_patch(
        _patches().Rectangle(
            (x - 0.5, y - 0.5),
            w,
            h,
            fill=fill,
            fc=color,
            alpha=0.6 if fill else 1,
            ec="#303030" if fill else color,
            lw=1.2,
            zorder=2,
        )
    )
    if label:
        ax.text(
            x + w / 2 - 0.5,
            y + h / 2 - 0.5,
            lp.name.split("_", 1)[0],
            ha="center",
            va="center",
            fontsize=7,
            clip_on=True,
            color="#202020",
            zorder=7,
        )


def _ports(ctx: _Ctx, ax) -> None:
    """The I/O port rows on the west and east edges, as the route pass models them."""
    from .ports import port_rows

    x0, y0, x1, y1 = ctx.view
    rows = [r for r in port_rows(ctx.target) if y0 <= r <= y1]
    w = ctx.target.width
    for x, marker in ((-0.5, ">"), (w - 0.5, "<")):
        if x0 - 0.5 <= x <= x1 + 0.5:
            ax.scatter([x] * len(rows), rows, marker=marker, s=10, c="#303030", clip_on=False, zorder=5)


def _heat(ctx: _Ctx, ax, a: np.ndarray, **kw):
    """``a`` (one value per PE) over the view, block max-pooled down to about ``heat_px`` cells."""
    x0, y0, x1, y1 = ctx.view
    a = a[y0 : y1 + 1, x0 : x1 + 1]
    block = max(1, math.ceil(max(a.shape) / ctx.heat_px))
    pooled = pool_max(a, block)
    gh, gw = pooled.shape
    return ax.imshow(
        np.ma.masked_equal(pooled, 0),
        origin="upper",
        interpolation="nearest",
        zorder=1,
        extent=(x0 - 0.5, x0 + gw * block - 0.5, y0 + gh * block - 0.5, y0 - 0.5),
        **kw,
    )


def _load_heat(ctx: _Ctx, ax, layers):
    load = link_load(ctx.plan, layers)
    per_pe = np.maximum.reduce([load.load[d] for d in DIRS]) / ctx.target.link_bytes_per_cycle
    vmax = ctx.load_max or float(per_pe.max()) or 1.0
    image = _heat(ctx, ax, per_pe, cmap="YlOrRd", vmin=0, vmax=vmax)
    best, (x, y, d) = load.busiest()
    if best > 0:
        ax.plot([x], [y], marker="x", ms=6, mew=1.5, color="#000000", zorder=6)
        ctx.busiest = f"busiest link ({x},{y}) {d}: {format_cycles(best / ctx.target.link_bytes_per_cycle)} cycles"
    return image


def _sram_heat(ctx: _Ctx, ax, layers):
    return _heat(ctx, ax, sram_map(ctx.plan, layers), cmap="viridis", vmin=0, vmax=1)


def _routes(ax, routes: list[Route]) -> None:
    """Every route as line segments in its router color, one LineCollection per color; bundles with more
    than SAMPLE paths also as their tinted, dashed box."""
    from matplotlib.collections import LineCollection

    lines: dict[int, list] = {}
    sources: dict[int, list] = {}
    for r in routes:
        polylines, starts, big = _route_lines(r)
        lines.setdefault(r.color, []).extend(polylines)
        sources.setdefault(r.color, []).extend(starts)
        if big:
            x0, y0, x1, y1 = r.box
            rgb = router_rgb(r.color)
            ax.add_patch(
                _patches().Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fc=rgb, alpha=0.07, lw=0, zorder=2)
            )
            ax.add_patch(
                _patches().Rectangle(
                    (x0 - 0.5, y0 - 0.5),
                    x1 - x0 + 1,
                    y1 - y0 + 1,
                    fill=False,
                    ec=rgb,
                    lw=0.7,
                    ls="--",
                    alpha=0.8,
                    zorder=2,
                )
            )
    for color in sorted(lines):
        rgb = router_rgb(color)
        ax.add_collection(LineCollection(lines[color], colors=rgb, linewidths=1.1, alpha=0.9, zorder=3))
        pts = np.array(sources[color], dtype=float).reshape(-1, 2)
        ax.scatter(pts[:, 0], pts[:, 1], s=7, c=rgb, zorder=4, linewidths=0)


def _route_lines(r: Route) -> tuple[list, list, bool]:
    """(polylines, source points, drawn as a sample of a big bundle) of one route."""
    if r.box is None:
        pts = list(r.path or ())
        return ([pts], [pts[0]], False) if pts else ([], [], False)
    x0, y0, x1, y1 = r.box
    off = ((r.color % 5) - 2) * 0.12  # flows over the same box side by side, not on top of each other
    if r.axis == "x":
        rows = _sample(y0, y1, r.color)
        src = x0 if r.src is None else r.src
        return ([[(x0, y + off), (x1, y + off)] for y in rows], [(src, y + off) for y in rows], y1 - y0 + 1 > SAMPLE)
    cols = _sample(x0, x1, r.color)
    src = y0 if r.src is None else r.src
    return [[(x + off, y0), (x + off, y1)] for x in cols], [(x + off, src) for x in cols], x1 - x0 + 1 > SAMPLE


def _sample(lo: int, hi: int, salt: int) -> list[int]:
    """At most SAMPLE evenly spread positions in [lo, hi], phase-shifted by ``salt`` so that bundles over
    the same box do not draw the same lines."""
    n = hi - lo + 1
    if n <= SAMPLE:
        return list(range(lo, hi + 1))
    step = n / SAMPLE
    phase = (salt * 0.618) % 1.0
    return sorted({lo + min(n - 1, int((i + phase) * step)) for i in range(SAMPLE)})


def _color_handles(routes: list[Route]) -> list:
    """One legend entry per router color: the flows it carries."""
    from matplotlib.lines import Line2D

    kinds: dict[int, set] = {}
    for r in routes:
        kinds.setdefault(r.color, set()).add(r.flow)
    return [
        Line2D([], [], color=router_rgb(c), lw=2, label=f"router color {c}: {', '.join(sorted(kinds[c]))}")
        for c in sorted(kinds)
    ]


def _legend(where, routes: list[Route]) -> None:
    handles = _color_handles(routes)
    if handles:
        where.legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, title="router colors"
        )


def _layer_legend(ax, layers: list[LayerPlan], most: int = 40) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(fc=_layer_rgb(lp), alpha=0.6, ec="#303030", lw=0.5, label=lp.name) for lp in layers[:most]]
    if len(layers) > most:
        handles.append(Patch(fc="white", ec="white", label=f"... and {len(layers) - most} more"))
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0,
        fontsize=6.5,
        ncols=1 if len(handles) <= 20 else 2,
    )


def _panel_size(view, longest: float) -> tuple[float, float]:
    x0, y0, x1, y1 = view
    w, h = x1 - x0 + 1, y1 - y0 + 1
    scale = longest / max(w, h)
    return max(w * scale, 1.5), max(h * scale, 1.5)


def _headline(plan: Plan, chosen: LayerPlan | None) -> str:
    t, tot = target_of_plan(plan), plan.totals
    head = f"@{plan.model} on {t.name} ({t.width}x{t.height} PEs), {plan.mode} mode"
    if chosen is None:
        return f"{head}: {tot.layers} layers, {format_cycles(tot.cycles)} cycles, utilization {tot.utilization:.1%}"
    c = chosen.cost
    x, y, w, h = chosen.rect.to_attrs()
    return (
        f"{head}\nlayer {chosen.name} ({chosen.kind}): {w}x{h} PEs at ({x},{y}), "
        f"{format_cycles(c.total)} cycles, {c.bound}-bound, utilization {c.utilization:.1%}"
    )


__all__ = [
    "FORMATS",
    "SHOWS",
    "figure",
    "find_layer",
    "flow_of",
    "link_load",
    "pool_max",
    "render",
    "router_rgb",
    "sram_map",
    "target_of_plan",
    "window",
]
