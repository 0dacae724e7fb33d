"""A golden's files on disk: deterministic .npz, a diff-friendly golden.json, written all at once.

    goldens/<name>/inputs.npz    arg0, arg1, ...   the inputs every check runs on
                   eager.npz     out0, out1, ...   eager PyTorch's outputs: the reference
                   runtime.npz   out0, out1, ...   the runtime's outputs at record time
                   golden.json   settings, tolerances, hashes, versions, errors at record time

Numpy only (no torch): reading a golden must stay cheap.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from runtime.artifacts import KIND_GOLDEN, write_dir_atomic
from wafercc.errors import UsageError

FORMAT = "wafercc-golden/1"
GOLDEN_JSON = "golden.json"
INPUTS, EAGER, RUNTIME = "inputs.npz", "eager.npz", "runtime.npz"
GOLDEN_FILES = frozenset({GOLDEN_JSON, INPUTS, EAGER, RUNTIME})  # what a golden held before output markers
# np.savez stamps every member with the current time; a fixed stamp makes the bytes a function of the arrays.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The .npz of ``arrays`` (in the given order), byte for byte the same for the same arrays."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, a in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, _storable(np.asarray(a)), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            z.writestr(info, member.getvalue())
    return buf.getvalue()


def read_npz(path: Path, dtypes: list[str]) -> list[np.ndarray]:
    """The arrays of an npz written by ``npz_bytes``, in member order, viewed as ``dtypes`` (bf16 is stored
    as its 16 bits: .npy has no name for it)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = [z[k] for k in z.files]
    if len(arrays) != len(dtypes):
        raise ValueError(f"{path} holds {len(arrays)} array(s), golden.json describes {len(dtypes)}")
    return [a.view(dtype_of(d)) if a.dtype != dtype_of(d) else a for a, d in zip(arrays, dtypes)]


def _storable(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16) if a.dtype.name == "bfloat16" else a


def dtype_of(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def json_text(data: dict) -> str:
    """golden.json's text: sorted keys and one value per line, so a re-record diffs line by line."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def read_golden_json(golden: Path) -> dict:
    path = golden / GOLDEN_JSON
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    if data.get("format") != FORMAT:
        raise UsageError(f"{path} has format {data.get('format')!r}; this wafercc reads {FORMAT!r} "
                         "(re-record it with `wafercc golden record`)")
    return data


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


# A location says where the model's line is, not what was compiled: adding a comment above a layer must not
# read as "plan changed", nor must checking from another directory (locations are relative to the cwd).
_LOC = re.compile(r'\s+loc\("(?:[^"\\]|\\.)*":\d+\)')


def wir_sha256(text: str) -> str:
    """The hash of a WIR text without its source locations."""
    return sha256(_LOC.sub("", text))


def write_golden(dest: Path, files: dict[str, bytes]) -> None:
    """Write a golden's files all at once: a failure (or a reader at the wrong moment) never sees half a
    golden."""

    def fill(tmp: Path) -> None:
        for name, data in files.items():
            (tmp / name).write_bytes(data)

    write_dir_atomic(dest, fill, KIND_GOLDEN, legacy=GOLDEN_FILES)


def golden_names(directory: Path) -> list[str]:
    """The goldens recorded in ``directory`` (temp directories of a write in progress start with '.')."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir()
                  if not p.name.startswith(".") and (p / GOLDEN_JSON).is_file())


def display_path(path: str | os.PathLike, root: Path) -> str:
    """``path`` relative to ``root`` when it is inside it (what golden.json stores), else absolute."""
    p = Path(path).resolve()
    try:
        return p.relative_to(root.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def sanitize(name: str) -> str:
    """A golden name usable as a directory name on every platform."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"
