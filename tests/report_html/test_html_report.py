"""`wafercc report DIR --html FILE`: one self-contained page of the plan, from real compiled examples (and a
hand-made plan with training phases and a scaling table); every refusal is one message, exit 2, no file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from wafercc.cli.report import load_plan_and_json
from wafercc.mapping.html import MARK, html_report, picture_groups


def wafercc(capsys, *args) -> tuple[int, str, str]:
    """``wafercc ARGS`` in this process: (exit code, stdout, stderr); never a traceback."""
    from wafercc.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


class Page(HTMLParser):
    """The page's tags (with attributes), the layer table's cells and the text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[list[dict]] = []  # tbody rows of the layer table: [{"v": data-v, "text": ...}]
        self.heads: list[dict] = []
        self.texts: list[str] = []
        self._where: list[str] = []
        self._table = None
        self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self._table = a.get("id")
        if self._table == "layer-table":
            if tag == "tbody" or tag == "thead" or tag == "tfoot":
                self._where.append(tag)
            if tag == "tr" and self._where and self._where[-1] == "tbody":
                self.rows.append([])
            if tag == "td" and self._where and self._where[-1] == "tbody":
                self._cell = {"v": a.get("data-v"), "text": ""}
                self.rows[-1].append(self._cell)
            if tag == "th":
                self._cell = {"k": a.get("data-k"), "text": ""}
                self.heads.append(self._cell)

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        self.texts.append(data)
        if self._cell is not None:
            self._cell["text"] += data


def page_of(path: Path) -> tuple[str, Page]:
    plan, raw = load_plan_and_json(path)
    text = html_report(plan, raw)
    return text, Page(text)


