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
import math
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from runtime.artifacts import KIND_GOLDEN, write_dir_atomic
from runtime.errors import InputError
from runtime.io import read_npz as read_members
from runtime.optim import from_dict
from wafercc.errors import UsageError
from wafercc.ir import WaferError
from wafercc.target import parse_target

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


def read_npz(path: Path, described: list[dict]) -> list[np.ndarray]:
    """The arrays of an npz written by ``npz_bytes``, as golden.json ``described`` them (name, shape, dtype),
    in that order; bf16 is stored as its 16 bits (.npy has no name for it). Nothing is decompressed beyond
    what the description allows (UsageError otherwise)."""
    names = [d["name"] for d in described]
    limits = {d["name"]: int(np.prod(d["shape"], dtype=object)) * dtype_of(d["dtype"]).itemsize for d in described}

    def bounds(keys: list[str]) -> dict[str, int]:
        if keys != names:
            raise InputError(f"holds {', '.join(keys) or 'nothing'}; golden.json describes {', '.join(names)}")
        return limits

    try:
        arrays = read_members(path, bounds, "golden arrays")
    except InputError as e:
        raise UsageError(f"{e}: the golden is damaged; re-record it with `wafercc golden record`") from None
    out = []
    for d in described:
        a, want = arrays[d["name"]], dtype_of(d["dtype"])
        a = a.view(want) if a.dtype != want and a.dtype.itemsize == want.itemsize else a
        if a.dtype != want or list(a.shape) != list(d["shape"]):
            raise UsageError(
                f"{path} member {d['name']} is {a.dtype}{list(a.shape)}, golden.json says "
                f"{d['dtype']}{d['shape']}: the golden is damaged; re-record it"
            )
        out.append(a)
    return out


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
    """golden.json, once it has the shape this wafercc reads (UsageError naming the place otherwise)."""
    path = golden / GOLDEN_JSON
    try:
        if path.stat().st_size > MAX_GOLDEN_JSON:
            raise UsageError(
                f"{path} is {path.stat().st_size:,} bytes, more than a golden.json can be ({MAX_GOLDEN_JSON:,})"
            )
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise UsageError(
            f"{path} has format {found!r}; this wafercc reads {FORMAT!r} (re-record it with `wafercc golden record`)"
        )
    problem = _schema_problem(data, _GOLDEN_SCHEMA, "")
    if problem:
        raise UsageError(
            f"{path}: {problem}; the golden is damaged: restore it or re-record it with `wafercc golden record`"
        )
    return data


MAX_GOLDEN_JSON = 16 << 20
# What golden.json must hold (docs/golden.md): a type name, "?" for optional/None, {key: spec}, [item spec].
_ARRAY = {"name": "str", "shape": "shape", "dtype": "dtype"}
_TOLERANCE = {"rtol": "num", "atol": "num", "scale_atol": "bool", "min_pcc": "num?", "exact": "bool"}
_GOLDEN_SCHEMA = {
    "name": "str",
    "model": "str",
    "entry": "str?",
    "settings": {"target": "target", "mode": "mode", "precision": "precision", "capture?": "capture"},
    "inputs": {"arrays": [_ARRAY], "seed?": "int?"},
    "tolerance_options?": {"rtol?": "num?", "atol?": "num?"},
    "outputs": [{**_ARRAY, "tolerance": _TOLERANCE}],
    "wir_sha256?": "str?",
    "plan_sha256?": "str?",
    "plan?": "dict",
    "files?": {"*": "str"},
    "train?": {  # a training golden (wafercc/golden/train.py)
        "optimizer": "optimizer",
        "steps": "count",
        "micro_batches": "count",
        "clip_norm": "num?",
        "tolerance": {"loss": "num", "weight": "num", "weight_abs": "num", "buffer": "num"},
        "losses": ["real"],
        "runtime_losses": ["real"],
        "weights": [{**_ARRAY, "kind": "kind", "sha256": "sha256"}],
    },
}


