"""The command line (in process, tests/cli_runner.py; stdin and torch.library models in a subprocess): exit
codes, outputs, and no partial files on failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.cli_runner import run_cli

ROOT = Path(__file__).resolve().parents[2]


def wafercc(*args, cwd=ROOT, input=None, own_process=False):
    if input is None and not own_process:
        return run_cli(*args, cwd=cwd)
    env = dict(os.environ, PYTHONWARNINGS="ignore")  # stdin, or a model that registers a torch library op
    return subprocess.run(
        [sys.executable, "-m", "wafercc.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        input=input,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def mlp_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "mlp"
    r = wafercc("compile", "examples/mlp.py", "-o", out)
    assert r.returncode == 0, r.stderr
    return out, r


def test_compile_writes_wir_store_and_manifest(mlp_out):
    out, r = mlp_out
    assert sorted(p.name for p in out.iterdir()) == [  # .wafercc: the marker that makes it ours to replace
        ".wafercc",
        "manifest.json",
        "model.wir",
        "plan.json",
        "report.txt",
        "weights.safetensors",
    ]
    assert "compiled examples/mlp.py" in r.stdout
    from wafercc.ir import parse_file
    from wafercc.ops import verify

    m = verify(parse_file(out / "model.wir"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["tensors"]) == set(m.weights)
    for name, entry in manifest["tensors"].items():
        assert len(entry["sha256"]) == 64 and entry["shape"] == list(m.weights[name].type.shape)


def test_compile_is_byte_for_byte_deterministic(mlp_out, tmp_path):
    out, _ = mlp_out
    r = wafercc("compile", "examples/mlp.py", "-o", tmp_path / "again", "-q")
    assert r.returncode == 0 and r.stdout == ""
    for f in ("model.wir", "weights.safetensors", "manifest.json", "plan.json", "report.txt"):
        assert (out / f).read_bytes() == (tmp_path / "again" / f).read_bytes(), f


def test_compile_emit_graph_reads_back_into_opt(tmp_path):
    r = wafercc("compile", "examples/cnn.py", "-o", tmp_path / "g", "--emit", "graph", "-q")
    assert r.returncode == 0, r.stderr
    r = wafercc("opt", tmp_path / "g" / "model.wir", "--passes", "canonicalize,cse,dce", "-o", tmp_path / "o.wir")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o.wir").read_text().startswith("module @cnn")


# An op wafercc can neither convert nor decompose (a library op with only a CPU kernel: nothing to trace). Ops
# of torch's own come and go from that list as converters and decompositions are added.
UNSUPPORTED_MODEL = (
    "import torch\n"
    "class M(torch.nn.Module):\n"
    "    def forward(self, x):\n"
    "        return torch.ops.wafercc_cli_test.opaque(x)\n"
    "lib = torch.library.Library('wafercc_cli_test', 'DEF')\n"
    "lib.define('opaque(Tensor x) -> Tensor')\n"
    "lib.impl('opaque', lambda x: x.clone(), 'CPU')\n"
    "lib.impl('opaque', lambda x: torch.empty_like(x), 'Meta')\n"
    "model = M()\nexample_inputs = (torch.randn(1, 2, 4, 4),)\n"
)


def test_unsupported_model_exits_2_and_writes_nothing(tmp_path):
    model = tmp_path / "bad.py"
    model.write_text(UNSUPPORTED_MODEL)
    out = tmp_path / "out"
    r = wafercc("compile", model, "-o", out)
    assert r.returncode == 2
    assert "wafercc_cli_test::opaque" in r.stderr and "bad.py:4" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [model]


def test_bad_model_file_exits_2(tmp_path):
    r = wafercc("compile", tmp_path / "missing.py")
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_check_reports_coverage():
    r = wafercc("check", "examples/gpt.py")
    assert r.returncode == 0, r.stderr
    assert "result: every op is supported" in r.stdout
    assert "aten.embedding" in r.stdout and "parameters and buffers" in r.stdout


def test_check_unsupported_exits_2(tmp_path):
    model = tmp_path / "bad.py"
    model.write_text(UNSUPPORTED_MODEL)
    r = wafercc("check", model, own_process=True)  # its torch.library op can be defined once per process
    assert r.returncode == 2
    assert "wafercc_cli_test::opaque  at" in r.stdout and "bad.py:4" in r.stdout


WIR = """module @m {
  func @forward(%x: tensor<4xf32>) -> (tensor<4xf32>) {
    %a = neg %x : tensor<4xf32>
    %b = neg %x : tensor<4xf32>
    %c = add %a, %b : tensor<4xf32>
    %d = clone %c : tensor<4xf32>
    %dead = exp %x : tensor<4xf32>
    return %d
  }
}
"""


def test_opt_runs_passes_and_prints(tmp_path):
    src = tmp_path / "in.wir"
    src.write_text(WIR)
    r = wafercc("opt", src, "--passes", "canonicalize,cse,dce")
    assert r.returncode == 0, r.stderr
    assert "clone" not in r.stdout and "exp" not in r.stdout and r.stdout.count("neg") == 1


def test_opt_print_after_all_and_timing(tmp_path):
    src = tmp_path / "in.wir"
    src.write_text(WIR)
    r = wafercc("opt", src, "--passes", "cse,dce", "--print-ir-after-all", "--time-passes")
    assert r.returncode == 0, r.stderr
    assert "IR Dump After cse" in r.stderr and "IR Dump After dce" in r.stderr
    assert "cse" in r.stderr.split("IR Dump After dce")[1]  # the timing table follows the dumps


def test_opt_parse_error_exits_2(tmp_path):
    src = tmp_path / "bad.wir"
    src.write_text(WIR.replace("tensor<4xf32>\n    %b", "tensor<4xf32\n    %b"))
    r = wafercc("opt", src, "-o", tmp_path / "out.wir")
    assert r.returncode == 2
    assert "bad.wir:3:" in r.stderr and "^" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out.wir").exists()


def test_opt_verify_error_exits_2(tmp_path):
    src = tmp_path / "bad.wir"
    src.write_text(WIR.replace("%c = add %a, %b : tensor<4xf32>", "%c = add %a, %b : tensor<5xf32>"))
    r = wafercc("opt", src)
    assert r.returncode == 2 and "[result-type]" in r.stderr and "'add' (%c)" in r.stderr


def test_opt_unknown_pass_exits_2(tmp_path):
    src = tmp_path / "in.wir"
    src.write_text(WIR)
    r = wafercc("opt", src, "--passes", "canonicalise")
    assert r.returncode == 2 and "canonicalise" in r.stderr and "canonicalize" in r.stderr


def test_opt_reads_stdin():
    r = wafercc("opt", "-", "--passes", "dce", input=WIR)
    assert r.returncode == 0 and "exp" not in r.stdout


def test_no_command_prints_help_and_exits_2():
    r = wafercc()
    assert r.returncode == 2 and "compile" in r.stderr


def test_bad_option_exits_2():
    r = wafercc("compile", "examples/mlp.py", "--capture", "jit")
    assert r.returncode == 2 and "invalid choice" in r.stderr
