"""Goldens of model files: what ``wafercc golden record`` and ``check`` do for each file they are given.

A golden directory (``--dir``, e.g. ``goldens/``) holds one golden per model, ``<dir>/<model stem>/``.
golden.json stores the model's path relative to the directory that holds ``--dir`` (the repository root
for ``goldens/``), so ``check_golden`` finds the model again from any working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from wafercc.errors import UsageError
from wafercc.golden import files as F
from wafercc.golden.record import options_of, record
from wafercc.golden.result import GoldenResult, Status
from wafercc.golden.run import Options, Subject, error_text, load_subject, on_meta
from wafercc.golden.train import TrainOptions, check, record_training, train_options_of
from wafercc.ir import WaferError


def root_of(directory: Path) -> Path:
    """Model paths in golden.json are relative to the directory holding the goldens' directory."""
    return directory.resolve().parent


def record_file(
    path: str | os.PathLike,
    directory: Path,
    options: Options,
    *,
    entry: str | None = None,
    explicit: bool = True,
    train: TrainOptions | None = None,
) -> GoldenResult:
    """Record the golden of a model file into ``directory/<stem>``, replacing the one there; with ``train``,
    its training golden (``options`` is then not used)."""
    subject = _load(path, directory, entry, explicit)
    if isinstance(subject, GoldenResult):
        return subject
    golden = directory / subject.name
    if (golden / F.GOLDEN_JSON).is_file():
        _same_model(golden, subject)
    if train is not None:
        return record_training(subject, golden, train)
    return record(subject, golden, options)


def check_file(
    path: str | os.PathLike,
    directory: Path,
    *,
    entry: str | None = None,
    explicit: bool = True,
    run_bisect: bool = True,
    **overrides,
) -> GoldenResult:
    """Check a model file against ``directory/<stem>``; ``overrides``: target, mode, precision."""
    golden = directory / Path(path).stem
    if entry is None and (golden / F.GOLDEN_JSON).is_file():
        entry = F.read_golden_json(golden).get("entry")
    subject = _load(path, directory, entry, explicit)
    if isinstance(subject, GoldenResult):
        return subject
    return check(subject, golden, run_bisect=run_bisect, **overrides)


def check_golden(golden: Path, *, run_bisect: bool = True, **overrides) -> GoldenResult:
    """Check a recorded golden against the model file golden.json names."""
    data = F.read_golden_json(golden)
    model = F.model_path(golden, data.get("model"), root_of(golden.parent))
    if not model.is_file():
        raise UsageError(
            f"{golden / F.GOLDEN_JSON} was recorded from {data['model']}, which does not exist "
            f"(relative to {root_of(golden.parent)})"
        )
    return check_file(model, golden.parent, entry=data.get("entry"), run_bisect=run_bisect, **overrides)


def update_file(
    path: str | os.PathLike, directory: Path, previous: GoldenResult, *, entry: str | None = None, **overrides
) -> GoldenResult:
    """Re-record after a check that did not pass, with the golden's own settings (``overrides`` win)."""
    golden = directory / Path(path).stem
    recorded = F.read_golden_json(golden) if (golden / F.GOLDEN_JSON).is_file() else None
    entry = entry or (recorded or {}).get("entry")
    if recorded and "train" in recorded:  # a training golden re-records as one, with its own training settings
        train = train_options_of(recorded, overrides.get("target"))
        result = record_file(path, directory, Options(), entry=entry, train=train)
    else:
        options = (
            options_of(recorded, **overrides) if recorded else Options(**{k: v for k, v in overrides.items() if v})
        )
        result = record_file(path, directory, options, entry=entry)
    if result.status is Status.RECORDED:
        result.message = f"re-recorded (was {previous.status.value}); {result.message}"
    return result


def model_files(paths: list[str]) -> list[tuple[Path, bool]]:
    """The model files named by ``paths`` (files, or directories of *.py): (file, named explicitly).
    In a directory, helpers (``_*.py``) and pytest files (``test_*.py``, ``conftest.py``) are not models."""
    out: list[tuple[Path, bool]] = []
    for s in paths:
        p = Path(s)
        if p.is_dir():
            out += [(f, False) for f in sorted(p.glob("*.py")) if not _not_a_model(f.name)]
        elif p.is_file() and p.suffix == ".py":
            out.append((p, True))
        else:
            raise UsageError(f"'{s}' is neither a model file (.py) nor a directory of them")
    stems: dict[str, Path] = {}
    for f, _ in out:
        if f.stem in stems and stems[f.stem].resolve() != f.resolve():
            raise UsageError(
                f"{stems[f.stem]} and {f} would share the golden '{f.stem}': rename one, or "
                "record them into different --dir"
            )
        stems[f.stem] = f
    return out


def _not_a_model(name: str) -> bool:
    return name.startswith(("_", "test_")) or name.endswith("_test.py") or name == "conftest.py"


def _load(path, directory: Path, entry: str | None, explicit: bool) -> Subject | GoldenResult:
    """The model of a file, or the result that says why there is none to measure."""
    root = root_of(directory)
    source = F.display_path(path, root)
    golden = directory / Path(path).stem
    try:
        subject = load_subject(path, root, entry=entry)
    except WaferError as e:
        return GoldenResult(Path(path).stem, source, golden, Status.COMPILE_FAILED, error_text(e))
    if on_meta(subject):
        why = "its model is on the meta device: it can be planned (`wafercc compile`) but not run, so it has no golden"
        if explicit:
            raise UsageError(f"{source}: {why}")
        return GoldenResult(subject.name, source, golden, Status.SKIPPED, why)
    return subject


def _same_model(golden: Path, subject: Subject) -> None:
    """Two model files with one stem must not overwrite each other's golden."""
    recorded = F.recorded_model(golden)
    if recorded is not None and recorded != subject.source:
        raise UsageError(
            f"the golden '{golden}' was recorded from {recorded}, not {subject.source}: delete it "
            "or record into another --dir"
        )
