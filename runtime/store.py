"""The MemoryX store: ``weights.safetensors`` + ``manifest.json`` in a compiled model's directory.

``weights.safetensors`` is the standard safetensors layout: an 8-byte little-endian header length N,
N bytes of JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``
(offsets relative to the data section), then the data. ``manifest.json`` is
``{"format": "wafercc-memoryx/1", "tensors": {name: {"dtype", "shape", "sha256", "kind"}}}``.

The reader memory-maps the file and hands out read-only views, so a tensor's bytes are touched only
when it is asked for (weight streaming: the whole file is never loaded). Each tensor's sha256 is checked
the first time it is read.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wafercc.ir import DType, TensorType, Weight

from .artifacts import MANIFEST_FILE, STORE_FILE, write_atomic
from .errors import StoreError
from .kernels.base import NP_DTYPE, np_dtype

FORMAT = "wafercc-memoryx/1"
KINDS = ("parameter", "buffer", "constant")

_ST_NAME = {
    DType.f64: "F64",
    DType.f32: "F32",
    DType.f16: "F16",
    DType.bf16: "BF16",
    DType.i64: "I64",
    DType.i32: "I32",
    DType.i16: "I16",
    DType.i8: "I8",
    DType.u8: "U8",
    DType.bool: "BOOL",
}
_DTYPE_OF_ST = {v: k for k, v in _ST_NAME.items()}
_DTYPE_OF_NP = {v: k for k, v in NP_DTYPE.items()}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives in the file, and what the manifest promises about it."""

    name: str
    type: TensorType
    begin: int  # absolute file offsets
    end: int
    sha256: str
    kind: str


class Store:
    """A read-only MemoryX store. ``Store(dir).get("fc1.weight")`` -> a read-only numpy view."""

    def __init__(self, path: str | os.PathLike):
        p = Path(path)
        self.dir = p.parent if p.name == STORE_FILE else p
        self.file = self.dir / STORE_FILE
        manifest = _read_manifest(self.dir / MANIFEST_FILE, self.file)
        self.tensors = _read_index(self.file, manifest)
        self._mm = _map(self.file)
        self._verified: set[str] = set()
        self.bytes_read = 0  # bytes handed out by get(): what weight streaming moved
        self.reads: dict[str, int] = {}  # per tensor: how many times it was read

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def names(self) -> list[str]:
        return list(self.tensors)

    def info(self, name: str) -> TensorInfo:
        info = self.tensors.get(name)
        if info is None:
            known = ", ".join(sorted(self.tensors)[:8]) + (", ..." if len(self.tensors) > 8 else "")
            raise StoreError(f"weight '{name}' is not in {self.file} (it holds: {known or 'nothing'})")
        return info

    def check(self, weights: Iterable[Weight]) -> None:
        """Every declared weight is in the store with its declared type (reads no tensor data)."""
        for w in weights:
            self._check_type(self.info(w.name), w.type)

    def get(self, name: str, expect: TensorType | None = None) -> np.ndarray:
        """The tensor ``name`` as a read-only array; its checksum is verified on its first read."""
        info = self.info(name)
        if expect is not None:
            self._check_type(info, expect)
        dt = NP_DTYPE[info.type.dtype]
        count = info.type.numel
        if count == 0:
            arr = np.empty(info.type.shape, dt)
            arr.flags.writeable = False
        else:
            arr = np.frombuffer(self._mm, dtype=dt, count=count, offset=info.begin).reshape(info.type.shape)
            if sys.byteorder == "big":  # the store is little-endian
                arr = arr.byteswap()
        if name not in self._verified:
            self._verify(info)
        self.bytes_read += info.end - info.begin
        self.reads[name] = self.reads.get(name, 0) + 1
        return arr

    def release(self, name: str) -> None:
        """Tell the OS the tensor's pages are not needed now. They are re-read from the file if touched
        again; without this, every page a run touches stays resident and memory grows to the whole model."""
        info = self.tensors.get(name)
        if self._mm is None or info is None or not hasattr(self._mm, "madvise"):
            return
        page = mmap.PAGESIZE
        start = info.begin // page * page
        try:
            self._mm.madvise(mmap.MADV_DONTNEED, start, info.end - start)
        except (OSError, ValueError, AttributeError):
            pass  # advice only: platforms without it keep the pages

    def _verify(self, info: TensorInfo) -> None:
        digest = hashlib.sha256(memoryview(self._mm)[info.begin : info.end] if self._mm else b"").hexdigest()
        if digest != info.sha256:
            raise StoreError(
                f"weight '{info.name}' in {STORE_FILE} does not match its sha256 in {MANIFEST_FILE}: "
                f"the store is corrupted ({self.dir})"
            )
        self._verified.add(info.name)

    def _check_type(self, info: TensorInfo, expect: TensorType) -> None:
        if info.type != expect:
            raise StoreError(
                f"weight '{info.name}' is declared {expect} in the WIR but is {info.type} in {self.file}: "
                "the store does not belong to this model"
            )

    def close(self) -> None:
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass  # arrays still view the map; it closes when the last of them is collected
            self._mm = None

    def __enter__(self):  # -> Self (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- reading -----------------------------------------------------------------------------------