# -- what the page holds ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "gpt", "gpt_pipeline", "block"])
def test_page_is_self_contained(plan_dirs, name):
    """Nothing is fetched: no external script, style sheet, font, image or link; scripts are inline."""
    text, page = page_of(plan_dirs[name])
    assert text.startswith("<!DOCTYPE html>" + MARK + "\n")
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "object", "embed", "img"), tag
        if tag == "script":
            assert "src" not in attrs
        for key in ("src", "href", "xlink:href", "action", "srcset"):
            v = attrs.get(key)
            assert v is None or v.startswith("#") or v.startswith("data:image/png;base64,"), (tag, key, v)
    without_ns = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(
        r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\((?!#)", without_ns, re.I
    )  # url(#id): on the page


def test_totals_and_every_layer_in_the_table(plan_dirs):
    plan, raw = load_plan_and_json(plan_dirs["gpt"])
    text, page = page_of(plan_dirs["gpt"])
    assert [r[0]["text"] for r in page.rows] == [lp.name for lp in plan.layers]
    tot = plan.totals
    for shown in (f"{tot.cycles:,.0f}", f"{tot.utilization:.1%}", f"{tot.flops:,}", f"{tot.layers:,}"):
        assert f"<dd>{shown}</dd>" in text, shown
    heads = [h["text"] for h in page.heads]
    assert heads[:3] == ["layer", "kind", "rect WxH@x,y"] and heads[-1] == "picture"
    total_col = heads.index("total")
    assert [float(r[total_col]["v"]) for r in page.rows] == pytest.approx([lp.cost.total for lp in plan.layers])
    bound_col = heads.index("bound")
    assert [r[bound_col]["text"] for r in page.rows] == [lp.cost.bound for lp in plan.layers]


def test_numeric_columns_sort_by_numbers(plan_dirs):
    """Every column the script sorts as numbers has a number in every row (else the sort would be wrong)."""
    _, page = page_of(plan_dirs["gpt"])
    for i, head in enumerate(page.heads):
        assert head["k"] in ("n", "s"), head
        if head["k"] == "n":
            for row in page.rows:
                float(row[i]["v"])  # raises if not a number


SORT_DRIVER = r"""
// A minimal DOM for the page's sort script: the layer table's header cells and body rows.
const fs = require("fs");
const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
function el(attrs) {
  const a = Object.assign({}, attrs), handlers = {};
  return { getAttribute: k => (k in a ? a[k] : null), setAttribute: (k, v) => { a[k] = String(v); },
           removeAttribute: k => { delete a[k]; }, addEventListener: (e, f) => { handlers[e] = f; },
           click: () => handlers.click() };
}
const heads = spec.heads.map(k => el({"data-k": k}));
const rows = spec.rows.map(r => ({ name: r[0], cells: r.map(v => el({"data-v": v})) }));
const body = { rows: rows.slice(), appendChild(r) { this.rows.splice(this.rows.indexOf(r), 1); this.rows.push(r); } };
const table = { tHead: { rows: [{ cells: heads }] }, tBodies: [body] };
global.document = { getElementById: id => (id === "layer-table" ? table : null) };
eval(spec.script);
const out = [];
for (const [col, times] of spec.clicks) {
  for (let i = 0; i < times; i++) heads[col].click();
  out.push(body.rows.map(r => r.name));
}
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node (to run the page's sort script) is not installed")
def test_clicking_a_header_sorts_the_table(plan_dirs, tmp_path):
    """The page's own script, run by node on the table's cells: a click sorts ascending, a second click
    descending; numeric columns by value, text columns by text."""
    plan, _ = load_plan_and_json(plan_dirs["gpt"])
    text, page = page_of(plan_dirs["gpt"])
    script = re.search(r"<script>(.*?)</script>", text, re.S).group(1)
    heads = [h["text"] for h in page.heads]
    total, kind = heads.index("total"), heads.index("kind")
    spec = {
        "heads": [h["k"] for h in page.heads],
        "rows": [[r[0]["text"]] + [c["v"] for c in r[1:]] for r in page.rows],
        "script": script,
        "clicks": [[total, 1], [total, 1], [kind, 1]],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "sort.js").write_text(SORT_DRIVER)
    r = subprocess.run(["node", tmp_path / "sort.js", tmp_path / "spec.json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    up, down, by_kind = json.loads(r.stdout)
    by_total = sorted(plan.layers, key=lambda lp: lp.cost.total)
    assert [plan.layer(n).cost.total for n in up] == [lp.cost.total for lp in by_total]
    assert [plan.layer(n).cost.total for n in down] == [lp.cost.total for lp in reversed(by_total)]
    assert [plan.layer(n).kind for n in by_kind] == sorted(lp.kind for lp in plan.layers)


def test_one_picture_per_distinct_structure_each_layer_refers_to_it(plan_dirs):
    plan, raw = load_plan_and_json(plan_dirs["gpt"])
    text, page = page_of(plan_dirs["gpt"])
    figures = re.findall(r'<figure id="(p\d+)">', text)
    structures = {lp.structure for lp in plan.layers}
    # gpt's two blocks share their structures, but a block's first layer re-lays out a different predecessor's
    # output (the embedding's, then the last block's): that one layer per block draws its own picture
    assert None not in structures and len(structures) <= len(figures) <= len(structures) + 1 < len(plan.layers)
    assert len(re.findall(r"<svg ", text)) == len(figures)
    pic_col = [h["text"] for h in page.heads].index("picture")
    seen: dict[tuple, str] = {}
    for lp, row in zip(plan.layers, page.rows):
        target = "p" + row[pic_col]["v"]
        assert target in figures
        assert seen.setdefault((lp.structure, lp.routes), target) == target  # the same drawing, one picture
        caption = re.search(rf'<figure id="{target}"><figcaption>(.*?)</figcaption>', text).group(1)
        assert f'href="#{lp.name}"' in caption and (lp.structure in caption)


def test_a_picture_shows_rectangle_routes_load_sram_and_the_critical_term(plan_dirs):
    plan, _ = load_plan_and_json(plan_dirs["mlp"])
    text, _ = page_of(plan_dirs["mlp"])
    svgs = re.findall(r"<svg .*?</svg>", text, re.S)
    for lp, svg in zip([g[0] for g in picture_groups(plan)], svgs):
        from wafercc.mapping.viz import router_rgb, window

        x0, y0, x1, y1 = window(lp, 8, 8)
        assert f"x {x0}-{x1}, y {y0}-{y1}" in svg  # the window drawn: the rectangle, not the mesh
        for color in {r.color for r in lp.routes}:
            assert f'stroke="{router_rgb(color)}"' in svg and f"color {color}: " in svg
        assert "data:image/png;base64," in svg  # the link-load heat map
        assert f"SRAM per PE: {lp.memory.total:,} of {lp.memory.budget:,} B" in svg
        assert f"{lp.cost.bound}-bound" in svg
        assert re.search(rf'font-weight="bold">{lp.cost.bound}</text>', svg)  # the critical term, marked
        assert "the 8x8 mesh" in svg  # the inset


def test_a_small_rectangle_is_drawn_at_its_own_scale(plan_dirs):
    """gpt on wse2: every rectangle is a small part of the 750x994 mesh, and the picture shows that part."""
    from wafercc.mapping.viz import window

    plan, _ = load_plan_and_json(plan_dirs["gpt"])
    text, _ = page_of(plan_dirs["gpt"])
    for lp in plan.layers:
        x0, y0, x1, y1 = window(lp, 750, 994)
        assert (x1 - x0 + 1) * (y1 - y0 + 1) < 0.1 * 750 * 994
        assert x0 <= lp.rect.x and x1 >= lp.rect.x + lp.rect.w - 1 and y1 >= lp.rect.y + lp.rect.h - 1
    assert "(750x994 PEs of 750x994)" not in text


def test_training_phases_of_a_real_training_plan(training_dir):
    plan, raw = load_plan_and_json(training_dir)
    text, page = page_of(training_dir)
    section = text[text.index('<h2 id="phases">') : text.index('<h2 id="layers">')]
    for phase in ("forward", "backward"):
        count = sum(1 for layer in raw["layers"] if layer.get("phase") == phase)
        assert count > 0 and f'<td class="l">{phase}</td><td>{count:,}</td>' in section
    assert '<td class="l">optimizer</td><td>in MemoryX</td>' in section  # the optimizer runs on no layer
    heads = [h["text"] for h in page.heads]
    assert [r[heads.index("phase")]["text"] for r in page.rows] == [la["phase"] for la in raw["layers"]]
    assert "gradient bytes streamed" in text and "samples per second" in text


def test_hand_made_phases_and_scaling_table(hand_made_dir):
    plan, raw = load_plan_and_json(hand_made_dir)
    text, page = page_of(hand_made_dir)
    n = len(plan.layers)
    section = text[text.index('<h2 id="phases">') : text.index('<h2 id="layers">')]
    for phase, count in (("forward", n // 2), ("backward", n - 2 - n // 2), ("optimizer", 2)):
        assert f'<td class="l">{phase}</td><td>{count:,}</td>' in section
    scaling = text[text.index('<h2 id="scaling">') : text.index('<h2 id="layers">')]
    assert scaling.index("<th>systems</th>") < scaling.index("<th>efficiency</th>")
    for row in raw["scaling"]:
        assert f"<td>{row['systems']:,}</td>" in scaling and f"{row['efficiency']:.1%}" in scaling
    assert "gradient bytes streamed" in text and "120.6 KB (123,456 B)" in text


def test_no_phase_no_scaling_sections_for_an_inference_plan(plan_dirs):
    text, page = page_of(plan_dirs["mlp"])
    assert 'id="phases"' not in text and 'id="scaling"' not in text
    assert "phase" not in [h["text"] for h in page.heads]


# -- the command ------------------------------------------------------------------------------------


def test_command_writes_the_page_deterministically(capsys, plan_dirs, tmp_path):
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    for out in (a, b, a):  # the second write to a.html replaces a page wafercc wrote
        code, stdout, err = wafercc(capsys, "report", plan_dirs["gpt_pipeline"], "--html", out)
        assert code == 0, err
        assert stdout.startswith(f"wrote {out} (") and stdout.endswith(" layers)\n")
    assert a.read_bytes() == b.read_bytes()
    plan, raw = load_plan_and_json(plan_dirs["gpt_pipeline"])
    assert a.read_text() == html_report(plan, raw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html"]  # no temp files left


def test_page_inside_the_output_directory_is_wafercc_s(capsys, plan_dirs, tmp_path):
    """Written into the compiled directory, the page joins its marker's files: a recompile may replace it."""
    out = tmp_path / "mlp"
    shutil.copytree(plan_dirs["mlp"], out)
    assert wafercc(capsys, "report", out, "--html", out / "report.html")[0] == 0
    assert "report.html" in json.loads((out / ".wafercc").read_text())["files"]


def _refused(capsys, args, message, out: Path | None):
    code, stdout, err = wafercc(capsys, *args)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    if out is not None:
        assert not out.exists() or out.read_bytes() == b"not ours\n"
        siblings = [p.name for p in out.parent.iterdir()] if out.parent.is_dir() else []
        assert not [s for s in siblings if "wafercc-tmp" in s]
    return err


def test_missing_directory_exits_2(capsys, tmp_path):
    out = tmp_path / "r.html"
    err = _refused(capsys, ["report", tmp_path / "nowhere", "--html", out], "is not a directory", out)
    assert err.strip() == (
        f"error: {tmp_path / 'nowhere'} is not a directory: give an output directory of `wafercc compile`"
    )


@pytest.mark.parametrize("command", [("report",), ("report", "--json"), ("viz", "-o", "m.png")])
def test_every_plan_command_names_a_missing_directory(capsys, tmp_path, command):
    args = [tmp_path / a if a.endswith(".png") else a for a in command[1:]]
    code, _, err = wafercc(capsys, command[0], tmp_path / "nowhere", *args)
    assert code == 2 and "nowhere is not a directory: give an output directory of `wafercc compile`" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "has no plan.json: compile with the default --emit routed"),
        ("{not json", "is not a plan"),
        ('{"format": "something-else"}', "is not a plan (format 'something-else'"),
        ('{"format": "wafercc-plan/1", "layers": [{"name": "L0"}]}', "[plan-format]"),
    ],
)
def test_not_a_plan_exits_2(capsys, tmp_path, content, message):
    plan_dir = tmp_path / "d"
    plan_dir.mkdir()
    if content is not None:
        (plan_dir / "plan.json").write_text(content)
    out = tmp_path / "r.html"
    _refused(capsys, ["report", plan_dir, "--html", out], message, out)


