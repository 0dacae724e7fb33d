"""The golden library: record, check, and each verdict a check can reach, on a tiny model file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.golden.util import RELU_LINE, RELU_SOURCE, write_tiny
from wafercc import golden
from wafercc.errors import UsageError
from wafercc.golden import files as F

S = golden.Status


def check(root: Path, **kw) -> golden.GoldenResult:
    return golden.check_file(root / "models" / "tiny.py", root / "goldens", **kw)


def test_record_writes_open_formats_from_eager(recorded_tiny):
    g = recorded_tiny / "goldens" / "tiny"
    assert sorted(p.name for p in g.iterdir()) == [  # .wafercc: the marker that makes it a golden to replace
        ".wafercc",
        "eager.npz",
        "golden.json",
        "inputs.npz",
        "runtime.npz",
    ]
    data = json.loads((g / "golden.json").read_text())
    assert data["model"] == "models/tiny.py"  # relative to the directory holding goldens/
    assert data["settings"] == {"capture": "export", "mode": "stream", "precision": "fp32", "target": "wse2"}
    assert data["outputs"][0]["tolerance"]["rtol"] == 1e-5 and data["outputs"][0]["recorded"]["max_abs"] < 1e-5
    assert {"torch", "wafercc", "numpy"} <= set(data["versions"]) and len(data["plan_sha256"]) == 64
    assert (g / "golden.json").read_text() == F.json_text(data)  # sorted keys, indented
    with np.load(g / "eager.npz") as z:
        assert z["out0"].shape == (2, 4)


def test_round_trip_passes_and_never_writes(tiny_root):
    before = {p: p.read_bytes() for p in (tiny_root / "goldens" / "tiny").iterdir()}
    r = check(tiny_root)
    assert r.status is S.PASS, golden.format_result(r)
    assert r.outputs[0].vs_runtime.max_abs == 0 and r.outputs[0].eager.max_abs == 0
    assert {p: p.read_bytes() for p in (tiny_root / "goldens" / "tiny").iterdir()} == before
    assert golden.exit_code([r]) == 0


def test_recording_twice_gives_the_same_bytes(tiny_root):
    g = tiny_root / "goldens" / "tiny"
    before = {p.name: p.read_bytes() for p in g.iterdir()}
    r = golden.record_file(tiny_root / "models" / "tiny.py", tiny_root / "goldens", golden.Options())
    assert r.status is S.RECORDED
    assert {p.name: p.read_bytes() for p in g.iterdir()} == before
    assert [p.name for p in g.parent.iterdir()] == ["tiny"]  # no temp directory left behind


def test_drift_names_the_op_and_its_source_line(tiny_root, off_relu):
    r = check(tiny_root)
    assert r.status is S.DRIFTED and golden.exit_code([r]) == 1
    out = r.outputs[0]
    assert not out.vs_golden.passed and not out.vs_runtime.passed and out.eager.passed
    first = r.bisect.first
    assert first.op.split("=")[1].split()[0] == "relu"
    assert (first.loc.file, first.loc.line) == ("models/tiny.py", RELU_LINE)
    text = golden.format_result(r)
    assert text.startswith("drifted: models/tiny.py on wse2 (stream, fp32)")
    assert f"at models/tiny.py:{RELU_LINE}:  {RELU_SOURCE}" in text and "the compiler's numbers moved" in text
    assert len(text.splitlines()) < 30  # one screen


def test_record_refuses_a_runtime_that_does_not_match_eager(tmp_path, off_relu):
    r = golden.record_file(write_tiny(tmp_path), tmp_path / "goldens", golden.Options())
    assert r.status is S.NOT_RECORDED and "does not match eager PyTorch" in r.message
    assert r.bisect.first.loc.line == RELU_LINE
    assert not (tmp_path / "goldens" / "tiny").exists()


def test_other_target_is_a_plan_change_with_the_same_numbers(tiny_root):
    r = check(tiny_root, target="wse3")
    assert r.status is S.PLAN_CHANGED and golden.exit_code([r]) == 0
    assert "plan.json" in r.message and r.plan_before != r.plan_after
    assert r.settings["target"] == "wse3"


def test_edited_plan_hash_is_a_plan_change(tiny_root):
    path = tiny_root / "goldens" / "tiny" / "golden.json"
    data = json.loads(path.read_text())
    data["plan_sha256"] = "0" * 64
    path.write_text(F.json_text(data))
    r = check(tiny_root)
    assert r.status is S.PLAN_CHANGED and r.message.startswith("plan.json changed")


def test_failure_to_compile_reports_the_error(tiny_root):
    path = tiny_root / "models" / "tiny.py"
    path.write_text(path.read_text().replace("torch.relu(", "torch.special.erfcx("))
    r = check(tiny_root)
    assert r.status is S.COMPILE_FAILED and golden.exit_code([r]) == 1
    assert "special_erfcx" in r.message and "does not support" in r.message


def test_no_golden_is_reported_never_recorded(tmp_path):
    r = golden.check_file(write_tiny(tmp_path), tmp_path / "goldens")
    assert r.status is S.NO_GOLDEN and "golden record" in r.message
    assert not (tmp_path / "goldens").exists()
    assert golden.exit_code([r]) == 3 and golden.exit_code([r], strict=True) == 2


def test_eager_changed_is_not_the_compilers_fault(tiny_root):
    write_tiny(tiny_root, seed=1)  # other weights: eager moves, and the compiler follows it
    r = check(tiny_root)
    assert r.status is S.EAGER_CHANGED and golden.exit_code([r]) == 1
    assert not r.outputs[0].eager.passed
    assert "not the compiler" in r.message and "matches today's eager" in r.message
    assert r.bisect is None


def test_changed_example_inputs_are_an_eager_change(tiny_root):
    write_tiny(tiny_root, batch=3)
    r = check(tiny_root)
    assert r.status is S.EAGER_CHANGED and "example inputs changed" in r.message


def test_update_re_records_what_did_not_pass(tiny_root):
    write_tiny(tiny_root, seed=1)
    path = tiny_root / "models" / "tiny.py"
    r = golden.update_file(path, tiny_root / "goldens", check(tiny_root))
    assert r.status is S.RECORDED and "was eager changed" in r.message
    assert check(tiny_root).status is S.PASS


def test_re_recording_keeps_the_eager_reference_eager_still_reproduces(tiny_root, monkeypatch):
    """Eager PyTorch's last bits vary from machine to machine (MKL's AVX2 and AVX-512 kernels round
    differently): re-recording, as after a plan change, keeps eager.npz when today's eager reproduces it on
    the same inputs, so the reference does not move with the machine that re-records."""
    import importlib

    R = importlib.import_module("wafercc.golden.record")  # the module (wafercc.golden.record is its function)
    g = tiny_root / "goldens" / "tiny"
    before = (g / "eager.npz").read_bytes()
    eager = R.eager
    nudged = []

    def one_ulp_up(subject, inputs):
        out = [np.nextafter(a, np.float32(np.inf)) for a in eager(subject, inputs)]
        nudged.append(out)
        return out

    monkeypatch.setattr(R, "eager", one_ulp_up)
    r = golden.record_file(tiny_root / "models" / "tiny.py", tiny_root / "goldens", golden.Options())
    assert r.status is S.RECORDED, golden.format_result(r)
    assert nudged and nudged[0][0].tobytes() != np.load(g / "eager.npz")["out0"].tobytes()
    assert (g / "eager.npz").read_bytes() == before
    assert check(tiny_root).status is S.PASS
    # Other inputs (a seed): the recorded reference is not theirs, so eager's own outputs are recorded.
    r = golden.record_file(tiny_root / "models" / "tiny.py", tiny_root / "goldens", golden.Options(seed=3))
    assert r.status is S.RECORDED and (g / "eager.npz").read_bytes() != before
    with np.load(g / "eager.npz") as z:
        assert z["out0"].tobytes() == nudged[-1][0].tobytes()


def test_damaged_golden_is_a_usage_error(tiny_root):
    (tiny_root / "goldens" / "tiny" / "eager.npz").write_bytes(F.npz_bytes({"out0": np.zeros((2, 4), np.float32)}))
    with pytest.raises(UsageError, match="differs from what golden.json recorded"):
        check(tiny_root)


def test_seeded_inputs_keep_shapes_dtypes_and_int_ranges():
    import torch

    from wafercc.golden.run import make_inputs

    example = (torch.randn(2, 3), torch.tensor([[5, 9, 0]]), torch.tensor([True, False]))
    arrays, how = make_inputs(example, seed=3)
    assert how == "seeded random inputs (seed 3)"
    assert [(a.shape, a.dtype.name) for a in arrays] == [((2, 3), "float32"), ((1, 3), "int64"), ((2,), "bool")]
    assert arrays[1].min() >= 0 and arrays[1].max() <= 9  # token ids stay inside [0, max + 1)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, make_inputs(example, seed=3)[0]))


def test_npz_bytes_are_deterministic_and_read_back(tmp_path):
    import zipfile

    import ml_dtypes

    arrays = {"out0": np.arange(6, dtype=np.float32).reshape(2, 3), "out1": np.ones(3, ml_dtypes.bfloat16)}
    blob = F.npz_bytes(arrays)
    assert blob == F.npz_bytes(arrays)
    (tmp_path / "a.npz").write_bytes(blob)
    with zipfile.ZipFile(tmp_path / "a.npz") as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}  # not today's date
    back = F.read_npz(
        tmp_path / "a.npz",
        [{"name": "out0", "shape": [2, 3], "dtype": "float32"}, {"name": "out1", "shape": [3], "dtype": "bfloat16"}],
    )
    assert [a.dtype.name for a in back] == ["float32", "bfloat16"]
    assert all(np.array_equal(a, b) for a, b in zip(back, arrays.values()))


def test_meta_models_are_skipped_in_a_directory_and_refused_by_name(tmp_path):
    meta = tmp_path / "models" / "huge.py"
    meta.parent.mkdir()
    meta.write_text(
        "import torch\nwith torch.device('meta'):\n    model = torch.nn.Linear(4, 4)\n"
        "    example_inputs = (torch.randn(2, 4),)\n"
    )
    r = golden.record_file(meta, tmp_path / "goldens", golden.Options(), explicit=False)
    assert r.status is S.SKIPPED and "meta device" in r.message
    with pytest.raises(UsageError, match="meta device"):
        golden.record_file(meta, tmp_path / "goldens", golden.Options())


def test_model_files_of_a_directory_and_stem_clashes(tmp_path):
    for name in ("b.py", "a.py", "_helper.py", "test_a.py", "conftest.py", "notes.txt"):
        (tmp_path / name).write_text("")
    assert [(p.name, explicit) for p, explicit in golden.model_files([str(tmp_path)])] == [
        ("a.py", False),
        ("b.py", False),
    ]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.py").write_text("")
    with pytest.raises(UsageError, match="would share the golden 'a'"):
        golden.model_files([str(tmp_path), str(tmp_path / "sub" / "a.py")])


def test_another_model_with_the_same_stem_does_not_overwrite(tiny_root):
    other = write_tiny(tiny_root / "elsewhere")
    with pytest.raises(UsageError, match="was recorded from models/tiny.py"):
        golden.record_file(other, tiny_root / "goldens", golden.Options())
