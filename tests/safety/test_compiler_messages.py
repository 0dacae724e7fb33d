"""Each user-facing message of the compiler's entry points, word for word: the model file and its capture, the
compile driver, the torch.compile backend's options, a plan without a target, the pictures, `wafercc run -o`.
Reached through the command line (exit 2, one line, no traceback) where a user can make the mistake there,
else through the public API. tests/test_error_coverage.py counts these as the tests of those raise sites."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from runtime.artifacts import PLAN_FILE
from tests.fuzz.planjson import seed as plan_json_seed
from wafercc.backend import wafercc_backend
from wafercc.backend.options import BackendOptions
from wafercc.cli import main
from wafercc.driver import EMIT_STAGES, compile
from wafercc.errors import CaptureError, UsageError
from wafercc.ir import WaferError
from wafercc.mapping import viz
from wafercc.numerics import compare_model


def run(capsys, *args) -> str:
    """`wafercc ARGS` in-process: its one error line (exit 2, no traceback)."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: "), err
    return err.strip()


# -- the model file -----------------------------------------------------------------------------

TINY_MODEL = "import torch\nmodel = torch.nn.Linear(4, 2)\n"


def test_model_file_that_exits_while_loading(capsys, tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import sys\nsys.exit(3)\n")
    assert run(capsys, "compile", path, "-o", tmp_path / "out") == (
        f"error: {path}:2: called sys.exit(3) while loading the model file: it must define the model, not exit"
    )


def test_example_inputs_function_that_exits(capsys, tmp_path):
    path = tmp_path / "m.py"
    path.write_text(TINY_MODEL + "def example_inputs():\n    raise SystemExit\n")
    err = run(capsys, "compile", path, "-o", tmp_path / "out")
    assert err.startswith(f"error: {path}:4: example_inputs() called sys.exit(): it must return ")
    assert err.endswith(", not exit")


def test_fx_capture_of_a_model_that_fails_on_its_inputs(capsys, tmp_path):
    """The failing line is in code torch.fx generated: no location rather than one inside wafercc."""
    path = tmp_path / "m.py"
    path.write_text(
        "import torch\n\n\nclass V(torch.nn.Module):\n    def forward(self, x):\n        return x.view(3, 7)\n\n\n"
        "model = V()\nexample_inputs = (torch.randn(4),)\n"
    )
    assert run(capsys, "compile", path, "--capture", "fx", "-o", tmp_path / "out") == (
        "error: cannot capture the model with make_fx (normalizing the fx graph to core ATen): RuntimeError: shape "
        "'[3, 7]' is invalid for input of size 4"
    )


class _CountingBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls.add_(1)
        return x * 2


def test_a_model_that_updates_a_buffer_in_forward():
    with pytest.raises(CaptureError) as e:
        compile(_CountingBuffer(), (torch.randn(3),), emit="graph")
    assert str(e.value) == (
        "the model updates buffer 'calls' in forward (batch norm in training mode?); wafercc compiles inference "
        "graphs: call model.eval()"
    )


def test_unknown_capture_method():
    with pytest.raises(CaptureError) as e:
        compile(nn.Linear(4, 2), (torch.randn(1, 4),), capture="jit", emit="graph")
    assert str(e.value) == "unknown capture method 'jit' (use 'export' or 'fx')"


def test_unknown_emit_stage():
    with pytest.raises(UsageError) as e:
        compile(nn.Linear(4, 2), (torch.randn(1, 4),), emit="bytecode")
    assert str(e.value) == f"unknown --emit stage 'bytecode' (choose from {', '.join(EMIT_STAGES)})"


def test_compare_model_with_inputs_and_a_seed():
    with pytest.raises(UsageError) as e:
        compare_model(nn.Linear(4, 2), (torch.randn(1, 4),), inputs=[np.zeros((1, 4), np.float32)], seed=0)
    assert str(e.value) == "give either inputs or a seed, not both"


# -- the torch.compile backend -----------------------------------------------------------------


def _backend_error(**kwargs) -> str:
    """The message the compiled function raises when called (the backend defers its errors to the call)."""
    gm = torch.fx.symbolic_trace(nn.Linear(4, 2))
    compiled = wafercc_backend(gm, [torch.randn(1, 4)], **kwargs)
    with pytest.raises(WaferError) as e:
        compiled(torch.randn(1, 4))
    return str(e.value)


def test_backend_torch_compile_mode():
    assert _backend_error(mode="max-autotune") == (
        "torch.compile mode 'max-autotune' means nothing to wafercc: give the wafer's mapping mode as "
        "options={'mode': 'stream' | 'pipeline'}"
    )


def test_backend_unknown_argument():
    assert _backend_error(fullgraph_please=True) == "unknown wafercc backend argument(s) fullgraph_please"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"check": "yes"}, "option 'check' takes True or False, not 'yes'"),
        ({"plan": 1}, "option 'plan' takes True, False or None, not 1"),
        (
            {"targt": "wse2"},
            "unknown wafercc backend option(s) 'targt' (the options are "
            + ", ".join(sorted(f.name for f in dataclasses.fields(BackendOptions)))
            + ")",
        ),
    ],
    ids=["check", "plan", "unknown"],
)
def test_backend_options(options, message):
    with pytest.raises(UsageError) as e:
        BackendOptions.parse(options)
    assert str(e.value) == message
    assert _backend_error(options=options) == message


