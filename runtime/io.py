"""Inputs and outputs of a run: binding by position or name, npz files, seeded random inputs.

npz files are keyed by argument names (``x``) or positions (``arg0``, ``arg1``...); outputs are saved as
``out0``, ``out1``... numpy cannot describe bfloat16 in .npy, so a bf16 array is stored as raw 2-byte
values ('|V2') and read back as bfloat16 for a bf16 argument.
"""

from __future__ import annotations

import os

import ml_dtypes
import numpy as np

from wafercc.ir import Func, Op, Value

from .errors import InputError
from .artifacts import write_atomic
from .kernels import np_dtype

# The largest integer a generated integer input holds: small, so that generated ids are valid indices
# of any table they index (the bound drops further to the size of the indexed dim when the runtime
# sees the argument used directly as an index: embedding, gather, index_select, index).
MAX_GENERATED_INT = 16


def signature(func: Func) -> str:
    args = ", ".join(f"%{a.name}: {a.type}" for a in func.args)
    return f"@{func.name}({args})"


def bind_inputs(func: Func, inputs) -> list[np.ndarray]:
    """The arrays for ``func``'s arguments, from a list (by position) or a dict (by argument name)."""
    names = [a.name for a in func.args]
    if isinstance(inputs, dict):
        keys = {k.lstrip("%"): v for k, v in inputs.items()}
        missing = [n for n in names if n not in keys]
        extra = [k for k in keys if k not in names]
        if missing or extra:
            what = "; ".join(p for p in (_listed("missing", missing), _listed("unknown", extra)) if p)
            raise InputError(f"inputs do not match {signature(func)}: {what}")
        values = [keys[n] for n in names]
    else:
        values = list(inputs)
        if len(values) != len(names):
            raise InputError(f"{signature(func)} takes {len(names)} input(s), got {len(values)}")
    return [_check(a, v) for a, v in zip(func.args, values)]


def _listed(what: str, names: list[str]) -> str:
    return f"{what} {', '.join('%' + n for n in names)}" if names else ""


def _check(arg: Value, v) -> np.ndarray:
    a = np.asarray(v)
    want = np_dtype(arg.type)
    if want == ml_dtypes.bfloat16 and a.dtype == np.dtype("V2"):
        a = a.view(ml_dtypes.bfloat16)  # bf16 read back from an npz file
    if a.dtype != want or a.shape != arg.type.shape:
        got = f"{a.dtype}{list(a.shape)}"
        raise InputError(f"input %{arg.name} must be {arg.type} ({want}{list(arg.type.shape)}), got {got}")
    return a


def load_inputs(path: str | os.PathLike, func: Func) -> list[np.ndarray]:
    """Read an npz keyed by argument names (or arg0, arg1, ...) and check it against ``func``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read inputs from '{path}': {e}") from None
    if all(k.startswith("arg") and k[3:].isdigit() for k in data) and data:
        by_pos = {f"arg{i}": a.name for i, a in enumerate(func.args)}
        data = {by_pos.get(k, k): v for k, v in data.items()}
    try:
        return bind_inputs(func, data)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def save_outputs(path: str | os.PathLike, outputs: list[np.ndarray], func: Func | None = None) -> None:
    """Write outputs to an npz (``out0``, ``out1``, ...) atomically; checks them against ``func`` if given."""
    if func is not None:
        declared = func.declared_result_types()
        if len(declared) != len(outputs) or any(
                np.shape(o) != t.shape or np.asarray(o).dtype != np_dtype(t) for o, t in zip(outputs, declared)):
            raise InputError(f"outputs do not match the results of @{func.name}: "
                             f"({', '.join(map(str, declared))})")
    # A file object: np.savez would append ".npz" to a name.
    write_atomic(path, lambda f: np.savez(f, **{f"out{i}": np.asarray(o) for i, o in enumerate(outputs)}))


def random_inputs(func: Func, seed: int = 0) -> list[np.ndarray]:
    """Seeded inputs for ``func``: floats standard normal, integers in [0, min(16, indexed size)),
    bools random bits."""
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
