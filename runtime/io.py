"""Inputs and outputs of a run: binding by position or name, npz files, seeded random inputs.

npz files are keyed by argument names (``x``) or positions (``arg0``, ``arg1``...); outputs are saved as
``out0``, ``out1``... numpy cannot describe bfloat16 in .npy, so a bf16 array is stored as raw 2-byte
values ('|V2') and read back as bfloat16 for a bf16 argument.
"""

from __future__ import annotations

import functools
import io
import lzma
import os
import zipfile
import zlib
from tokenize import TokenError
from typing import Callable

import ml_dtypes
import numpy as np

from wafercc.ir import Func, Op, Value

from .errors import InputError, RuntimeExecutionError
from .artifacts import write_atomic
from .kernels import np_dtype

# The largest integer a generated integer input holds: small, so that generated ids are valid indices
# of any table they index (the bound drops further to the size of the indexed dim when the runtime
# sees the argument used directly as an index: embedding, gather, index_select, index).
MAX_GENERATED_INT = 16


def signature(func: Func) -> str:
    args = ", ".join(f"%{a.name}: {a.type}" for a in func.args)
    return f"@{func.name}({args})"


def memory_bytes() -> int:
    """This machine's memory: no single tensor of a run can be larger."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_fits(func: Func, limit: int | None = None) -> None:
    """RuntimeExecutionError, before anything is allocated, when one value of ``func`` (or its arguments
    together) needs more bytes than the machine has: a message, not a MemoryError half way."""
    limit = memory_bytes() if limit is None else limit
    values = list(func.args) + [r for op in func.ops for r in op.results]
    if not values:
        return
    big = max(values, key=lambda v: v.type.nbytes)
    args = sum(a.type.nbytes for a in func.args)
    need, what = (
        (big.type.nbytes, f"%{big.name} ({big.type})")
        if big.type.nbytes >= args
        else (args, f"its {len(func.args)} inputs")
    )
    if need > limit:
        raise RuntimeExecutionError(
            f"running {signature(func)} needs at least {need:,} bytes for {what}, more "
            f"than this machine's {limit:,} bytes of memory; run a smaller shape"
        )


def bind_inputs(func: Func, inputs) -> list[np.ndarray]:
    """The arrays for ``func``'s arguments, from a list (by position) or a dict (by argument name)."""
    check_fits(func)
    names = [a.name for a in func.args]
    if isinstance(inputs, dict):
        keys = {k.lstrip("%"): v for k, v in inputs.items()}
        _match_names(func, list(keys))
        values = [keys[n] for n in names]
    else:
        values = list(inputs)
        if len(values) != len(names):
            raise InputError(f"{signature(func)} takes {len(names)} input(s), got {len(values)}")
    return [_check(a, v) for a, v in zip(func.args, values)]


def _match_names(func: Func, keys: list[str]) -> None:
    names = [a.name for a in func.args]
    missing = [n for n in names if n not in keys]
    extra = [k for k in keys if k not in names]
    if missing or extra:
        what = "; ".join(p for p in (_listed("missing", missing), _listed("unknown", extra)) if p)
        raise InputError(f"inputs do not match {signature(func)}: {what}")


def _listed(what: str, names: list[str]) -> str:
    return f"{what} {', '.join('%' + n for n in names)}" if names else ""


def _check(arg: Value, v) -> np.ndarray:
    a = np.asarray(v)
    if want := _type_problem(arg, a.dtype, a.shape):
        raise InputError(want)
    return a.view(ml_dtypes.bfloat16) if a.dtype == np.dtype("V2") else a  # bf16 read back from an npz file


def _type_problem(arg: Value, dtype: np.dtype, shape: tuple) -> str:
    want = np_dtype(arg.type)
    if want == ml_dtypes.bfloat16 and dtype == np.dtype("V2"):
        dtype = want
    if dtype != want or tuple(shape) != arg.type.shape:
        return f"input %{arg.name} must be {arg.type} ({want}{list(arg.type.shape)}), got {dtype}{list(shape)}"
    return ""


def load_inputs(path: str | os.PathLike, func: Func) -> list[np.ndarray]:
    """Read an npz keyed by argument names (or arg0, arg1, ...) and check it against ``func``. The keys, and
    each member's type in its .npy header, are checked against the signature before anything is
    decompressed or allocated."""
    check_fits(func)
    args = {a.name: a for a in func.args}
    by_pos = {f"arg{i}": a.name for i, a in enumerate(func.args)}
    arg_of: dict[str, Value] = {}  # member key -> its argument

    def bounds(keys: list[str]) -> dict[str, int]:
        positional = bool(keys) and all(k.startswith("arg") and k[3:].isdigit() for k in keys)
        named = {by_pos.get(k, k) if positional else k.lstrip("%"): k for k in keys}
        _match_names(func, list(named))
        arg_of.update({k: args[n] for n, k in named.items()})
        return {k: args[n].type.nbytes for n, k in named.items()}

    def expect(key: str, dtype: np.dtype, shape: tuple) -> str:
        return _type_problem(arg_of[key], dtype, shape)

    data = read_npz(path, bounds, "inputs", expect)
    data = {arg_of[k].name: v for k, v in data.items()}
    try:
        return bind_inputs(func, data)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


NPY_HEADER_BYTES = 1 << 16  # what a member may hold beyond its array's bytes: the .npy header