# -- plans and pictures -------------------------------------------------------------------------


def test_run_of_a_planned_module_without_a_target(capsys, tmp_path):
    """A module whose plan names no target: the plan cannot be checked (or run) against a mesh."""
    from tests.golden.util import write_tiny
    from wafercc.frontend import load_model_file

    model, inputs = load_model_file(write_tiny(tmp_path))
    compile(model, inputs, name="tiny", target="mesh4", out_dir=tmp_path / "out")
    wir = tmp_path / "out" / "model.wir"
    text = wir.read_text()
    assert ', target = "mesh4"}' in text
    wir.write_text(text.replace(', target = "mesh4"}', "}", 1))
    np.savez(tmp_path / "inputs.npz", x=inputs[0].numpy())
    assert run(capsys, "run", tmp_path / "out", "--inputs", tmp_path / "inputs.npz") == (
        "error: module @tiny names no target: pass target=NAME to the pass, or compile with --target"
    )


def test_opt_place_of_a_pipeline_that_does_not_fit(capsys, tmp_path):
    """The tiny model tiled for a pipeline on the 4x4 mesh takes 3x4 + 1x4 PEs; a region widened to 2x4 no
    longer fits beside the first layer."""
    from tests.golden.util import write_tiny
    from wafercc.frontend import load_model_file

    model, inputs = load_model_file(write_tiny(tmp_path))
    compile(model, inputs, name="tiny", target="mesh4", mode="pipeline", emit="tiled", out_dir=tmp_path / "out")
    wir = tmp_path / "out" / "model.wir"
    text = wir.read_text()
    assert "size = [1, 4], region = [1, 4]" in text, "the tiling changed: update the edit"
    wir.write_text(text.replace("size = [1, 4], region = [1, 4]", "size = [1, 4], region = [2, 4]"))
    err = run(capsys, "opt", wir, "--passes", "place", "-o", tmp_path / "placed.wir")
    assert err.splitlines()[0] == (
        "error: pass 'place' failed: the pipeline floorplan runs off the 4x4 mesh at layer @L1_fc2: its 2x4 region "
        "does not fit beside the layers before it (rows of 4 PEs); use --mode stream or a larger target"
    )


@pytest.fixture
def plan_dir(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    (d / PLAN_FILE).write_bytes(plan_json_seed("mlp"))
    return d


def test_report_of_a_target_without_its_size(capsys, plan_dir):
    doc = json.loads((plan_dir / PLAN_FILE).read_text())
    del doc["target"]["width"]
    (plan_dir / PLAN_FILE).write_text(json.dumps(doc))
    assert run(capsys, "report", plan_dir) == (
        "error: target.width: is missing (plan.json's target must describe the mesh) [plan-format]"
    )


def test_viz_render_formats_and_views(plan_dir):
    doc = json.loads((plan_dir / PLAN_FILE).read_text())
    with pytest.raises(UsageError) as e:
        viz.render(doc, "jpg")
    assert str(e.value) == "cannot draw a '.jpg' file: use .png or .svg"
    with pytest.raises(UsageError) as e:
        viz.figure(doc, show="heat")
    assert str(e.value) == f"unknown view 'heat' (choose from {', '.join(viz.SHOWS)})"


# -- outputs ------------------------------------------------------------------------------------


def test_run_o_a_directory(capsys, tiny_compiled, tmp_path):
    d = tmp_path / "outputs"
    d.mkdir()
    inputs = tiny_compiled.parent / "inputs.npz"
    assert run(capsys, "run", tiny_compiled, "--inputs", inputs, "-o", d) == (
        f"error: -o '{d}' is a directory; give the name of the file to write"
    )