class MemoryStore:
    """The Store interface (``check``, ``get``, ``release``) over in-memory arrays: running a model just
    compiled needs no weights file. Arrays are handed out read-only, as the MemoryX store does."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights = weights
        self.bytes_read = 0

    def check(self, declared: Iterable[Weight]) -> None:
        for w in declared:
            a = self.weights.get(w.name)
            if a is None or a.shape != w.type.shape or a.dtype != np_dtype(w.type):
                raise StoreError(f"weight '{w.name}' ({w.type}) is not among the compiled weights")

    def release(self, name: str) -> None:
        """Nothing to give back: the arrays are the caller's."""

    def get(self, name: str, expect: TensorType | None = None) -> np.ndarray:
        v = self.weights[name].view()
        v.flags.writeable = False
        self.bytes_read += v.nbytes
        return v

    def close(self) -> None:
        """Nothing to close: the arrays are the caller's."""


MAX_HEADER = 100 << 20  # the safetensors limit on the header's JSON
MAX_MANIFEST = 256 << 20
MAX_RANK = 64


def _read_manifest(path: Path, store_file: Path) -> dict:
    """manifest.json's tensors, each checked to be {"dtype", "shape", "sha256", "kind"} before use."""
    if not store_file.is_file():
        raise StoreError(f"no MemoryX store: '{store_file}' does not exist")
    try:
        if path.stat().st_size > MAX_MANIFEST:
            raise StoreError(
                f"'{path}' is {path.stat().st_size:,} bytes: more than a manifest can be ({MAX_MANIFEST:,})"
            )
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoreError(f"'{path}' is missing: a MemoryX store needs its manifest beside {STORE_FILE}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise StoreError(f"'{path}' is not a readable JSON manifest: {_why(e)}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("tensors"), dict):
        found = doc.get("format") if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
        raise StoreError(
            f"'{path}' is not a {FORMAT} manifest (format: {found!r}); expected "
            '{"format": "wafercc-memoryx/1", "tensors": {...}}'
        )
    for name, m in doc["tensors"].items():
        problem = _manifest_entry_problem(m)
        if problem:
            raise StoreError(
                f"'{path}': tensor '{name}' {problem}; expected "
                '{"dtype": "f32", "shape": [...], "sha256": "<64 hex digits>", "kind": "parameter"}'
            )
    return doc["tensors"]


def _manifest_entry_problem(m) -> str:
    if not isinstance(m, dict):
        return f"is a JSON {type(m).__name__}, not an object"
    if not isinstance(m.get("dtype"), str) or m["dtype"] not in {d.value for d in _ST_NAME}:
        return f"has dtype {m.get('dtype')!r}"
    if not _is_shape(m.get("shape")):
        return f"has shape {_short(m.get('shape'))}"
    sha = m.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        return f"has sha256 {_short(sha)}"
    if not isinstance(m.get("kind"), str) or m["kind"] not in KINDS:
        return f"has kind {_short(m.get('kind'))} (one of {', '.join(KINDS)})"
    return ""


def _is_shape(v) -> bool:
    return (
        isinstance(v, list)
        and len(v) <= MAX_RANK
        and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 62 for n in v)
    )


def _is_offsets(v) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in v)
        and v[0] <= v[1]
    )


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _why(e: BaseException) -> str:
    return "nested too deeply" if isinstance(e, RecursionError) else str(e)


def _read_index(file: Path, manifest: dict) -> dict[str, TensorInfo]:
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise StoreError(f"'{file}' is truncated: {size} bytes, not even a header length")
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size:
            raise StoreError(f"'{file}' is truncated: its header needs {8 + n} bytes, the file has {size}")
        if n > MAX_HEADER:
            raise StoreError(
                f"'{file}' has a {n:,}-byte header: more than a safetensors header can be ({MAX_HEADER:,})"
            )
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise StoreError(f"'{file}' has a malformed safetensors header: {_why(e)}") from None
    _check_header(file, header)
    base = 8 + n
    out = {}
    for name, h in header.items():
        info = _tensor_info(file, name, h, manifest.get(name), base)
        if info.end > size:
            raise StoreError(f"'{file}' is truncated: tensor '{name}' ends at byte {info.end}, the file has {size}")
        out[name] = info
    for name in manifest:
        if name not in out:
            raise StoreError(f"tensor '{name}' is listed in {MANIFEST_FILE} but missing from '{file}'")
    _check_disjoint(file, out)
    return out


