"""The MemoryX store for training: weights, fp32 masters and optimizer state in safetensors files, updated in
place, chunk by chunk, as gradients arrive; checkpoints committed atomically (docs/training.md).

A training store is a directory::

    checkpoint.json              the commit record: step, which slot, optimizer (and per-parameter overrides),
                                 data position, and per tensor its file, kind, dtype, shape and sha256 (the
                                 manifest of the checkpoint)
    slot0/weights.safetensors    parameters (in the dtype they stream in: f32 or bf16) and buffers
    slot0/masters.safetensors    fp32 master of every parameter that streams in a narrower dtype
    slot0/optimizer.safetensors  per parameter: "<name>/exp_avg", "<name>/exp_avg_sq", ("<name>/max_exp_avg_sq"),
                                 or "<name>/momentum_buffer"; and "<name>/step" (f32 scalar, as torch keeps it)
    slot1/...                    the same files, the same layout: the other generation
    grads.safetensors            the gradient accumulator (f32 per parameter): scratch, never part of a checkpoint

Two generations, one committed (named by checkpoint.json) and never written; the step after a commit reads
the committed slot and writes the other, and later steps update that one in place until the next commit,
which fsyncs it and renames a new checkpoint.json over the old one. A kill at any instant therefore leaves
checkpoint.json naming a complete, checksummed generation: the last commit. Every file is memory-mapped and
touched one chunk at a time; the pages of a chunk are given back to the OS after it (``MADV_DONTNEED``: on a
shared file mapping dirty pages stay in the page cache), so the process holds a few chunks, not the model.

    ts = TrainingStore.create("run/store", params, AdamW(lr=1e-3), weight_dtype="bf16")
    with TrainingStore("run/store") as ts:          # opens the last checkpoint: resume is opening
        step = ts.begin_step(micro_batches=4, clip_norm=1.0)
        for k in range(4):
            for name, offset, g in gradient_chunks(k):   # as the backward streams them out
                step.add_grad(name, g, offset)
            step.end_micro_batch()
        step.finish()
        ts.commit(data={"batch": 123})
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import hashlib
import json
import math
import mmap
import os
import shutil
import struct
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

from wafercc.ir import WaferError

from .artifacts import remove_dead_temps
from .errors import StoreError
from .optim import F32, Optimizer, OptimizerConfigError, from_dict

FORMAT = "wafercc-memoryx-train/1"
CHECKPOINT_FILE = "checkpoint.json"
GRADS_FILE = "grads.safetensors"
LOCK_FILE = ".lock"
FILES = ("weights", "masters", "optimizer")  # per slot, each <name>.safetensors
KINDS = ("parameter", "buffer", "master", "optimizer")
CHUNK = 1 << 18  # elements per chunk of an update (1 MiB of f32)
MAX_CHECKPOINT = 256 << 20
_FAULT_AROUND = 2 << 20  # fault-around maps a 64 KiB window, or a whole large folio (up to 2 MiB)
# A step gives back the pages it updated once this many bytes are pending, in one run per tensor, not chunk by
# chunk: each MADV_DONTNEED costs a TLB shootdown on every core the process runs on, and with the optimizer on
# its own thread (runtime/training.py) one per chunk and tensor (GPT-2 small: 4,750 a step) stalled the backward.
RELEASE_BYTES = 16 << 20
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # Linux 5.14; Python 3.11's mmap lacks the name

_KILL_ENV = "WAFERCC_TEST_KILL_AT"  # fault injection: os._exit(86) at the point of this name (tests/training)
_TRACE_ENV = "WAFERCC_TEST_TRACE_POINTS"  # a file to which every point's name is appended

_DT = {  # WIR dtype name -> (safetensors name, numpy dtype)
    "f64": ("F64", np.dtype(np.float64)),
    "f32": ("F32", np.dtype(np.float32)),
    "f16": ("F16", np.dtype(np.float16)),
    "bf16": ("BF16", np.dtype(ml_dtypes.bfloat16)),
    "i64": ("I64", np.dtype(np.int64)),
    "i32": ("I32", np.dtype(np.int32)),
    "i16": ("I16", np.dtype(np.int16)),
    "i8": ("I8", np.dtype(np.int8)),
    "u8": ("U8", np.dtype(np.uint8)),
    "bool": ("BOOL", np.dtype(np.bool_)),
}
_DT_OF_NP = {v[1]: k for k, v in _DT.items()}
_STREAM_DTYPES = ("f32", "bf16", "f16")


class TrainingStoreError(StoreError):
    """A training store that is missing, malformed, corrupted, or in use by another process."""


class TrainingStepError(WaferError, ValueError):
    """A training step fed the wrong way: an unknown parameter, a gradient of the wrong size or dtype, a chunk
    outside its tensor or delivered twice, a micro-batch that left a gradient half delivered."""


def _point(name: str) -> None:
    """A point where a kill must leave the last checkpoint readable; tests kill the process here."""
    trace = os.environ.get(_TRACE_ENV)
    if trace:
        with open(trace, "a") as f:
            f.write(name + "\n")
    if os.environ.get(_KILL_ENV) == name:
        os._exit(86)


# -- file layout -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One tensor of a store file: where it is, and what the checkpoint promises about it."""

    name: str
    dtype: str  # WIR name: f32, bf16, ...
    shape: tuple[int, ...]
    kind: str
    begin: int = 0  # absolute file offsets
    end: int = 0
    of: str | None = None  # optimizer state and masters: the parameter they belong to

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def np_dtype(self) -> np.dtype:
        return _DT[self.dtype][1]


