"""The pytest plugin (wafer_golden fixture, wafer marker, --wafer-* options) through pytester: the first run
records, the next passes, a drift fails with a one-screen message, re-recording is explicit."""

from __future__ import annotations

import subprocess
import sys

import pytest

TEST_FILE = """
import pytest
import torch
from torch import nn


def tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)).eval(), (torch.randn(2, 8),)


def test_tiny(wafer_golden):
    model, inputs = tiny(SEED)
    wafer_golden.check(model, inputs, name="tiny")


@pytest.mark.wafer(target="wse3")
def test_tiny_wse3(wafer_golden):
    model, inputs = tiny(SEED)
    wafer_golden.check(model, inputs, name="tiny")
"""

OFF_RELU = """
import pytest


@pytest.fixture(autouse=True)
def off_relu(monkeypatch):
    import runtime.kernels as K

    relu = K.KERNELS["relu"]
    monkeypatch.setitem(K.KERNELS, "relu", lambda op, x: relu(op, x) * x.dtype.type(1.001))
"""


@pytest.fixture(scope="module")
def torch_warm(recorded_tiny):
    """Everything a golden imports, imported before pytester snapshots sys.modules: pytester drops the modules
    an in-process run imported, and torch's C extensions do not survive being imported twice (segfault)."""
    from wafercc import golden

    r = golden.check_file(recorded_tiny / "models" / "tiny.py", recorded_tiny / "goldens", run_bisect=False)
    assert r.status is golden.Status.PASS
    import torch

    from wafercc.golden.run import bisect

    model, inputs = torch.nn.Linear(2, 2), (torch.randn(1, 2),)
    found, why = bisect(golden.Subject("warm", model, inputs, "warm"), [inputs[0].numpy()], golden.Options())
    assert found is not None, why


@pytest.fixture
def project(torch_warm, pytester):
    pytester.makepyfile(test_model=TEST_FILE.replace("SEED", "0"))
    return pytester


def test_first_run_records_then_checks(project):
    r = project.runpytest("-q")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(
        ["*wafercc: recorded 2 golden(s) from eager PyTorch*", "*goldens/tiny", "*goldens/tiny-wse3"]
    )
    goldens = project.path / "goldens"
    assert sorted(p.name for p in goldens.iterdir()) == ["tiny", "tiny-wse3"]
    before = {p: p.read_bytes() for p in goldens.rglob("*") if p.is_file()}
    r = project.runpytest("-q")
    r.assert_outcomes(passed=2)
    assert "recorded" not in r.stdout.str()
    assert {p: p.read_bytes() for p in goldens.rglob("*") if p.is_file()} == before


def test_drift_fails_with_the_first_diverging_op(project):
    project.runpytest("-q").assert_outcomes(passed=2)
    project.makeconftest(OFF_RELU)
    r = project.runpytest("-q", "-k", "test_tiny and not wse3")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(
        [
            "drifted: test_model.py::test_tiny on wse2 (stream, fp32)",
            "*the runtime drifted from the eager golden (out0 by max abs *",
            "*out0 * [2, 2] * f32 * FAIL*",
            "*first diverging op*",
            "*%relu = relu*",
            "*compared with FX node 'relu' (aten.relu)*",
        ]
    )
    assert "Traceback" not in r.stdout.str()


def test_update_goldens_re_records_deliberately(project):
    project.runpytest("-q").assert_outcomes(passed=2)
    project.makepyfile(test_model=TEST_FILE.replace("SEED", "1"))  # the model changed on purpose
    r = project.runpytest("-q", "-k", "test_tiny and not wse3")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["eager changed: *", "*matches today's eager PyTorch: re-record*"])
    r = project.runpytest("-q", "--wafer-update-goldens")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["*recorded 2 golden(s)*"])
    project.runpytest("-q").assert_outcomes(passed=2)


def test_no_record_fails_a_missing_golden_and_golden_dir_moves_them(project):
    r = project.runpytest("-q", "--wafer-no-record")
    r.assert_outcomes(failed=2)
    r.stdout.fnmatch_lines(["*no golden 'tiny' in * (--wafer-no-record)*"])
    assert not (project.path / "goldens").exists()
    project.runpytest("-q", "--wafer-golden-dir", "ci/goldens").assert_outcomes(passed=2)
    assert (project.path / "ci" / "goldens" / "tiny-wse3" / "golden.json").is_file()


def test_plugin_does_not_import_torch_at_startup():
    code = "import sys, wafercc.pytest_plugin; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
