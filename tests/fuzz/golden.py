"""Mutants of a real recorded golden (golden.json and its .npz files), and the property each must keep.

The seed is the golden of a tiny model, recorded once. A mutant changes one of: golden.json (one place,
structure-aware, or its bytes), or one of the .npz files (its bytes, or a member's array) with the sha256 in
golden.json updated to match, so that the reader behind the hash check is reached.

The property (``check``): everything a golden check reads before it compiles — golden.json, the model path
it names, the recorded options and tolerances, and the three arrays files — is either read into values of
the described shapes and dtypes, or refused with a ``UsageError`` (a WaferError) naming the golden's file;
never another exception; and no model path outside the goldens' root is ever returned.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from tests.fuzz.mutate import bytes_mutant, dumps, json_mutant
from wafercc.golden import files as F
from wafercc.ir import WaferError


@functools.cache
def seed() -> Path:
    """A root holding models/tiny.py and goldens/tiny/, recorded once."""
    from tests.golden.util import write_tiny
    from wafercc import golden

    root = Path(tempfile.mkdtemp(prefix="wafercc-fuzz-golden-seed-"))
    r = golden.record_file(write_tiny(root), root / "goldens", golden.Options(target="mesh4"))
    assert r.status is golden.Status.RECORDED, golden.format_result(r)
    return root


def _files() -> dict[str, bytes]:
    g = seed() / "goldens" / "tiny"
    return {p.name: p.read_bytes() for p in g.iterdir() if not p.name.startswith(".")}


@st.composite
def mutants(draw) -> tuple[str, dict[str, bytes]]:
    """(what was mutated, the golden's files)."""
    files = _files()
    data = json.loads(files[F.GOLDEN_JSON])
    kind = draw(st.sampled_from(["json", "json", "json", "json-bytes", "npz-bytes", "npz-array"]))
    if kind == "json":
        files[F.GOLDEN_JSON] = dumps(draw(json_mutant(data)))
    elif kind == "json-bytes":
        files[F.GOLDEN_JSON] = draw(bytes_mutant(files[F.GOLDEN_JSON]))
    else:
        name = draw(st.sampled_from([F.INPUTS, F.EAGER, F.RUNTIME]))
        if kind == "npz-bytes":
            files[name] = draw(bytes_mutant(files[name]))
        else:
            shape = draw(st.sampled_from([(3,), (2, 4), (0,), (2, 16), (1, 1, 1)]))
            dtype = draw(st.sampled_from(["float32", "float64", "int64", "uint16", "bool"]))
            key = draw(st.sampled_from(["out0", "arg0", "out1", "x"]))
            files[name] = F.npz_bytes({key: np.zeros(shape, dtype)})
        data["files"][name] = F.sha256(files[name])
        files[F.GOLDEN_JSON] = F.json_text(data).encode()
    return kind, files


@functools.cache
def _workdir() -> Path:
    root = Path(tempfile.mkdtemp(prefix="wafercc-fuzz-golden-"))
    shutil.copytree(seed() / "models", root / "models")
    return root


def check(kind: str, files: dict[str, bytes]) -> str:
    """ "rejected" (a UsageError naming the golden) or "accepted" (everything read and consistent)."""
    from wafercc.golden.check import _recorded, _tolerances, _verified
    from wafercc.golden.models import root_of
    from wafercc.golden.record import options_of

    root = _workdir()
    g = root / "goldens" / "tiny"
    g.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        (g / name).write_bytes(blob)
    try:
        data = F.read_golden_json(g)
        model = F.model_path(g, data.get("model"), root_of(g.parent))
        assert model.resolve().is_relative_to(root.resolve()), model
        options = options_of(data)
        _tolerances(data, options)
        arrays = F.read_npz(_verified(g, F.INPUTS, data), data["inputs"]["arrays"])
        for a, d in zip(arrays, data["inputs"]["arrays"]):
            assert list(a.shape) == d["shape"] and a.dtype == F.dtype_of(d["dtype"])
        for name in (F.EAGER, F.RUNTIME):
            outs = _recorded(g, name, data)
            assert [list(a.shape) for a in outs] == [o["shape"] for o in data["outputs"]]
    except WaferError as e:
        assert type(e).__name__ == "UsageError", f"{type(e).__name__}: {e}"
        assert str(g) in str(e), str(e)
        return "rejected"
    return "accepted"