def _layout(entries: list[Entry]) -> tuple[bytes, list[Entry], int]:
    """The safetensors header (8-byte length + JSON padded to 8 bytes) for ``entries``, the entries with their
    offsets, and the file size. Order: widest dtype first, then by name, so every tensor is aligned to its
    element size; the layout depends only on the set of tensors, so both slots and every reopening agree."""
    ordered = sorted(entries, key=lambda e: (-e.np_dtype.itemsize, e.name))
    header: dict[str, object] = {"__metadata__": {"format": FORMAT}}
    off = 0
    spans = []
    for e in ordered:
        n = e.numel * e.np_dtype.itemsize
        header[e.name] = {"dtype": _DT[e.dtype][0], "shape": list(e.shape), "data_offsets": [off, off + n]}
        spans.append((off, off + n))
        off += n
    hjson = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    hjson += b" " * (-(8 + len(hjson)) % 8)
    head = struct.pack("<Q", len(hjson)) + hjson
    base = len(head)
    placed = [Entry(e.name, e.dtype, e.shape, e.kind, base + a, base + b, e.of) for e, (a, b) in zip(ordered, spans)]
    return head, placed, base + off


class _File:
    """A store file memory-mapped read-write; tensors as flat numpy views; pages given back by range."""

    def __init__(self, path: Path, entries: list[Entry], create: bool = False):
        self.path = path
        head, placed, size = _layout(entries)
        self.entries = {e.name: e for e in placed}
        if create:
            with open(path, "wb") as f:
                f.write(head)
                f.truncate(size)
                _reserve(f.fileno(), size, path)
        try:
            self.fd = os.open(path, os.O_RDWR)
        except OSError as e:
            raise TrainingStoreError(f"cannot open '{path}': {e.strerror}") from None
        actual = os.fstat(self.fd).st_size
        found = os.pread(self.fd, len(head), 0)
        if found != head or actual != size:
            os.close(self.fd)
            why = (
                "its header does not match checkpoint.json"
                if found != head
                else f"it is {actual} bytes, the layout needs {size}"
            )
            raise TrainingStoreError(f"'{path}' does not belong to this store: {why}")
        self.mm = mmap.mmap(self.fd, size) if size else None

    def array(self, name: str) -> np.ndarray:
        """The whole tensor, flat and writeable (a view of the file)."""
        e = self.entries[name]
        if e.numel == 0:
            return np.empty(0, e.np_dtype)
        return np.frombuffer(self.mm, dtype=e.np_dtype, count=e.numel, offset=e.begin)

    def release(self, name: str, lo: int = 0, hi: int | None = None) -> None:
        """Give back the pages holding elements [lo, hi) of ``name`` (dirty ones stay in the page cache)."""
        e = self.entries[name]
        isz = e.np_dtype.itemsize
        hi = e.numel if hi is None else hi
        if hi > lo:
            self._release_bytes(e.begin + lo * isz, e.begin + hi * isz)

    def prepare_write(self, name: str, lo: int, hi: int) -> None:
        """Map the pages of elements [lo, hi) of ``name`` writable in one call (MADV_POPULATE_WRITE, Linux
        5.14+; nothing where it is missing). Otherwise the first write to each 4 KiB page of a shared file
        mapping takes its own fault, even after a read mapped it: 4 faults per KiB of an update that reads
        and writes parameters and optimizer state (measured: 256 MB updated in 1 MiB chunks, 0.14 s and 11k
        faults -> 0.07 s and 3k)."""
        e = self.entries[name]
        isz = e.np_dtype.itemsize
        if self.mm is None or hi <= lo:
            return
        page = mmap.PAGESIZE
        a = (e.begin + lo * isz) // page * page
        b = min(-(-(e.begin + hi * isz) // page) * page, len(self.mm))
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.mm.madvise(_MADV_POPULATE_WRITE, a, b - a)

    def sha256(self, name: str, chunk_bytes: int) -> str:
        e = self.entries[name]
        h = hashlib.sha256()
        for a in range(e.begin, e.end, chunk_bytes):
            b = min(a + chunk_bytes, e.end)
            h.update(memoryview(self.mm)[a:b])
            self._release_bytes(a, b)
        return h.hexdigest()

    def _release_bytes(self, a: int, b: int) -> None:
        """MADV_DONTNEED over bytes [a, b) and _FAULT_AROUND either side: a page fault maps more than its
        page (fault-around maps the cached pages of an aligned 64 KiB window; a large folio, up to 2 MiB, is
        mapped whole), so touching a chunk maps some of its neighbours' pages too, which would otherwise stay
        mapped and add up to the model's size (measured: 40 MB of a 250 MB store without the margin)."""
        if self.mm is None or b <= a:
            return
        page = mmap.PAGESIZE
        a0 = max(0, a - _FAULT_AROUND) // page * page
        b0 = min(-(-(b + _FAULT_AROUND) // page) * page, len(self.mm))
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.mm.madvise(mmap.MADV_DONTNEED, a0, b0 - a0)

    def sync(self) -> None:
        if self.mm is not None:
            self.mm.flush()
        os.fsync(self.fd)

    def close(self) -> None:
        if self.mm is not None:
            with contextlib.suppress(BufferError):
                self.mm.close()  # arrays still viewing it keep it open until they are collected
            self.mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _check_chunk(chunk) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise TrainingStoreError(f"chunk must be a positive number of elements, got {chunk!r}")
    return chunk


def _reserve(fd: int, size: int, path: Path) -> None:
    """Allocate the file's blocks now: a write through a memory map to a block the disk cannot provide kills the
    process (SIGBUS), so a full disk must show at creation, as an error, not half way through a step."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TrainingStoreError(f"not enough disk space for '{path}': it needs {size:,} bytes") from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise TrainingStoreError(f"cannot allocate '{path}': {e.strerror}") from None
    except AttributeError:  # no posix_fallocate (macOS): the file stays sparse
        pass


def _scratch(path: Path, entries: list[Entry]) -> _File:
    """A file whose contents no checkpoint needs (the other generation, the accumulator): opened if it has
    the right layout, made anew otherwise."""
    if path.is_file():
        with contextlib.suppress(TrainingStoreError):
            return _File(path, entries)
    path.parent.mkdir(exist_ok=True)
    return _File(path, entries, create=True)


# -- the store ---------------------------------------------------------------------------------------


@dataclass
class StepResult:
    """What one optimizer step did: its number, the parameters it updated, and the clipping it applied."""

    step: int
    updated: list[str]
    total_norm: float | None = None  # the gradients' global 2-norm (only when clipping)
    clip_coef: float | None = None  # min(max_norm / (total_norm + 1e-6), 1)


class TrainingStore:
    """An open training store at its last checkpoint (the lock file makes it this process's alone)."""

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        params: dict[str, np.ndarray],
        optimizer: Optimizer,
        buffers: dict[str, np.ndarray] | None = None,
        weight_dtype: str | dict[str, str] = "f32",
        data: dict | None = None,
        chunk: int = CHUNK,
        overrides: dict[str, Optimizer] | None = None,
        state: dict[str, dict] | None = None,
    ) -> TrainingStore:
        """Make a store at ``path`` (which must not exist, or be an empty directory) holding checkpoint 0 and
        open it. ``params`` are the trainable tensors (float; their values become the fp32 masters);
        ``weight_dtype`` is the dtype they stream in ("f32", "bf16" or "f16"; one for all, or per name): a
        narrower one gets an fp32 master and the streamed weight is the master rounded to nearest even.
        ``buffers`` are stored as given and never updated by the optimizer. ``overrides``: other settings of
        the same optimizer for some parameters (torch's parameter groups: no weight decay on biases).
        ``state``: optimizer state to start from, per parameter as torch's ``optimizer.state[p]`` holds it
        ({"exp_avg", "exp_avg_sq", "step"} or {"momentum_buffer"}, arrays or numbers); missing: zeros, step 0."""
        overrides = _check_optimizers(optimizer, overrides or {}, params)
        _check_chunk(chunk)
        target = Path(path)
        buffers = buffers or {}
        tensors = _initial_tensors(params, buffers, lambda n: overrides.get(n, optimizer), weight_dtype, state or {})
        if target.exists() and not (target.is_dir() and not any(target.iterdir())):
            raise TrainingStoreError(
                f"cannot create a training store at '{target}': it exists and is not an "
                "empty directory; nothing was written"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_temps(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.wafercc-tmp-{os.getpid()}-", dir=target.parent))
        try:
            _write_initial(tmp, tensors, _optimizer_doc(optimizer, overrides), data or {})
            tmp.chmod(0o755)  # mkdtemp makes it private; a store is an ordinary directory
            _point("create:written")
            if target.exists():
                target.rmdir()
            os.rename(tmp, target)
            _fsync_dir(target.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _point("create:renamed")
        return cls(target, chunk=chunk)

    def __init__(self, path: str | os.PathLike, verify: bool = True, chunk: int = CHUNK):
        self.dir = Path(path)
        if not (self.dir / CHECKPOINT_FILE).is_file():
            raise TrainingStoreError(f"'{self.dir}' is not a training store: it has no {CHECKPOINT_FILE}")
        self.chunk = _check_chunk(chunk)
        self._lock_fd = _lock(self.dir)
        self._files: list[dict[str, _File]] = []
        try:
            self._open(verify)
        except BaseException:
            self.close()
            raise

    def _open(self, verify: bool) -> None:
        for p in self.dir.glob(f".{CHECKPOINT_FILE}.*.tmp"):  # a killed commit's half-written record
            p.unlink(missing_ok=True)
        doc = _read_checkpoint(self.dir / CHECKPOINT_FILE)
        self.optimizer: Optimizer = from_dict(doc["optimizer"])
        self.overrides: dict[str, Optimizer] = {n: from_dict(d) for n, d in doc["overrides"].items()}
        self.step: int = doc["step"]
        self.data: dict = doc["data"]
        self.committed = self.current = doc["slot"]
        self._entries = {
            f: [
                Entry(n, m["dtype"], tuple(m["shape"]), m["kind"], of=m.get("of")) for n, m in doc["tensors"][f].items()
            ]
            for f in FILES
        }
        self._sha: list[dict[tuple[str, str], str | None]] = [{}, {}]
        self._sha[self.committed] = {(f, n): m["sha256"] for f in FILES for n, m in doc["tensors"][f].items()}
        for slot in (0, 1):
            d = self.dir / f"slot{slot}"
            files = {}
            for f in FILES:
                path = d / f"{f}.safetensors"
                files[f] = _File(path, self._entries[f]) if slot == self.committed else _scratch(path, self._entries[f])
            self._files.append(files)
        grads = [Entry(e.name, "f32", e.shape, "parameter") for e in self._entries["weights"] if e.kind == "parameter"]
        self._grads = _scratch(self.dir / GRADS_FILE, grads)
        self.params = [e.name for e in self._entries["weights"] if e.kind == "parameter"]
        self.buffers = [e.name for e in self._entries["weights"] if e.kind == "buffer"]
        self._masters = {e.of for e in self._entries["masters"]}
        self._active: StepUpdate | None = None
        if verify:
            self.verify()

    # -- reading -----------------------------------------------------------------------------------

    def verify(self) -> None:
        """Check every tensor of the committed generation against its sha256 (chunk by chunk)."""
        files = self._files[self.committed]
        for (f, name), sha in self._sha[self.committed].items():
            if files[f].sha256(name, self.chunk * 4) != sha:
                raise TrainingStoreError(
                    f"tensor '{name}' in slot{self.committed}/{f}.safetensors does not match "
                    f"its sha256 in {CHECKPOINT_FILE}: the checkpoint is corrupted ({self.dir})"
                )

    def weight(self, name: str) -> np.ndarray:
        """The streamed weight (parameter or buffer) as it is now, read-only, in its shape."""
        return self._view("weights", name)

    def master(self, name: str) -> np.ndarray:
        """The fp32 value the optimizer updates: the master, or the weight itself when it streams as f32."""
        return self._view("masters" if name in self._masters else "weights", name)

    def state(self, name: str) -> dict[str, np.ndarray]:
        """The optimizer state of parameter ``name`` (read-only views), with "step" as a 0-d float32."""
        if name not in self.params:
            raise TrainingStepError(f"'{name}' is not a parameter of this store")
        out = {k: self._view("optimizer", f"{name}/{k}") for k in self.optimizer_for(name).state_names()}
        out["step"] = self._view("optimizer", f"{name}/step")
        return out

    def release(self, name: str) -> None:
        """Give back the pages of a weight read with ``weight`` (it is re-read from the file if touched)."""
        self._files[self.current]["weights"].release(name)

    def _view(self, f: str, name: str) -> np.ndarray:
        files = self._files[self.current]
        if name not in files[f].entries:
            raise TrainingStepError(f"'{name}' is not in {f}.safetensors of this store")
        a = files[f].array(name).reshape(files[f].entries[name].shape)
        a.flags.writeable = False
        return a

    # -- updating ----------------------------------------------------------------------------------

    def optimizer_for(self, name: str) -> Optimizer:
        """The settings parameter ``name`` is updated with."""
        return self.overrides.get(name, self.optimizer)

    def set_optimizer(self, optimizer: Optimizer, overrides: dict[str, Optimizer] | None = None) -> None:
        """New settings from the next step on (a learning-rate schedule: ``dataclasses.replace(ts.optimizer,
        lr=...)``, and the same for each override, which are replaced as a whole); saved by the next commit.
        The kind of state must not change (no SGD -> AdamW, no amsgrad switched on): the store holds the state
        the old settings made."""
        if self._active is not None:
            raise TrainingStepError(f"step {self.step + 1} has begun: change the optimizer between steps")
        overrides = _check_optimizers(optimizer, overrides or {}, self.params)
        for name in self.params:
            old, new = self.optimizer_for(name), overrides.get(name, optimizer)
            if new.kind != old.kind or new.state_names() != old.state_names():
                raise OptimizerConfigError(
                    f"parameter '{name}' has {old.kind} state ({', '.join(old.state_names()) or 'none'}); "
                    f"{new.kind} with {', '.join(new.state_names()) or 'no state'} cannot use it"
                )
        self.optimizer, self.overrides = optimizer, overrides

    def rollback(self) -> None:
        """Forget everything since the last commit (a step that failed half way included): the store is at its
        last checkpoint again, as reopening it would find it."""
        doc = _read_checkpoint(self.dir / CHECKPOINT_FILE)
        self.optimizer = from_dict(doc["optimizer"])
        self.overrides = {n: from_dict(d) for n, d in doc["overrides"].items()}
        self.step, self.data = doc["step"], doc["data"]
        self.current = self.committed
        self._sha[1 - self.committed] = {}
        self._active = None

    def begin_step(self, micro_batches: int = 1, clip_norm: float | None = None) -> StepUpdate:
        """Start optimizer step ``self.step + 1``: gradients of ``micro_batches`` micro-batches are summed
        and divided by their number (the mean of the micro-batch losses), clipped to global norm
        ``clip_norm`` if given, then applied."""
        if self._active is not None:
            raise TrainingStepError(f"step {self.step + 1} has begun and not finished: call finish() first")
        self._active = StepUpdate(self, micro_batches, clip_norm)
        return self._active

    def set_buffer(self, name: str, value: np.ndarray) -> None:
        """Write a buffer's new value (batch norm's running statistics) during a step."""
        if self._active is None:
            raise TrainingStepError("set_buffer belongs to a step: call begin_step() first")
        if name not in self.buffers:
            raise TrainingStepError(f"'{name}' is not a buffer of this store")
        e = self._files[self._active.work]["weights"].entries[name]
        v = np.asarray(value)
        if v.shape != e.shape or v.dtype != e.np_dtype:
            raise TrainingStepError(f"buffer '{name}' is {e.dtype}{list(e.shape)}, got {v.dtype}{list(v.shape)}")
        self._files[self._active.work]["weights"].array(name)[...] = v.reshape(-1)
        self._active._written.add(("weights", name))
        self._sha[self._active.work][("weights", name)] = hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()

    def commit(self, data: dict | None = None) -> int:
        """Make the current state the checkpoint, atomically: every tensor's sha256, the files fsynced, then
        one rename of checkpoint.json. ``data``: JSON the caller needs to resume (data position, RNG state).
        Returns the step committed."""
        if self._active is not None:
            raise TrainingStepError(f"step {self.step + 1} has begun and not finished: call finish() before commit")
        if data is not None:
            try:
                json.dumps(data)
            except (TypeError, ValueError) as e:
                raise TrainingStepError(f"commit data must be JSON (a dict of numbers, strings, lists): {e}") from None
            self.data = data
        slot = self.current
        files = self._files[slot]
        shas = self._sha[slot]
        for f in FILES:
            for name in files[f].entries:
                if shas.get((f, name)) is None:
                    shas[(f, name)] = files[f].sha256(name, self.chunk * 4)
        _point(f"commit{self.step}:hashed")
        for f in FILES:
            files[f].sync()
        _fsync_dir(self.dir / f"slot{slot}")
        _point(f"commit{self.step}:synced")
        doc = {
            "format": FORMAT,
            "step": self.step,
            "slot": slot,
            **_optimizer_doc(self.optimizer, self.overrides),
            "data": self.data,
            "tensors": {
                f: {
                    e.name: {
                        "dtype": e.dtype,
                        "shape": list(e.shape),
                        "kind": e.kind,
                        "sha256": shas[(f, e.name)],
                        **({"of": e.of} if e.of else {}),
                    }
                    for e in sorted(files[f].entries.values(), key=lambda e: e.name)
                }
                for f in FILES
            },
        }
        _write_json_atomic(self.dir / CHECKPOINT_FILE, doc, f"commit{self.step}:written")
        _point(f"commit{self.step}:renamed")
        self.committed = slot
        return self.step

    def close(self) -> None:
        for files in self._files:
            for f in files.values():
                f.close()
        self._files = []
        if getattr(self, "_grads", None) is not None:
            self._grads.close()
            self._grads = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StepUpdate:
    """One optimizer step, fed gradient chunks as the backward streams them out (``TrainingStore.begin_step``).

    Micro-batches before the last are summed into the accumulator file. In the last, each arriving chunk is
    added to its sum and divided by the number of micro-batches; without clipping it is applied at once (the
    streaming update: no gradient is kept), with clipping it is stored back and its squares summed, and
    ``finish`` applies all updates once the global norm is known.

    ``add_grad`` may be called from several threads at once with distinct chunks (the update is elementwise,
    so the order chunks arrive in does not change a bit: the sum of squares is taken with ``math.fsum``);
    ``end_micro_batch`` and ``finish`` are called once every ``add_grad`` of the micro-batch has returned."""

    def __init__(self, store: TrainingStore, micro_batches: int, clip_norm: float | None):
        if isinstance(micro_batches, bool) or not isinstance(micro_batches, int) or micro_batches < 1:
            raise TrainingStepError(f"micro_batches must be an integer >= 1, got {micro_batches!r}")
        if clip_norm is not None and (
            isinstance(clip_norm, bool)
            or not isinstance(clip_norm, (int, float))
            or not math.isfinite(clip_norm)
            or clip_norm < 0
        ):
            raise TrainingStepError(f"clip_norm must be a finite number >= 0 (or none), got {clip_norm!r}")
        self.s = store
        self.K = micro_batches
        self.clip = None if clip_norm is None else float(clip_norm)
        self.number = store.step + 1
        self.src = store.current
        self.work = 1 - store.committed if store.current == store.committed else store.current
        self.k = 0
        self._contrib = {n: 0 for n in store.params}  # micro-batches that delivered the parameter's gradient
        self._cover: dict[str, list[tuple[int, int]]] = {}
        self._averaged: set[str] = set()  # accumulator holds the mean (last micro-batch seen)
        self._updated: set[str] = set()
        self._t: dict[str, int] = {}  # the step number each parameter takes (its own count + 1)
        self._written: set[tuple[str, str]] = set()
        self._sq: list[float] = []
        self._chunks = 0
        self._lock = threading.Lock()  # the bookkeeping shared by threads feeding chunks
        self._runs: dict[tuple[int, str], list] = {}  # (file, tensor) -> [file, tensor, lo, hi]: pages to give back
        self._pending = 0  # their bytes
        self._numel = {e.name: e.numel for e in store._entries["weights"]}

    # -- feeding -----------------------------------------------------------------------------------

    def add_grad(self, name: str, grad: np.ndarray, offset: int = 0) -> None:
        """The gradient of elements [offset, offset + grad.size) of parameter ``name`` (flat, row-major order)
        in the current micro-batch (f32, bf16 or f16; computed in f32)."""
        self._live()
        if self.k >= self.K:
            raise TrainingStepError(f"step {self.number} has had its {self.K} micro-batch(es): call finish()")
        if name not in self._contrib:
            raise TrainingStepError(f"'{name}' is not a trainable parameter of this store")
        g = np.asarray(grad)
        if g.dtype not in (np.float32, np.float16, ml_dtypes.bfloat16):
            raise TrainingStepError(f"gradient of '{name}' is {g.dtype}; MemoryX takes f32, bf16 or f16")
        g = g.reshape(-1)
        n = self._numel[name]
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0 or offset + g.size > n:
            raise TrainingStepError(
                f"gradient chunk [{offset}, {offset + g.size}) of '{name}' is outside its {n} elements"
            )
        lo, hi = int(offset), int(offset) + g.size
        with self._lock:
            spans = self._cover.setdefault(name, [])  # sorted, disjoint
            if hi > lo:
                i = bisect.bisect_left(spans, (lo, hi))
                if (i > 0 and spans[i - 1][1] > lo) or (i < len(spans) and spans[i][0] < hi):
                    raise TrainingStepError(
                        f"gradient chunk [{lo}, {hi}) of '{name}' overlaps one already delivered in micro-batch "
                        f"{self.k}"
                    )
                spans.insert(i, (lo, hi))
        for a in range(0, g.size, self.s.chunk):
            self._take(name, lo + a, g[a : a + self.s.chunk].astype(F32, copy=False))

    def _take(self, name: str, lo: int, g: np.ndarray) -> None:
        hi = lo + g.size
        acc = self.s._grads.array(name)[lo:hi]
        first = self._contrib[name] == 0
        if self.k < self.K - 1:
            if first:
                acc[...] = g
            else:
                acc += g
        else:
            total = g if first else acc + g  # p.grad += g, as autograd accumulates
            mean = total / F32(self.K) if self.K > 1 else total
            if self.clip is None:
                self._update(name, lo, hi, mean)
                self._tick()
                return  # the accumulator was not touched
            acc[...] = mean
            self._square(mean)
        self._release(self.s._grads, name, lo, hi)
        self._tick()

    def end_micro_batch(self) -> None:
        """Every gradient of this micro-batch has been delivered; each parameter's completely or not at all."""
        self._live()
        for name, spans in self._cover.items():
            got = sum(b - a for a, b in spans)
            if got != self._numel[name]:
                raise TrainingStepError(
                    f"micro-batch {self.k} delivered {got} of the {self._numel[name]} gradient elements of '{name}'"
                )
            self._contrib[name] += 1
            if self.k == self.K - 1:
                self._averaged.add(name)
        self._cover = {}
        self.k += 1
        self._release_all()

    def finish(self) -> StepResult:
        """Apply what remains of the step (all of it when clipping) and make the result the current state."""
        self._live()
        if self.k != self.K:
            raise TrainingStepError(
                f"step {self.number} has seen {self.k} of its {self.K} micro-batches; call end_micro_batch() after each"
            )
        with_grad = [n for n in self.s.params if self._contrib[n] > 0]
        for name in with_grad:  # gradients of earlier micro-batches only: take their mean now
            if name not in self._averaged:
                self._chunked(name, self._mean_in_place)
        norm = coef = None
        if self.clip is not None:
            norm, coef = clip_coefficient(math.sqrt(math.fsum(self._sq)), self.clip)
        for name in with_grad:
            if name not in self._updated:
                self._chunked(name, lambda n, a, b, c=coef: self._update(n, a, b, self._from_acc(n, a, b, c)))
        for name in with_grad:
            self._write_step(name)
        self._release_all()
        self._copy_untouched()
        _point(f"step{self.number}:finished")
        self.s.current = self.work
        self.s.step = self.number
        self.s._active = None
        return StepResult(
            self.number, with_grad, None if norm is None else float(norm), None if coef is None else float(coef)
        )

    def _live(self) -> None:
        if self.s._active is not self:
            raise TrainingStepError(f"step {self.number} is over (finished or rolled back); begin a new one")

    # -- the pieces --------------------------------------------------------------------------------

    def _chunked(self, name: str, fn) -> None:
        n = self._numel[name]
        for a in range(0, n, self.s.chunk):
            fn(name, a, min(a + self.s.chunk, n))

    def _mean_in_place(self, name: str, lo: int, hi: int) -> None:
        acc = self.s._grads.array(name)[lo:hi]
        if self.K > 1:
            acc /= F32(self.K)
        if self.clip is not None:
            self._square(acc)
        self._release(self.s._grads, name, lo, hi)
        self._tick()

    def _from_acc(self, name: str, lo: int, hi: int, coef) -> np.ndarray:
        g = self.s._grads.array(name)[lo:hi].copy()
        self._release(self.s._grads, name, lo, hi)
        if coef is not None:
            g *= coef  # torch._foreach_mul_(grads, clip_coef_clamped)
        return g

    def _square(self, g: np.ndarray) -> None:
        """The chunk's sum of squares, for the global norm. numpy's pairwise sum, not ``np.dot``: OpenBLAS
        splits a long dot product over its threads, and the thread count is global to the process (the
        interpreter's thread sets it around its products while this runs on the optimizer's), so a dot could
        round differently from one run to the next."""
        g64 = g.astype(np.float64)
        self._sq.append(float(np.add.reduce(np.square(g64, out=g64))))

    def _update(self, name: str, lo: int, hi: int, g: np.ndarray) -> None:
        """Elements [lo, hi) of parameter ``name`` take their update: read from the source generation, written
        to the working one (the same one after the first step since a commit)."""
        s, opt = self.s, self.s.optimizer_for(name)
        src, dst = s._files[self.src], s._files[self.work]
        with self._lock:
            t = self._t.get(name)
            if t is None:
                t = self._t[name] = int(src["optimizer"].array(f"{name}/step")[0]) + 1
        pf = "masters" if name in s._masters else "weights"
        targets = [(pf, name)] + [("optimizer", f"{name}/{k}") for k in opt.state_names()]
        views = {}
        for f, tname in targets:
            dst[f].prepare_write(tname, lo, hi)
            out = dst[f].array(tname)[lo:hi]
            if self.src != self.work:
                out[...] = src[f].array(tname)[lo:hi]
            views[(f, tname)] = out
        state = {k: views[("optimizer", f"{name}/{k}")] for k in opt.state_names()}
        p = views[(pf, name)]
        opt.step_chunk(p, g, state, t)
        if pf == "masters":
            dst["weights"].prepare_write(name, lo, hi)
            w = dst["weights"].array(name)[lo:hi]
            with np.errstate(over="ignore"):  # beyond f16's range: infinity, as torch's .to(torch.float16)
                w[...] = p.astype(w.dtype)  # round to nearest even, as torch's .to(torch.bfloat16)
            targets.append(("weights", name))
            views[("weights", name)] = w
        for f, tname in targets:
            self._mark_written(f, tname)
            self._release(dst[f], tname, lo, hi)
            if self.src != self.work:
                self._release(src[f], tname, lo, hi)
        self._updated.add(name)
        self._tick()

    def _write_step(self, name: str) -> None:
        key = ("optimizer", f"{name}/step")
        arr = self.s._files[self.work]["optimizer"].array(key[1])
        arr[0] = F32(self._t[name])
        self._written.add(key)
        self.s._sha[self.work][key] = hashlib.sha256(arr.tobytes()).hexdigest()

    def _mark_written(self, f: str, name: str) -> None:
        """A tensor of the working slot was written: its sha256 is now unknown. ``commit`` hashes what it
        commits, once; hashing as chunks are written would hash every step's bytes when only the last
        step before a commit is kept (100 steps per checkpoint by default, docs/training.md)."""
        key = (f, name)
        self._written.add(key)
        self.s._sha[self.work][key] = None

    def _copy_untouched(self) -> None:
        """A step that began at the committed generation writes the other one: what it did not update is
        copied there (its checksum is the committed one)."""
        if self.src == self.work:
            return
        s = self.s
        src, dst = s._files[self.src], s._files[self.work]
        for f in FILES:
            for name, e in dst[f].entries.items():
                if (f, name) in self._written:
                    continue
                a, b = src[f].array(name), dst[f].array(name)
                for lo in range(0, e.numel, s.chunk):
                    hi = min(lo + s.chunk, e.numel)
                    b[lo:hi] = a[lo:hi]
                    src[f].release(name, lo, hi)
                    dst[f].release(name, lo, hi)
                    self._tick()
                s._sha[self.work][(f, name)] = s._sha[self.src][(f, name)]

    def _release(self, file: _File, name: str, lo: int, hi: int) -> None:
        """Give back the pages of elements [lo, hi) of ``name`` in ``file``, with the others pending once
        RELEASE_BYTES are (a run that does not continue its tensor's pending run gives that one back first)."""
        with self._lock:
            key = (id(file), name)
            run = self._runs.get(key)
            if run is not None and run[3] == lo:
                run[3] = hi
            else:
                if run is not None:
                    file.release(name, run[2], run[3])
                run = self._runs[key] = [file, name, lo, hi]
            self._pending += (hi - lo) * file.entries[name].np_dtype.itemsize
            if self._pending >= RELEASE_BYTES:
                self._release_runs()

    def _release_all(self) -> None:
        with self._lock:
            self._release_runs()

    def _release_runs(self) -> None:
        for file, name, lo, hi in self._runs.values():
            file.release(name, lo, hi)
        self._runs, self._pending = {}, 0

    def _tick(self) -> None:
        with self._lock:
            self._chunks += 1
            _point(f"step{self.number}:chunk{self._chunks}")


def clip_coefficient(total_norm: float, max_norm: float) -> tuple[np.float32, np.float32]:
    """torch.nn.utils.clip_grad_norm_'s arithmetic from the total norm: the norm as float32, and
    ``clamp(max_norm / (total_norm + 1e-6), max=1)`` as torch evaluates it on float32 tensors
    (``max_norm / t`` is ``t.reciprocal() * max_norm``)."""
    norm = F32(total_norm)
    denom = norm + F32(1e-6)
    coef = (F32(1) / denom) * F32(max_norm)
    return norm, min(coef, F32(1.0)) if not np.isnan(coef) else coef


# -- creating ----------------------------------------------------------------------------------------


def _check_optimizers(optimizer, overrides, params) -> dict[str, Optimizer]:
    for name, opt in [(None, optimizer), *overrides.items()]:
        if not isinstance(opt, Optimizer):
            what = "" if name is None else f" for '{name}'"
            raise OptimizerConfigError(f"not an optimizer{what}: {opt!r} (use runtime.optim.SGD or AdamW)")
        if name is not None and name not in params:
            raise OptimizerConfigError(f"optimizer settings for '{name}', which is not a parameter")
        if opt.kind != optimizer.kind:
            raise OptimizerConfigError(
                f"'{name}' has {opt.kind} settings but the optimizer is {optimizer.kind}: "
                "one optimizer, whose settings may differ per parameter"
            )
    return dict(overrides)


def _optimizer_doc(optimizer, overrides) -> dict:
    return {"optimizer": optimizer.to_dict(), "overrides": {n: o.to_dict() for n, o in sorted(overrides.items())}}


def _initial_tensors(params, buffers, optimizer_for, weight_dtype, state) -> dict[str, list]:
    """Per file, its entries and initial values (None: zeros)."""
    if not isinstance(params, dict) or not params:
        raise TrainingStoreError("a training store needs at least one parameter (a dict name -> array)")
    out: dict[str, list] = {f: [] for f in FILES}
    names = set()
    for name, value in list(params.items()) + list(buffers.items()):
        if not isinstance(name, str) or not name or "/" in name or name == "__metadata__" or name in names:
            raise TrainingStoreError(
                f"tensor name {name!r} cannot be stored (names are unique, non-empty, without '/')"
            )
        names.add(name)
    for name, value in params.items():
        a = np.asarray(value)
        if a.dtype not in (np.float32, np.float16, ml_dtypes.bfloat16, np.float64):
            raise TrainingStoreError(f"parameter '{name}' is {a.dtype}: trainable parameters are floating point")
        wd = weight_dtype.get(name, "f32") if isinstance(weight_dtype, dict) else weight_dtype
        if wd not in _STREAM_DTYPES:
            raise TrainingStoreError(
                f"parameter '{name}': weight dtype must be one of {', '.join(_STREAM_DTYPES)}, got {wd!r}"
            )
        master = np.asarray(a, F32)  # no copy of what is already f32
        shape = tuple(a.shape)
        if wd == "f32":
            out["weights"].append((Entry(name, "f32", shape, "parameter"), master))
        else:
            with np.errstate(over="ignore"):
                out["weights"].append((Entry(name, wd, shape, "parameter"), master.astype(_DT[wd][1])))
            out["masters"].append((Entry(name, "f32", shape, "master", of=name), master))
        out["optimizer"] += _initial_state(name, shape, optimizer_for(name), state.get(name))
    for name in state:
        if name not in params:
            raise TrainingStoreError(f"optimizer state given for '{name}', which is not a parameter")
    for name, value in buffers.items():
        a = np.asarray(value)
        if a.dtype not in _DT_OF_NP:
            raise TrainingStoreError(f"buffer '{name}' has dtype {a.dtype}, which a store cannot hold")
        out["weights"].append((Entry(name, _DT_OF_NP[a.dtype], tuple(a.shape), "buffer"), a))
    return out


def _initial_state(name: str, shape: tuple, opt: Optimizer, given) -> list[tuple[Entry, np.ndarray | None]]:
    """A parameter's optimizer entries and starting values: zeros and step 0, or what ``given`` holds. An SGD
    momentum buffer given without a step counts as made (step 1), as torch uses a buffer once it exists."""
    given = dict(given or {})
    names = opt.state_names()
    extra = sorted(set(given) - set(names) - {"step"})
    if extra:
        raise TrainingStoreError(
            f"optimizer state of '{name}' has {', '.join(extra)}, which {opt.kind} does not "
            f"keep (it keeps {', '.join(names + ('step',))})"
        )
    out: list[tuple[Entry, np.ndarray | None]] = []
    for k in names:
        v = given.get(k)
        if v is not None:
            v = np.asarray(v, dtype=F32)
            if v.shape != shape:
                raise TrainingStoreError(
                    f"optimizer state '{k}' of '{name}' is {list(v.shape)}, the parameter is {list(shape)}"
                )
        out.append((Entry(f"{name}/{k}", "f32", shape, "optimizer", of=name), v))
    step = given.get("step", 1 if given.get("momentum_buffer") is not None else 0)
    step = float(np.asarray(step, dtype=np.float64))
    if not (step >= 0 and step == int(step)):
        raise TrainingStoreError(f"optimizer step of '{name}' must be a whole number >= 0, got {step}")
    out.append((Entry(f"{name}/step", "f32", (), "optimizer", of=name), np.array(step, F32)))
    return out


def _write_initial(d: Path, tensors, optimizer_doc: dict, data) -> None:
    if sys.byteorder != "little":
        raise TrainingStoreError("training stores are little-endian; this machine is not")
    try:
        json.dumps(data)
    except (TypeError, ValueError) as e:
        raise TrainingStepError(f"data must be JSON (a dict of numbers, strings, lists): {e}") from None
    manifest: dict[str, dict] = {}
    for slot in (0, 1):
        (d / f"slot{slot}").mkdir()
    for f in FILES:
        entries = [e for e, _ in tensors[f]]
        values = {e.name: v for e, v in tensors[f]}
        head, placed, size = _layout(entries)
        manifest[f] = {}
        with open(d / "slot0" / f"{f}.safetensors", "wb") as out:
            out.write(head)
            for e in placed:
                v = values[e.name]
                raw = np.zeros(e.numel, e.np_dtype) if v is None else np.ascontiguousarray(v, e.np_dtype).reshape(-1)
                b = raw.view(np.uint8)
                out.write(b)
                manifest[f][e.name] = {
                    "dtype": e.dtype,
                    "shape": list(e.shape),
                    "kind": e.kind,
                    "sha256": hashlib.sha256(b).hexdigest(),
                    **({"of": e.of} if e.of else {}),
                }
            out.flush()
            os.fsync(out.fileno())
        _File(d / "slot1" / f"{f}.safetensors", entries, create=True).close()
    grads = [Entry(e.name, "f32", e.shape, "parameter") for e, _ in tensors["weights"] if e.kind == "parameter"]
    _File(d / GRADS_FILE, grads, create=True).close()
    doc = {
        "format": FORMAT,
        "step": 0,
        "slot": 0,
        **optimizer_doc,
        "data": data,
        "tensors": {f: dict(sorted(manifest[f].items())) for f in FILES},
    }
    _write_json_atomic(d / CHECKPOINT_FILE, doc, None)


# -- checkpoint.json ---------------------------------------------------------------------------------


def _write_json_atomic(path: Path, doc: dict, point: str | None) -> None:
    text = json.dumps(doc, sort_keys=True, indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if point:
            _point(point)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_checkpoint(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_CHECKPOINT:
            raise TrainingStoreError(f"'{path}' is larger than a checkpoint record can be ({MAX_CHECKPOINT:,} bytes)")
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise TrainingStoreError(f"'{path}' is not a readable checkpoint record: {e}") from None
    expected = (
        '{"format": "' + FORMAT + '", "step", "slot", "optimizer", "overrides", "data", "tensors": '
        '{"weights", "masters", "optimizer"}}'
    )
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TrainingStoreError(f"'{path}' is not a {FORMAT} checkpoint record; expected {expected}")
    step, slot, tensors = doc.get("step"), doc.get("slot"), doc.get("tensors")
    if (
        isinstance(step, bool)
        or not isinstance(step, int)
        or step < 0
        or slot not in (0, 1)
        or not isinstance(doc.get("data"), dict)
        or not isinstance(tensors, dict)
        or not isinstance(doc.get("overrides"), dict)
        or set(tensors) != set(FILES)
        or not all(isinstance(tensors[f], dict) for f in FILES)
    ):
        raise TrainingStoreError(f"'{path}' is malformed; expected {expected}")
    for f in FILES:
        for name, m in tensors[f].items():
            problem = _entry_problem(name, m)
            if problem:
                raise TrainingStoreError(f"'{path}': tensor '{name}' of {f} {problem}")
    return doc


def _entry_problem(name, m) -> str:
    if not isinstance(name, str) or not name or name == "__metadata__":
        return "has no usable name"
    if not isinstance(m, dict):
        return "is not an object"
    if m.get("dtype") not in _DT:
        return f"has dtype {m.get('dtype')!r}"
    shape = m.get("shape")
    if not (
        isinstance(shape, list)
        and len(shape) <= 64
        and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 48 for n in shape)
    ):
        return "has a malformed shape"
    if m.get("kind") not in KINDS:
        return f"has kind {m.get('kind')!r} (one of {', '.join(KINDS)})"
    sha = m.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        return "has a malformed sha256"
    return ""


def _lock(d: Path) -> int:
    """Hold ``.lock`` in the store (flock) for as long as it is open: one trainer per store."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock (Windows)
        return os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise TrainingStoreError(f"cannot open the training store '{d}': {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise TrainingStoreError(
            f"the training store '{d}' is open in another process (it holds {LOCK_FILE}); wait for it to finish"
        ) from None
    return fd


__all__ = [
    "CHECKPOINT_FILE",
    "FORMAT",
    "StepResult",
    "StepUpdate",
    "TrainingStepError",
    "TrainingStore",
    "TrainingStoreError",
    "clip_coefficient",
]
