"""`wafercc golden record|check` through subprocess: what each prints and the exit codes CI relies on
(0 pass, 1 drift or failure, 2 usage error, 3 no golden)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.golden.util import RELU_LINE, write_tiny
from tests.cli_runner import run_cli

ROOT = Path(__file__).resolve().parents[2]
# Runs the CLI with the runtime's relu slightly off: a compiler change the check must catch.
OFF_RELU = (
    "import sys, runtime.kernels as K; relu = K.KERNELS['relu']; "
    "K.KERNELS['relu'] = lambda op, x: relu(op, x) * x.dtype.type(1.001); "
    "from wafercc.cli import main; sys.exit(main(sys.argv[1:]))"
)


def wafercc(*args, cwd, off_relu: bool = False):
    if not off_relu:
        return run_cli(*args, cwd=cwd)
    env = dict(os.environ, PYTHONWARNINGS="ignore")  # a runtime kernel patched in a process of its own
    return subprocess.run(
        [sys.executable, "-c", OFF_RELU, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_record_then_check_passes(tmp_path):
    write_tiny(tmp_path)
    r = wafercc("golden", "record", "models", "--dir", "goldens", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "[1/1] recording models/tiny.py ... recorded" in r.stderr
    assert (tmp_path / "goldens" / "tiny" / "golden.json").is_file()
    r = wafercc("golden", "check", "--dir", "goldens", cwd=tmp_path)  # no paths: every golden in --dir
    assert r.returncode == 0, r.stdout + r.stderr
    assert "models/tiny.py  pass" in r.stdout and "golden check: 1 pass (exit 0)" in r.stdout


def test_drift_exits_1_and_names_the_op(tiny_root):
    r = wafercc("golden", "check", "models/tiny.py", cwd=tiny_root, off_relu=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "drifted: models/tiny.py on wse2 (stream, fp32)" in r.stdout
    assert f"first diverging op: relu at models/tiny.py:{RELU_LINE}" in r.stdout  # in the summary table
    assert not (tiny_root / "goldens" / ".tiny").exists()


def test_plan_change_passes_and_eager_change_fails_until_updated(tiny_root):
    r = wafercc("golden", "check", "models/tiny.py", "--target", "wse3", cwd=tiny_root)
    assert r.returncode == 0 and "plan changed: models/tiny.py on wse3" in r.stdout, r.stdout + r.stderr
    write_tiny(tiny_root, seed=1)
    r = wafercc("golden", "check", "models", "--update", cwd=tiny_root)
    assert r.returncode == 0 and "re-recorded (was eager changed)" in r.stdout, r.stdout + r.stderr


def test_missing_golden_exits_3_or_2_when_strict(tmp_path):
    write_tiny(tmp_path)
    (tmp_path / "goldens").mkdir()
    r = wafercc("golden", "check", "models", cwd=tmp_path)
    assert r.returncode == 3 and "no golden: models/tiny.py" in r.stdout, r.stdout + r.stderr
    r = wafercc("golden", "check", "models", "--strict", cwd=tmp_path)
    assert r.returncode == 2 and "--strict" in r.stdout
    assert list((tmp_path / "goldens").iterdir()) == []  # a check never records


def test_usage_errors_exit_2(tmp_path):
    r = wafercc("golden", "check", "--dir", "nowhere", cwd=tmp_path)
    assert r.returncode == 2 and "--dir 'nowhere' is not a directory" in r.stderr
    r = wafercc("golden", "record", str(ROOT / "examples" / "gpt_1t.py"), "--dir", "g", cwd=tmp_path)
    assert r.returncode == 2 and "meta device" in r.stderr and not (tmp_path / "g").exists()
    r = wafercc("golden", "record", "missing.py", cwd=tmp_path)
    assert r.returncode == 2 and "neither a model file" in r.stderr
    r = wafercc("golden", cwd=tmp_path)
    assert r.returncode == 2 and "record" in r.stderr
