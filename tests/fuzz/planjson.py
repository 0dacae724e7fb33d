"""Mutants of real compiled plan.json files, and the property each must keep.

The seeds are the plan.json files of two compiled examples (an MLP streamed on mesh4, a CNN pipelined on
mesh:16x16), compiled once. A mutant changes one place of the document (structure-aware: a value replaced by
an extreme one, a key dropped or added, a list item dropped or duplicated, a subtree swapped for another) or
its bytes (cut, spliced, overwritten).

The property (``check``): what ``wafercc report`` and ``wafercc viz`` read — the plan loaded and checked, the
table, every layer's detail, and (for one mutant in ``DRAW_EVERY``) the picture — either comes out, or is
refused with a WaferError naming plan.json or the layer and field; never another exception.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from runtime.artifacts import PLAN_FILE
from tests.fuzz.mutate import bytes_mutant, dumps, json_mutant
from wafercc.ir import WaferError

SEEDS = {"mlp": ("examples/mlp.py", "mesh4", "stream"), "cnn": ("examples/cnn.py", "mesh:16x16", "pipeline")}
DRAW_EVERY = 16  # drawing costs ~0.3 s: every 16th mutant is also drawn, the rest stop at the tables


@functools.cache
def seed(name: str) -> bytes:
    """The plan.json of one example, compiled once per process."""
    from wafercc.frontend import load_model_file
    from wafercc.driver import compile as compile_model

    path, target, mode = SEEDS[name]
    repo = Path(__file__).resolve().parents[2]
    model, inputs = load_model_file(str(repo / path))
    out = Path(tempfile.mkdtemp(prefix=f"wafercc-fuzz-plan-{name}-")) / "out"
    compile_model(model, inputs, target=target, mode=mode, out_dir=out)
    return (out / PLAN_FILE).read_bytes()


@st.composite
def mutants(draw) -> tuple[str, bytes, bool]:
    """(what was mutated, the plan.json bytes, whether to draw it too)."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = seed(name)
    kind = draw(st.sampled_from(["json", "json", "json", "json", "bytes"]))
    if kind == "json":
        blob = dumps(draw(json_mutant(json.loads(data))))
    else:
        blob = draw(bytes_mutant(data))
    return f"{name}:{kind}", blob, draw(st.integers(0, DRAW_EVERY - 1)) == 0


@functools.cache
def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="wafercc-fuzz-plan-"))


def check(kind: str, blob: bytes, draw_it: bool = False) -> str:
    """ "rejected" (a WaferError naming the file, or the layer and field) or "accepted" (shown in full)."""
    from wafercc.cli.report import layer_detail, load_plan
    from wafercc.mapping.report import format_report
    from wafercc.mapping.viz import render

    d = _workdir()
    (d / PLAN_FILE).write_bytes(blob)
    try:
        plan = load_plan(d)
        assert format_report(plan)
        for layer in plan.layers:
            assert layer_detail(plan, layer)
        if draw_it:
            assert render(plan, "svg", layer="all", show="all")
    except WaferError as e:
        text = str(e)
        assert PLAN_FILE in text or str(d) in text or "layer @" in text or ": " in text, text
        assert "Traceback" not in text and "Error:" not in text.split(": ", 1)[0], text
        return "rejected"
    return "accepted"