def _schema_problem(value, spec, where: str) -> str:
    """ "" when ``value`` fits ``spec``; else where and what was expected ("outputs[0].dtype must be ...")."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{where or 'the file'} must be an object, got {_kind(value)}"
        for key, sub in spec.items():
            name = key.rstrip("?")
            items = value.items() if name == "*" else [(name, value.get(name))] if name in value else []
            if not items and not key.endswith("?") and name != "*":
                return f"{where + '.' if where else ''}{name} is missing"
            for k, v in items:
                problem = _schema_problem(v, sub, f"{where + '.' if where else ''}{k}")
                if problem:
                    return problem
        return ""
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{where} must be a list, got {_kind(value)}"
        return next((p for i, v in enumerate(value) if (p := _schema_problem(v, spec[0], f"{where}[{i}]"))), "")
    if spec.endswith("?") and value is None:
        return ""
    ok, expected = _SCALARS[spec.rstrip("?")]
    return "" if ok(value) else f"{where} must be {expected}, got {_kind(value)}"


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and v >= 0


def _is_dtype(v) -> bool:
    try:
        return isinstance(v, str) and not dtype_of(v).hasobject
    except (TypeError, ValueError):  # np.dtype("2.13.0+cpu") is a ValueError, np.dtype("x") a TypeError
        return False


def _is_target(v) -> bool:
    try:
        return isinstance(v, str) and len(v) < 200 and parse_target(v) is not None
    except (WaferError, ValueError):
        return False


def _is_optimizer(v) -> bool:
    try:
        return isinstance(v, dict) and from_dict(v) is not None
    except (WaferError, TypeError, ValueError):
        return False


_SCALARS = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "real": (
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        "a finite number",
    ),
    "count": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v < 1 << 31, "an integer >= 1"),
    "sha256": (
        lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v) is not None,
        "a sha256 (64 hex digits)",
    ),
    "kind": (lambda v: v in ("parameter", "buffer"), "parameter or buffer"),
    "optimizer": (_is_optimizer, "an optimizer's settings (type SGD or AdamW and its settings)"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "num": (_is_num, "a number >= 0"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "dtype": (_is_dtype, "a numpy dtype name (float32, int64, bfloat16, ...)"),
    "mode": (lambda v: v in ("stream", "pipeline"), "stream or pipeline"),
    "precision": (lambda v: v in ("fp32", "bf16", "fp16"), "fp32, bf16 or fp16"),
    "capture": (lambda v: v in ("export", "fx"), "export or fx"),
    "target": (_is_target, "a target (wse2, wse3, mesh8, mesh:WxH, ...)"),
    "shape": (
        lambda v: (
            isinstance(v, list)
            and len(v) <= 64
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 40 for n in v)
        ),
        "a list of sizes >= 0",
    ),
}


def _kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), f"a {type(v).__name__}"
    )


def recorded_model(golden: Path) -> str | None:
    """The model path a golden.json names, or None when it is damaged: re-recording over a damaged golden is
    how it gets repaired, so this read does not refuse."""
    try:
        data = json.loads((golden / GOLDEN_JSON).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


def model_path(golden: Path, recorded: object, root: Path) -> Path:
    """The model file golden.json names, once it lies inside the goldens' root: a golden runs only model files
    of its own tree (or named on the command line), never one a golden.json points at elsewhere."""
    where = golden / GOLDEN_JSON
    if not isinstance(recorded, str) or not recorded:
        raise UsageError(f"{where}: 'model' must be the model file's path relative to {root}, got {recorded!r}")
    p = Path(recorded)
    if p.is_absolute() or ".." in p.parts or p.suffix != ".py":
        raise UsageError(
            f"{where}: 'model' is {recorded!r}; a golden names a .py file inside {root} by a relative "
            "path without '..': it does not run files elsewhere (name the model file on the command "
            "line to check it)"
        )
    resolved = (root / p).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise UsageError(
            f"{where}: 'model' {recorded!r} leads outside {root} (through a symbolic link): a golden "
            "runs only model files inside its root; name the model file on the command line instead"
        )
    return root / p


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
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith(".") and (p / GOLDEN_JSON).is_file())


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
