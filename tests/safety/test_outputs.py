"""No command deletes or replaces what it did not create: -o into a foreign folder, the current directory or a
file is refused (exit 2, untouched); an earlier output of the same kind is replaced; --force replaces anything
but a folder holding the current directory."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime.artifacts import MARKER_FILE, MODEL_FILES
from wafercc.cli import main

ROOT = Path(__file__).resolve().parents[2]
MLP = str(ROOT / "examples" / "mlp.py")


def cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(d.rglob("*"))}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("safety") / "mlp"
    assert main(["compile", MLP, "-o", str(out), "-q", "--target", "mesh8"]) == 0
    return out


@pytest.fixture
def foreign(tmp_path) -> Path:
    d = tmp_path / "mine"
    (d / "sub").mkdir(parents=True)
    (d / "notes.txt").write_text("my notes")
    (d / "sub" / "data.bin").write_bytes(b"\0" * 10)
    return d


def test_compile_writes_a_marker_naming_kind_and_files(compiled):
    marker = json.loads((compiled / MARKER_FILE).read_text())
    assert marker["kind"] == "compiled model" and set(marker["files"]) == set(MODEL_FILES)


@pytest.mark.parametrize("command", [("compile", MLP, "-q"), ("verify", MLP)])
def test_foreign_folder_is_refused_and_untouched(capsys, foreign, command):
    before = snapshot(foreign)
    code, err = cli(capsys, *command, "-o", foreign)
    assert code == 2
    assert "is not a wafercc compiled model output (it holds notes.txt, sub)" in err and "--force" in err
    assert snapshot(foreign) == before
    assert sorted(p.name for p in foreign.parent.iterdir()) == ["mine"]


@pytest.mark.parametrize("where", [".", "..", "/"])
def test_a_folder_holding_the_current_directory_is_refused_even_with_force(capsys, tmp_path, monkeypatch, where):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "keep.txt").write_text("x")
    monkeypatch.chdir(work)
    code, err = cli(capsys, "compile", MLP, "-q", "-o", where, "--force")
    assert code == 2 and "it holds the current directory" in err
    assert (work / "keep.txt").read_text() == "x"


def test_an_existing_file_at_o_is_refused(capsys, tmp_path):
    f = tmp_path / "out"
    f.write_text("precious")
    code, err = cli(capsys, "compile", MLP, "-q", "-o", f)
    assert code == 2 and "exists and is a file" in err and f.read_text() == "precious"


def test_a_path_under_a_file_or_proc_is_an_error_not_a_traceback(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, err = cli(capsys, "compile", MLP, "-q", "-o", f / "sub" / "out")
    assert code == 2 and f"'{f}' is a file, not a folder" in err
    code, err = cli(capsys, "compile", MLP, "-q", "-o", "/proc/wafercc-out")
    assert code == 2 and "cannot create files in '/proc'" in err


def test_run_o_under_a_file_or_proc_is_an_error(capsys, compiled, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, err = cli(capsys, "run", compiled, "-o", f / "o.npz")
    assert code == 2 and "is a file, not a folder" in err
    code, err = cli(capsys, "run", compiled, "-o", "/proc/o.npz")
    assert code == 2 and "cannot write '/proc/o.npz'" in err and "wafercc-tmp" not in err


def test_recompile_replaces_an_earlier_output_and_a_legacy_one(capsys, compiled, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(compiled, out)
    (out / MARKER_FILE).unlink()  # written before markers existed: its files are exactly a compiled model's
    code, err = cli(capsys, "compile", MLP, "-q", "--target", "mesh8", "-o", out)
    assert code == 0, err
    assert (out / MARKER_FILE).is_file() and not (out / "extra.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no lock, temp or old folders left


def test_an_output_with_a_foreign_file_inside_is_refused(capsys, compiled, tmp_path):
    out = tmp_path / "m"
    shutil.copytree(compiled, out)
    (out / "mesh.png").write_bytes(b"mine")
    code, err = cli(capsys, "compile", MLP, "-q", "-o", out)
    assert code == 2 and "also holds mesh.png, which wafercc did not write there" in err
    assert (out / "mesh.png").read_bytes() == b"mine"


def test_a_file_wafercc_writes_into_an_output_joins_it(capsys, compiled, tmp_path):
    """`viz -o build/m/mesh.png` (the README's example), then a recompile: the picture is wafercc's."""
    out = tmp_path / "m"
    shutil.copytree(compiled, out)
    assert cli(capsys, "viz", out, "-o", out / "mesh.png")[0] == 0
    assert "mesh.png" in json.loads((out / MARKER_FILE).read_text())["files"]
    code, err = cli(capsys, "compile", MLP, "-q", "--target", "mesh8", "-o", out)
    assert code == 0, err


def test_a_golden_is_not_a_compiled_model(capsys, tmp_path):
    g = tmp_path / "g"
    g.mkdir()
    (g / MARKER_FILE).write_text(json.dumps({"format": "wafercc-output/1", "kind": "golden", "files": []}))
    code, err = cli(capsys, "compile", MLP, "-q", "-o", g)
    assert code == 2 and "is a wafercc golden, not a compiled model" in err


def test_force_replaces_a_foreign_folder(capsys, foreign):
    code, err = cli(capsys, "compile", MLP, "-q", "--target", "mesh8", "-o", foreign, "--force")
    assert code == 0, err
    assert not (foreign / "notes.txt").exists() and (foreign / MARKER_FILE).is_file()


def test_golden_record_refuses_a_foreign_folder(capsys, tmp_path):
    goldens = tmp_path / "goldens"
    (goldens / "mlp").mkdir(parents=True)
    (goldens / "mlp" / "thesis.tex").write_text("x")
    code, err = cli(capsys, "golden", "record", MLP, "--dir", goldens, "-q")
    assert code == 2 and "is not a wafercc golden output (it holds thesis.tex)" in err
    assert (goldens / "mlp" / "thesis.tex").read_text() == "x"


# -- single files: run -o, opt -o, viz -o ------------------------------------------------------


def test_run_o_refuses_a_foreign_file_and_replaces_its_own(capsys, compiled, tmp_path):
    out = tmp_path / "o.npz"
    out.write_text("a thesis")
    code, err = cli(capsys, "run", compiled, "-o", out)
    assert code == 2 and "is not an .npz of outputs (out0, out1, ...) that wafercc wrote" in err
    assert out.read_text() == "a thesis"
    np.savez(out, weights=np.zeros(3))  # an npz, but not one of outputs
    assert cli(capsys, "run", compiled, "-o", out)[0] == 2
    assert cli(capsys, "run", compiled, "-o", out, "--force")[0] == 0
    assert cli(capsys, "run", compiled, "-o", out)[0] == 0  # its own output: replaced
    assert list(np.load(out).keys()) == ["out0"]


def test_opt_o_refuses_a_folder_and_a_foreign_file(capsys, compiled, tmp_path):
    code, err = cli(capsys, "opt", compiled / "model.wir", "-o", tmp_path)
    assert code == 2 and "is a directory" in err
    notes = tmp_path / "notes.wir"
    notes.write_text("not wir")
    code, err = cli(capsys, "opt", compiled / "model.wir", "-o", notes)
    assert code == 2 and "is not a WIR module that wafercc wrote" in err and notes.read_text() == "not wir"
    assert cli(capsys, "opt", compiled / "model.wir", "-o", notes, "--force")[0] == 0
    assert cli(capsys, "opt", compiled / "model.wir", "-o", notes)[0] == 0  # now a WIR module


def test_viz_o_replaces_only_its_own_pictures(capsys, compiled, tmp_path):
    pic = tmp_path / "mesh.png"
    pic.write_bytes(b"\x89PNG\r\n\x1a\nmy photo")
    code, err = cli(capsys, "viz", compiled, "-o", pic)
    assert code == 2 and "is not a picture that wafercc wrote" in err
    assert cli(capsys, "viz", compiled, "-o", pic, "--force")[0] == 0
    assert cli(capsys, "viz", compiled, "-o", pic)[0] == 0
    svg = tmp_path / "m.svg"
    assert cli(capsys, "viz", compiled, "-o", svg)[0] == 0 and cli(capsys, "viz", compiled, "-o", svg)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.svg", "mesh.png"]


def test_outputs_are_written_with_ordinary_permissions(compiled):
    assert oct(compiled.stat().st_mode & 0o777) == "0o755"
    assert all(oct(p.stat().st_mode & 0o777) == "0o644" for p in compiled.iterdir())
    assert os.access(compiled / MARKER_FILE, os.R_OK)


def test_an_output_reads_as_an_ordinary_directory(tmp_path):
    """Files 0644, folders (a training output's store/) 0755: a folder without its execute bit cannot be
    entered by anyone but root."""
    from runtime.artifacts import write_dir_atomic

    def fill(d):
        (d / "model.wir").write_text("module @m {\n}\n")
        (d / "store").mkdir()
        (d / "store" / "w.bin").write_bytes(b"\0")

    out = write_dir_atomic(tmp_path / "out", fill, "test output")
    assert (out.stat().st_mode & 0o777, (out / "model.wir").stat().st_mode & 0o777) == (0o755, 0o644)
    assert (out / "store").stat().st_mode & 0o777 == 0o755
