"""A golden runs only model files inside its root; a damaged golden is exit 2 with a message naming the file and
the place; a model file that exits is an error, never a silent success."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from wafercc import golden
from wafercc.cli import main
from wafercc.golden import files as F

from tests.golden.util import write_tiny


def cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err + captured.out


def edit_json(root: Path, change) -> Path:
    path = root / "goldens" / "tiny" / "golden.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))
    return path


# -- golden.json points only inside its root --------------------------------------------------


@pytest.mark.parametrize("model", ["../evil.py", "/tmp/evil.py", "models/../../evil.py", "models/tiny.txt", "", 7])
def test_golden_model_outside_its_root_is_never_run(capsys, golden_copy, model):
    evil = golden_copy.parent / "evil.py"
    evil.write_text("open(__file__ + '.ran', 'w').close()\n")
    edit_json(golden_copy, lambda d: {**d, "model": model})
    code, err = cli(capsys, "golden", "check", "--dir", golden_copy / "goldens", "-q")
    assert code == 2 and ("golden.json: 'model'" in err or "golden.json: model must be a string" in err)
    assert not Path(str(evil) + ".ran").exists() and not Path("/tmp/evil.py.ran").exists()


def test_golden_model_through_a_symlink_out_of_the_root_is_refused(capsys, golden_copy):
    outside = golden_copy.parent / "elsewhere"
    outside.mkdir()
    (outside / "m.py").write_text("open(__file__ + '.ran', 'w').close()\n")
    (golden_copy / "models" / "link").symlink_to(outside)
    edit_json(golden_copy, lambda d: {**d, "model": "models/link/m.py"})
    code, err = cli(capsys, "golden", "check", "--dir", golden_copy / "goldens", "-q")
    assert code == 2 and "leads outside" in err and not (outside / "m.py.ran").exists()


# -- damaged goldens --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: [d], "has format 'a JSON list'"),
        (lambda d: None, "has format 'a JSON NoneType'"),
        (lambda d: {k: v for k, v in d.items() if k != "outputs"}, "outputs is missing"),
        (lambda d: {**d, "outputs": {"a": 1}}, "outputs must be a list, got an object"),
        (lambda d: {**d, "outputs": [1]}, "outputs[0] must be an object, got a int"),
        (lambda d: {**d, "outputs": [{**d["outputs"][0], "dtype": "complex-ish"}]}, "outputs[0].dtype must be a numpy"),
        (lambda d: {**d, "outputs": [{**d["outputs"][0], "shape": [-3]}]}, "outputs[0].shape must be a list of sizes"),
        (
            lambda d: {**d, "outputs": [{**d["outputs"][0], "dtype": "2.13.0+cpu"}]},  # found by tests/fuzz/golden.py
            "outputs[0].dtype must be a numpy",
        ),
        (
            lambda d: {**d, "outputs": [{**d["outputs"][0], "tolerance": {"rtol": "x"}}]},
            "outputs[0].tolerance.rtol must be a number",
        ),
        (lambda d: {**d, "settings": "wse2"}, "settings must be an object"),
        (
            lambda d: {**d, "inputs": {"arrays": [{"name": "arg0", "shape": [2, 16], "dtype": "object"}]}},
            "inputs.arrays[0].dtype must be a numpy dtype",
        ),
        (lambda d: {**d, "files": {"inputs.npz": 3}}, "files.inputs.npz must be a string"),
        (
            lambda d: {**d, "settings": {**d["settings"], "mode": "sideways"}},
            "settings.mode must be stream or pipeline",
        ),
        (lambda d: {**d, "settings": {**d["settings"], "target": "mesh:0x0"}}, "settings.target must be a target"),
    ],
)
def test_damaged_golden_json_exits_2_naming_the_place(capsys, golden_copy, change, message):
    edit_json(golden_copy, change)
    code, err = cli(
        capsys, "golden", "check", golden_copy / "models" / "tiny.py", "--dir", golden_copy / "goldens", "-q"
    )
    assert code == 2 and message in err and "golden.json" in err, err


def test_an_unknown_tolerance_field_is_ignored(capsys, golden_copy):
    """Found by tests/fuzz/golden.py: an extra key in a recorded tolerance was a TypeError."""
    edit_json(
        golden_copy,
        lambda d: {
            **d,
            "outputs": [{**d["outputs"][0], "tolerance": {**d["outputs"][0]["tolerance"], "__metadata__": 1}}],
        },
    )
    code, out = cli(capsys, "golden", "check", "--dir", golden_copy / "goldens", "-q")
    assert code == 0, out


def test_a_damaged_golden_can_be_re_recorded(capsys, golden_copy):
    (golden_copy / "goldens" / "tiny" / "golden.json").write_text("[]")
    code, out = cli(
        capsys,
        "golden",
        "record",
        golden_copy / "models" / "tiny.py",
        "--dir",
        golden_copy / "goldens",
        "--target",
        "mesh4",
        "-q",
    )
    assert code == 0, out
    assert cli(capsys, "golden", "check", "--dir", golden_copy / "goldens", "-q")[0] == 0


def test_deeply_nested_golden_json_exits_2(capsys, golden_copy):
    (golden_copy / "goldens" / "tiny" / "golden.json").write_text("[" * 100_000)
    code, err = cli(capsys, "golden", "check", "--dir", golden_copy / "goldens", "-q")
    assert code == 2 and "cannot read" in err


def _npz_with_sha(root: Path, name: str, blob: bytes) -> None:
    g = root / "goldens" / "tiny"
    (g / name).write_bytes(blob)
    edit_json(root, lambda d: {**d, "files": {**d["files"], name: F.sha256(blob)}})


@pytest.mark.parametrize(
    "what, blob, message",
    [
        ("truncated", lambda good: good[: len(good) // 2], "is not a valid .npz"),
        ("not a zip", lambda good: b"hello", "is not a valid .npz"),
        ("renamed member", lambda good: F.npz_bytes({"zzz": np.zeros((2, 4), np.float32)}), "holds zzz; golden.json"),
        ("wrong shape", lambda good: F.npz_bytes({"out0": np.zeros((3,), np.float32)}), "member out0 is float32[3]"),
        ("pickle", lambda good: _pickled_npz(), "holds Python objects"),
    ],
)
def test_npz_with_an_updated_sha_is_still_checked(capsys, golden_copy, what, blob, message):
    good = (golden_copy / "goldens" / "tiny" / "eager.npz").read_bytes()
    _npz_with_sha(golden_copy, "eager.npz", blob(good))
    code, err = cli(
        capsys, "golden", "check", golden_copy / "models" / "tiny.py", "--dir", golden_copy / "goldens", "-q"
    )
    assert code == 2 and message in err and "eager.npz" in err, err


def _pickled_npz() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        member = io.BytesIO()
        np.save(member, np.array([{"a": 1}] * 8, dtype=object), allow_pickle=True)
        z.writestr("out0.npy", member.getvalue())
    return buf.getvalue()


# -- model files that exit --------------------------------------------------------------------


EXITS = {
    "exit0": "import sys\nsys.exit(0)\n",
    "exit_none": "raise SystemExit\n",
    "exit_in_get_model": "import sys, torch\ndef get_model():\n    sys.exit(0)\nexample_inputs = (torch.ones(2),)\n",
    "exit_in_forward": (
        "import sys, torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        sys.exit(0)\n"
        "model = M()\nexample_inputs = (torch.ones(2),)\n"
    ),
}


@pytest.mark.parametrize("name", sorted(EXITS))
@pytest.mark.parametrize("command", ["compile", "verify", "check"])
def test_a_model_that_exits_is_an_error_never_a_success(capsys, tmp_path, name, command):
    model = tmp_path / f"{name}.py"
    model.write_text(EXITS[name])
    args = [command, model] + (["-o", tmp_path / "out", "-q"] if command == "compile" else [])
    code, err = cli(capsys, *args)
    assert code == 2 and "sys.exit(" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["exit0", "exit_in_forward"])
def test_golden_record_and_check_of_a_model_that_exits_fail(capsys, tmp_path, name):
    model = tmp_path / "models" / f"{name}.py"
    model.parent.mkdir()
    model.write_text(EXITS[name])
    code, out = cli(capsys, "golden", "record", model, "--dir", tmp_path / "goldens", "-q")
    assert code != 0 and "sys.exit(" in out
    code, out = cli(capsys, "golden", "check", model, "--dir", tmp_path / "goldens", "-q")
    assert code != 0


def test_keyboard_interrupt_while_loading_exits_130(capsys, tmp_path):
    model = tmp_path / "ctrl_c.py"
    model.write_text("raise KeyboardInterrupt\n")
    code, err = cli(capsys, "compile", model, "-q", "-o", tmp_path / "out")
    assert code == 130 and "interrupted" in err


def test_a_recorded_golden_still_checks(capsys, golden_copy):
    code, out = cli(capsys, "golden", "check", "--dir", golden_copy / "goldens", "-q")
    assert code == 0, out


def test_write_tiny_models_stay_inside(golden_copy):
    """The model path golden.json records is relative to the root and resolves inside it."""
    data = json.loads((golden_copy / "goldens" / "tiny" / "golden.json").read_text())
    assert F.model_path(golden_copy / "goldens" / "tiny", data["model"], golden_copy) == golden_copy / data["model"]
    assert golden.root_of(golden_copy / "goldens") == golden_copy.resolve()
    assert write_tiny  # the fixture's model file
