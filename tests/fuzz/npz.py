"""Mutants of real .npz inputs, and the property each must keep.

The seed is an inputs file of a compiled model's signature (``np.savez``, as a user writes one, and the
golden writer's deterministic one). A mutant changes one of: a member's name (renamed, dropped, doubled,
an extra one, a deflated 64 MB one), its .npy header (shape, dtype, order: structure-aware), its data
(cut, extended), or the zip's bytes (cut, spliced, overwritten).

The property (``check``): ``runtime.load_inputs`` either returns arrays of exactly the signature's shapes and
dtypes or raises an ``InputError`` (a WaferError) naming the file; never another exception; and it never
reads more than the signature's bytes plus the headers (a bomb costs nothing).
"""

from __future__ import annotations

import functools
import io
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

import runtime
from runtime.kernels import np_dtype
from tests.fuzz.mutate import bytes_mutant
from wafercc.ir import WaferError, parse

SIGNATURE = """module @m {
  func @forward(%x: tensor<8x16xf32>, %ids: tensor<8xi64>) -> (tensor<8x16xf32>) {
    %0 = relu %x : tensor<8x16xf32>
    return %0
  }
}
"""


@functools.cache
def func():
    return parse(SIGNATURE).func()


@functools.cache
def seeds() -> dict[str, dict[str, bytes]]:
    """name -> {member name: .npy bytes} for inputs keyed by name and by position."""
    rng = np.random.default_rng(0)
    arrays = {"x": rng.standard_normal((8, 16)).astype(np.float32), "ids": np.arange(8, dtype=np.int64)}
    return {
        "by-name": {f"{k}.npy": _npy(v) for k, v in arrays.items()},
        "by-position": {f"arg{i}.npy": _npy(v) for i, v in enumerate(arrays.values())},
    }


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


HEADERS = [
    {"descr": "<f4", "fortran_order": False, "shape": (8, 16)},
    {"descr": "<f4", "fortran_order": True, "shape": (16, 8)},
    {"descr": "<f8", "fortran_order": False, "shape": (8, 16)},
    {"descr": "|O", "fortran_order": False, "shape": (8, 16)},
    {"descr": "<f4", "fortran_order": False, "shape": (10**12,)},
    {"descr": "<f4", "fortran_order": False, "shape": (2**62, 2**62)},
    {"descr": "<f4", "fortran_order": False, "shape": ()},
    {"descr": "<f4", "fortran_order": False, "shape": (0, 16)},
    {"descr": "V2", "fortran_order": False, "shape": (8, 16)},
    {"descr": [("a", "<f4")], "fortran_order": False, "shape": (8, 16)},
    {"descr": ">f4", "fortran_order": False, "shape": (8, 16)},
]


def _with_header(npy: bytes, header: dict) -> bytes:
    version = np.lib.format.read_magic(io.BytesIO(npy))
    buf = io.BytesIO(npy)
    np.lib.format.read_magic(buf)
    (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(buf)
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + npy[buf.tell() :]


@st.composite
def mutants(draw) -> tuple[str, bytes]:
    """(what was mutated, .npz bytes)."""
    name = draw(st.sampled_from(sorted(seeds())))
    members = dict(seeds()[name])
    keys = list(members)
    k = draw(st.sampled_from(keys))
    kind = draw(st.sampled_from(["rename", "drop", "double", "extra", "bomb", "header", "data", "zip"]))
    compress = draw(st.booleans())
    if kind == "rename":
        members[draw(st.sampled_from(["y.npy", "arg7.npy", "%x.npy", "x", "arg0.npy", "../x.npy", "x.npy.npy"]))] = (
            members.pop(k)
        )
    elif kind == "drop":
        members.pop(k)
    elif kind == "extra":
        members["extra.npy"] = _npy(np.zeros(3))
    elif kind == "header":
        members[k] = _with_header(members[k], draw(st.sampled_from(HEADERS)))
    elif kind == "data":
        members[k] = draw(bytes_mutant(members[k]))
    blob = _zip(members, compress, double=k if kind == "double" else None, bomb=kind == "bomb")
    if kind == "zip":
        blob = draw(bytes_mutant(blob))
    return f"{name}/{kind}", blob


def _zip(members: dict[str, bytes], compress: bool, double: str | None = None, bomb: bool = False) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress or bomb else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": the point of the mutant
        for n, data in members.items():
            z.writestr(n, data)
            if n == double:
                z.writestr(n, data)
        if bomb:
            with z.open("x.npy" if "arg0.npy" in members else "arg0.npy", "w", force_zip64=True) as f:
                for _ in range(64):
                    f.write(b"\0" * (1 << 20))
    return buf.getvalue()


@functools.cache
def _path() -> Path:
    return Path(tempfile.mkdtemp(prefix="wafercc-fuzz-npz-")) / "inputs.npz"


def check(kind: str, blob: bytes) -> str:
    """ "rejected" (an InputError naming the file) or "accepted" (arrays of the signature's types)."""
    path = _path()
    path.write_bytes(blob)
    try:
        arrays = runtime.load_inputs(path, func())
    except WaferError as e:
        assert isinstance(e, runtime.InputError), f"{type(e).__name__}: {e}"
        assert str(path) in str(e), str(e)
        return "rejected"
    for a, arg in zip(arrays, func().args):
        assert a.shape == arg.type.shape and a.dtype == np_dtype(arg.type), (a.dtype, a.shape, arg.type)
    return "accepted"