def test_unwritable_output_exits_2(capsys, plan_dirs, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "r.html"  # a path under a file
    _refused(capsys, ["report", plan_dirs["mlp"], "--html", out], "r.html", None)
    assert blocker.read_text() == "x"
    folder = tmp_path / "pages.html"
    folder.mkdir()
    _refused(capsys, ["report", plan_dirs["mlp"], "--html", folder], "is a directory", None)
    assert list(folder.iterdir()) == []


def test_unwritable_directory_exits_2_without_a_partial_file(capsys, plan_dirs, tmp_path):
    """A directory the process may not write into (not testable as root: root writes anywhere)."""
    import os

    if os.geteuid() == 0:
        pytest.skip("running as root: permissions do not stop root from writing")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        _refused(capsys, ["report", plan_dirs["mlp"], "--html", locked / "r.html"], "r.html", None)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_a_file_wafercc_did_not_write_is_not_replaced(capsys, plan_dirs, tmp_path):
    out = tmp_path / "notes.html"
    out.write_text("not ours\n")
    _refused(capsys, ["report", plan_dirs["mlp"], "--html", out], "exists and is not an HTML report that wafercc", out)
    assert out.read_text() == "not ours\n"
    code, _, err = wafercc(capsys, "report", plan_dirs["mlp"], "--html", out, "--force")
    assert code == 0, err
    assert out.read_text().startswith("<!DOCTYPE html>" + MARK)


@pytest.mark.parametrize(
    "extra, name, message",
    [
        ((), "r.txt", "the --html file name must end in .html"),
        (("--layer", "L0"), "r.html", "--html writes the whole plan: it does not take --layer"),
        (("--json",), "r.html", "it does not take --json"),
    ],
)
def test_bad_arguments_exit_2(capsys, plan_dirs, tmp_path, extra, name, message):
    out = tmp_path / name
    _refused(capsys, ["report", plan_dirs["mlp"], "--html", out, *extra], message, out)


def test_size_grows_with_distinct_structures_not_layers(plan_dirs):
    """A picture per distinct structure, a table row per layer: a 15-layer plan stays well under 1 MB (the
    GPT-3 175B plan's 579 layers and 11 structures: docs/plan.md gives its size)."""
    for name in ("gpt", "block", "gpt_pipeline"):
        plan, raw = load_plan_and_json(plan_dirs[name])
        size = len(html_report(plan, raw).encode())
        pictures = len(picture_groups(plan))
        assert size < 20_000 + 60_000 * pictures + 2_000 * len(plan.layers), (name, size, pictures)
