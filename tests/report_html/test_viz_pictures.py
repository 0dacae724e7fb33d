"""`wafercc viz` pictures people can read, on real compiled examples: no two texts overlap (and none runs off
the figure), panels cropped to what they show with the whole mesh as an inset, a legend for every color."""

from __future__ import annotations

import itertools

import matplotlib
import pytest

from wafercc.cli.report import load_plan
from wafercc.mapping import viz


def drawn_texts(fig) -> list[tuple[str, object]]:
    """Every text matplotlib draws on ``fig`` with its box on the canvas: titles, labels, tick labels (the
    ones inside their axis' range: the others are not drawn), legend entries, annotations."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    ticks, shown = set(), []
    for ax in fig.get_axes():
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                for label in (tick.label1, tick.label2):
                    ticks.add(id(label))
                    if label.get_visible() and label.get_text().strip() and lo - 1e-9 <= tick.get_loc() <= hi + 1e-9:
                        shown.append(label)
    for t in fig.findobj(Text):
        if id(t) not in ticks and t.get_visible() and t.get_text().strip():
            shown.append(t)
    return [(t.get_text(), t.get_window_extent(renderer)) for t in shown]


def text_problems(fig) -> list:
    """Pairs of texts whose boxes overlap, and texts not wholly on the figure."""
    texts = drawn_texts(fig)
    bad = [
        (a, b)
        for (a, ba), (b, bb) in itertools.combinations(texts, 2)
        if ba.x0 < bb.x1 - 0.5 and bb.x0 < ba.x1 - 0.5 and ba.y0 < bb.y1 - 0.5 and bb.y0 < ba.y1 - 0.5
    ]
    w, h = fig.bbox.width, fig.bbox.height
    bad += [("off the figure", a) for a, b in texts if b.x0 < -0.5 or b.y0 < -0.5 or b.x1 > w + 0.5 or b.y1 > h + 0.5]
    return bad


def figure(plan, layer="all", show="all"):
    with matplotlib.rc_context(viz._RC):
        fig = viz.figure(plan, layer, show)
        texts = drawn_texts(fig)
        problems = text_problems(fig)
    return fig, texts, problems


@pytest.mark.parametrize("show", viz.SHOWS)
def test_many_layers_no_text_overlaps(plan_dirs, show):
    """gpt on wse2, stream mode: 15 layers, one panel each, every view."""
    plan = load_plan(plan_dirs["gpt"])
    assert len(plan.layers) >= 12
    fig, texts, problems = figure(plan, "all", show)
    assert problems == []
    titles = [t for t, _ in texts if t.split(":")[0] in {lp.name for lp in plan.layers}]
    assert len(titles) == len(plan.layers)  # every panel has its title, none lost


@pytest.mark.parametrize(
    "name, layer", [("gpt", "L6"), ("gpt_pipeline", "all"), ("gpt_pipeline", "L6"), ("block", "L2")]
)
def test_floorplans_no_text_overlaps(plan_dirs, name, layer):
    plan = load_plan(plan_dirs[name])
    for show in ("all", "load"):
        _, _, problems = figure(plan, layer, show)
        assert problems == [], (name, layer, show)


def test_panels_are_cropped_to_their_layer_with_a_mesh_inset(plan_dirs):
    plan = load_plan(plan_dirs["gpt"])
    fig, _, _ = figure(plan, "all", "all")
    t = viz.target_of_plan(plan)
    mains = [ax for ax in fig.get_axes() if ax.get_xlabel() == "x (PE column)"]
    insets = [ax for ax in fig.get_axes() if ax.get_title() == "mesh"]
    assert len(mains) == len(insets) == len(plan.layers)
    for ax, inset, lp in zip(mains, insets, plan.layers):
        x0, y0, x1, y1 = viz.window(lp, t.width, t.height)
        assert ax.get_xlim() == (x0 - 0.5, x1 + 0.5) and ax.get_ylim() == (y1 + 0.5, y0 - 0.5)
        assert (x1 - x0 + 1) <= lp.rect.w + 2 * max(1, round(0.03 * lp.rect.w))  # the rectangle, not the mesh
        assert inset.get_xlim() == (-0.5, t.width - 0.5)  # the inset: the whole mesh


def test_window_is_the_rectangle_with_a_margin(plan_dirs):
    plan = load_plan(plan_dirs["gpt"])
    lp = plan.layers[6]
    x, y, w, h = lp.rect.to_attrs()
    x0, y0, x1, y1 = viz.window(lp, 750, 994)
    assert x0 == max(0, x - max(1, round(0.03 * w))) and x1 == x + w - 1 + max(1, round(0.03 * w))
    assert y0 == max(0, y - max(1, round(0.03 * h))) and y1 == y + h - 1 + max(1, round(0.03 * h))


@pytest.mark.parametrize(
    "show, entries",
    [
        (
            "all",
            ["layer rectangle", "busiest link", "inset: the rectangle on the whole mesh", "inset: the window drawn"],
        ),
        ("routes", ["layer rectangle", "router color 0: "]),
        ("regions", ["I/O port rows"]),
    ],
)
def test_legend_says_what_each_color_means(plan_dirs, show, entries):
    plan = load_plan(plan_dirs["gpt"])
    fig, texts, _ = figure(plan, "all", show)
    legend = [t.get_text() for lg in fig.findobj(matplotlib.legend.Legend) for t in lg.get_texts()]
    for entry in entries:
        assert any(e.startswith(entry) for e in legend), (entry, legend)
    if show == "routes":
        colors = {r.color for lp in plan.layers for r in lp.routes}
        assert sum(e.startswith("router color ") for e in legend) == len(colors)
    if show == "all":
        assert any("busiest link out of each PE" in t for t, _ in texts)  # the colorbar's label


def test_text_check_catches_an_overlap(plan_dirs):
    """The check itself: two texts put on top of each other are reported."""
    plan = load_plan(plan_dirs["mlp"])
    with matplotlib.rc_context(viz._RC):
        fig = viz.figure(plan, "all", "sram")
        fig.text(0.5, 0.5, "one overlapping text")
        fig.text(0.5, 0.5, "another overlapping text")
        fig.text(1.0, 0.5, "runs off the figure")
        problems = text_problems(fig)
    assert ("one overlapping text", "another overlapping text") in problems
    assert ("off the figure", "runs off the figure") in problems


@pytest.mark.parametrize("name, layer", [("mlp", "all"), ("block", "L2")])
def test_same_svg_bytes_whatever_the_hash_seed(plan_dirs, tmp_path, name, layer):
    """The constrained layout's float noise depends on Python's hash seed; render freezes the layout rounded,
    so two processes with different seeds write the same SVG (no "-0", no different clip-path ids)."""
    import os
    import subprocess
    import sys

    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"{seed}.svg"
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONWARNINGS="ignore")
        cmd = [sys.executable, "-m", "wafercc.cli", "viz", plan_dirs[name], "-o", out, "--layer", layer]
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
