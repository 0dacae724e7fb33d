"""Mutants of a real MemoryX store (weights.safetensors + manifest.json), and the property each must keep.

The seed is the store of a compiled example (the MLP). A mutant changes one of: the safetensors header's JSON
(one place, structure-aware), the header's length prefix, the file's bytes (cut, spliced, overwritten),
or manifest.json (one place, or its bytes).

The property (``check``): opening the store and reading every tensor either works — and then every tensor
has the type the manifest promises and the bytes its sha256 promises — or raises a ``StoreError`` (a
WaferError) whose message names the file; never another exception.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
import tempfile
from pathlib import Path

from hypothesis import strategies as st

import runtime
from runtime.artifacts import MANIFEST_FILE, STORE_FILE
from tests.fuzz.mutate import bytes_mutant, dumps, json_mutant
from wafercc.ir import WaferError

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def seed() -> tuple[bytes, bytes]:
    """(weights.safetensors bytes, manifest.json bytes) of the compiled MLP."""
    from wafercc.frontend import load_model_file
    from wafercc.frontend.interop import to_numpy

    model, _ = load_model_file(ROOT / "examples" / "mlp.py")
    d = Path(tempfile.mkdtemp(prefix="wafercc-fuzz-store-seed-"))
    runtime.write_store(d, {k: to_numpy(v) for k, v in model.state_dict().items()})
    return (d / STORE_FILE).read_bytes(), (d / MANIFEST_FILE).read_bytes()


def _split(store: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", store[:8])
    return json.loads(store[8 : 8 + n]), store[8 + n :]


@st.composite
def mutants(draw) -> tuple[str, bytes, bytes]:
    """(what was mutated, store bytes, manifest bytes)."""
    store, manifest = seed()
    kind = draw(
        st.sampled_from(
            ["header", "header", "header", "length", "store-bytes", "manifest", "manifest", "manifest-bytes"]
        )
    )
    if kind == "header":
        header, data = _split(store)
        body = dumps(draw(json_mutant(header)))
        return kind, struct.pack("<Q", len(body)) + body + data, manifest
    if kind == "length":
        (n,) = struct.unpack("<Q", store[:8])
        new = draw(st.sampled_from([0, 1, n - 1, n + 1, n + 8, len(store), 2**63, 2**64 - 1]))
        return kind, struct.pack("<Q", new) + store[8:], manifest
    if kind == "store-bytes":
        return kind, draw(bytes_mutant(store)), manifest
    if kind == "manifest":
        return kind, store, dumps(draw(json_mutant(json.loads(manifest))))
    return kind, store, draw(bytes_mutant(manifest))


@functools.cache
def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="wafercc-fuzz-store-"))


def check(kind: str, store: bytes, manifest: bytes) -> str:
    """ "rejected" (a StoreError naming the file) or "accepted" (every tensor read and checked)."""
    d = _workdir()
    (d / STORE_FILE).write_bytes(store)
    (d / MANIFEST_FILE).write_bytes(manifest)
    try:
        with runtime.Store(d) as s:
            for name in s.names():
                info = s.info(name)
                a = s.get(name)
                assert a.shape == info.type.shape
                assert hashlib.sha256(store[info.begin : info.end]).hexdigest() == info.sha256
    except WaferError as e:
        assert isinstance(e, runtime.StoreError), f"{type(e).__name__}: {e}"
        assert STORE_FILE in str(e) or MANIFEST_FILE in str(e) or str(d) in str(e), str(e)
        return "rejected"
    return "accepted"