def read_npz(
    path: str | os.PathLike,
    bounds: Callable[[list[str]], dict[str, int]],
    what: str,
    expect: Callable[[str, np.dtype, tuple], str] | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of an .npz, read without trusting it: ``bounds(keys)`` checks the member names (raising
    InputError) and gives each member's largest array in bytes; a member's sizes, declared and actual, are
    checked against it before it is decompressed, and its .npy header (and ``expect(key, dtype, shape)``:
    what is wrong with that type, or "") before anything is allocated. Object arrays (pickles) are refused.
    InputError names the file, the member and what was wrong."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            keys = [i.filename.removesuffix(".npy") for i in infos]
            if len(set(keys)) != len(keys):
                raise InputError(f"'{path}' is not a valid .npz of {what}: a member name appears twice")
            try:
                limits = bounds(keys)
            except InputError as e:
                raise InputError(f"{path}: {e}") from None
            return {
                k: _member(path, z, i, limits.get(k, 0), expect and functools.partial(expect, k))
                for k, i in zip(keys, infos)
            }
    except InputError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        lzma.LZMAError,
        EOFError,
        NotImplementedError,
        RuntimeError,
        ValueError,
    ) as e:  # zlib/lzma: a member whose compressed stream is damaged
        raise InputError(f"'{path}' is not a valid .npz of {what} (a zip of .npy arrays): {e}") from None
    except OSError as e:
        raise InputError(f"cannot read {what} from '{path}': {e.strerror or e}") from None


def _member(path, z: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, expect=None) -> np.ndarray:
    where = f"'{path}' member {info.filename}"
    if info.file_size > limit + NPY_HEADER_BYTES:
        raise InputError(f"{where} holds {info.file_size:,} bytes; what it stands for takes at most {limit:,}")
    with z.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
        except (ValueError, TypeError, SyntaxError, KeyError, EOFError, TokenError, RecursionError) as e:
            raise InputError(f"{where} is not a .npy array: {e}") from None
        if dtype.hasobject:
            raise InputError(f"{where} holds Python objects (dtype {dtype}); only plain arrays are read")
        if expect is not None and (problem := expect(dtype, shape)):
            raise InputError(f"{path}: {problem}")
        need = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if need > limit:
            raise InputError(
                f"{where} holds {dtype}{list(shape)} ({need:,} bytes); what it stands for takes at most {limit:,} bytes"
            )
        raw = np.empty(need, np.uint8)  # the declared sizes may lie: never read past what the header promised
        got = f.readinto(memoryview(raw)) if need else 0
        more = bool(f.read(1))
    if got != need or more:
        raise InputError(
            f"{where}: its header says {dtype}{list(shape)} ({need:,} bytes) but it holds "
            f"{'more' if more else f'{got:,} bytes'} of data"
        )
    return raw.view(dtype).reshape(shape, order="F" if fortran else "C")


def save_outputs(path: str | os.PathLike, outputs: list[np.ndarray], func: Func | None = None) -> None:
    """Write outputs to an npz (``out0``, ``out1``, ...) atomically; checks them against ``func`` if given."""
    if func is not None:
        declared = func.declared_result_types()
        if len(declared) != len(outputs) or any(
            np.shape(o) != t.shape or np.asarray(o).dtype != np_dtype(t) for o, t in zip(outputs, declared)
        ):
            raise InputError(f"outputs do not match the results of @{func.name}: ({', '.join(map(str, declared))})")
    # A file object: np.savez would append ".npz" to a name.
    write_atomic(path, lambda f: np.savez(f, **{f"out{i}": np.asarray(o) for i, o in enumerate(outputs)}))


# np.savez stamps every member with the current time; a fixed stamp makes the bytes a function of the arrays.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The .npz of ``arrays`` (in the given order), byte for byte the same for the same arrays; bf16 is
    stored as raw 2-byte values ('|V2', as the module's docstring says; ``load_inputs`` reads it back as bf16)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, a in arrays.items():
            a = np.asarray(a)
            member = io.BytesIO()
            np.lib.format.write_array(member, a.view("V2") if a.dtype.name == "bfloat16" else a, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            z.writestr(info, member.getvalue())
    return buf.getvalue()


def random_inputs(func: Func, seed: int = 0) -> list[np.ndarray]:
    """Seeded inputs for ``func``: floats standard normal, integers in [0, min(16, indexed size)),
    bools random bits."""
    check_fits(func)
    rng = np.random.default_rng(seed)
    bounds = _index_bounds(func)
    out = []
    for a in func.args:
        t, dt = a.type, np_dtype(a.type)
        if t.dtype.is_float:
            out.append(rng.standard_normal(t.shape, dtype=np.float32).astype(dt))
        elif t.dtype.is_bool:
            out.append(rng.integers(0, 2, t.shape).astype(bool))
        else:
            high = max(1, min(MAX_GENERATED_INT, bounds.get(id(a), MAX_GENERATED_INT)))
            out.append(rng.integers(0, high, t.shape).astype(dt))
    return out


def _index_bounds(func: Func) -> dict[int, int]:
    """For each value used directly as an index, the size of the dim it indexes (the smallest if several)."""
    bounds: dict[int, int] = {}
    for op in func.ops:
        for v, size in _indexed_sizes(op):
            bounds[id(v)] = min(size, bounds.get(id(v), size))
    return bounds


def _indexed_sizes(op: Op):
    x = op.operands[0].type if op.operands else None
    if op.name == "embedding":
        yield op.operands[1], x.shape[0]
    elif op.name in ("gather", "index_select"):
        yield op.operands[1], x.shape[op.attrs["dim"]]
    elif op.name == "index":
        for d, v in zip(op.attrs["dims"], op.operands[1:]):
            yield v, x.shape[d]