def _check_disjoint(file: Path, tensors: dict[str, TensorInfo]) -> None:
    spans = sorted((i.begin, i.end, i.name) for i in tensors.values() if i.end > i.begin)
    for (_, end, a), (begin, _, b) in zip(spans, spans[1:]):
        if begin < end:
            raise StoreError(f"'{file}': tensors '{a}' and '{b}' overlap in the data section")


def _check_header(file: Path, header) -> None:
    """An object of tensor entries; its ``__metadata__`` (an object, if present) is taken out."""
    if not isinstance(header, dict):
        raise StoreError(
            f"'{file}' has a malformed safetensors header: a JSON {type(header).__name__}, expected "
            'an object {name: {"dtype", "shape", "data_offsets"}, ...}'
        )
    if not isinstance(header.pop("__metadata__", {}), dict):
        raise StoreError(f"'{file}' has a malformed safetensors header: __metadata__ is not an object")


def _tensor_info(file: Path, name: str, h, m: dict | None, base: int) -> TensorInfo:
    if m is None:
        raise StoreError(f"tensor '{name}' of '{file}' is not listed in {MANIFEST_FILE}")
    if not (
        isinstance(h, dict)
        and isinstance(h.get("dtype"), str)
        and h["dtype"] in _DTYPE_OF_ST
        and _is_shape(h.get("shape"))
        and _is_offsets(h.get("data_offsets"))
    ):
        raise StoreError(
            f"tensor '{name}' has a malformed entry in the header of '{file}': {_short(h)}; expected "
            '{"dtype": "F32", "shape": [sizes >= 0], "data_offsets": [begin, end]}'
        )
    dtype = _DTYPE_OF_ST[h["dtype"]]
    t = TensorType(tuple(h["shape"]), dtype)
    begin, end = h["data_offsets"]
    if end - begin != t.nbytes:
        raise StoreError(f"tensor '{name}' in '{file}': offsets [{begin}, {end}) do not hold {t} ({t.nbytes} bytes)")
    if m["dtype"] != dtype.value or list(m["shape"]) != list(t.shape):
        raise StoreError(f"tensor '{name}' is {t} in '{file}' but {m['dtype']}{m['shape']} in {MANIFEST_FILE}")
    return TensorInfo(name, t, base + begin, base + end, m["sha256"], m["kind"])


def _map(file: Path) -> mmap.mmap | None:
    with open(file, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return None
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


# -- writing -----------------------------------------------------------------------------------


def write_store(path: str | os.PathLike, tensors: dict[str, np.ndarray], kinds: dict[str, str] | None = None) -> None:
    """Write ``weights.safetensors`` and ``manifest.json`` into directory ``path``, each atomically.

    Deterministic bytes: sorted JSON keys, no timestamps, tensors in the given order. The data section
    starts 8-byte aligned (the header is padded with spaces, as the safetensors writer does); tensors
    are packed back to back because safetensors readers reject gaps between them. Missing ``kinds``
    entries default to "parameter". bf16 arrays are ml_dtypes.bfloat16.
    """
    kinds = kinds or {}
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {name: _raw(name, a) for name, a in tensors.items()}
    header: dict[str, object] = {"__metadata__": {"format": FORMAT}}
    manifest: dict[str, dict] = {}
    offset = 0
    for name, (raw, dtype) in arrays.items():
        kind = kinds.get(name, "parameter")
        if kind not in KINDS or name == "__metadata__":
            raise StoreError(f"tensor '{name}': kind must be one of {KINDS}, got {kind!r}")
        shape = list(np.shape(tensors[name]))
        header[name] = {"dtype": _ST_NAME[dtype], "shape": shape, "data_offsets": [offset, offset + raw.nbytes]}
        manifest[name] = {"dtype": dtype.value, "shape": shape, "kind": kind, "sha256": hashlib.sha256(raw).hexdigest()}
        offset += raw.nbytes
    hjson = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    hjson += b" " * (-(8 + len(hjson)) % 8)

    def write_weights(f):
        f.write(struct.pack("<Q", len(hjson)) + hjson)
        for raw, _ in arrays.values():
            f.write(raw)

    write_atomic(d / STORE_FILE, write_weights)
    text = json.dumps({"format": FORMAT, "tensors": manifest}, sort_keys=True, indent=1) + "\n"
    write_atomic(d / MANIFEST_FILE, text)


def _raw(name: str, a) -> tuple[np.ndarray, DType]:
    """The tensor's little-endian bytes (a flat uint8 view when possible) and its WIR dtype."""
    a = np.asarray(a)
    if a.dtype.byteorder in "<>":  # an explicit byte order: bring the values to native order first
        a = a.astype(a.dtype.newbyteorder("="))
    dtype = _DTYPE_OF_NP.get(a.dtype)
    if dtype is None:
        raise StoreError(f"tensor '{name}' has dtype {a.dtype}, which a MemoryX store cannot hold")
    a = np.ascontiguousarray(a)
    if sys.byteorder == "big":
        a = a.byteswap()
    return a.reshape(-1).view(np.uint8), dtype
