"""wafercc's numpy reference runtime: MemoryX store reader, weight-streaming interpreter, one kernel per op.

Depends on numpy, ml_dtypes and wafercc.ir only: never on torch, nor on the rest of the compiler.

    import runtime
    result = runtime.run("build/mlp")          # model.wir + weights.safetensors + manifest.json
    result.outputs, result.stats.summary()
"""

from __future__ import annotations

import os
from pathlib import Path

from wafercc.ir import Module, parse_file

from .artifacts import MANIFEST_FILE, STORE_FILE, WIR_FILE
from .errors import InputError, RuntimeExecutionError, StoreError
from .interpreter import Interpreter, LayerStat, RunResult, RunStats
from .io import bind_inputs, load_inputs, random_inputs, save_outputs
from .kernels import KERNELS
from .store import MemoryStore, Store, write_store


def run(
    module_or_path: Module | str | os.PathLike,
    inputs=None,
    store: Store | str | os.PathLike | None = None,
    seed: int = 0,
    func: str | None = None,
) -> RunResult:
    """Run a module (or a compiled model directory, or a .wir file) and return its outputs and stats.

    ``inputs``: a list (by position), a dict (by argument name), a path to an .npz, or None for seeded
    random inputs made from the signature (``result.generated_inputs`` is then True). ``store``: a Store
    or its directory; by default the store beside the .wir file, when the model reads weights.
    """
    module, where = _load(module_or_path)
    opened = None
    if store is None and where is not None and _reads_weights(module):
        store = where
    if store is not None and not isinstance(store, Store):
        store = opened = Store(store)
    try:
        interp = Interpreter(module, store, func=func)
        generated = inputs is None
        if generated:
            inputs = random_inputs(interp.func, seed)
        elif isinstance(inputs, (str, os.PathLike)):
            inputs = load_inputs(inputs, interp.func)
        result = interp.run(inputs)
        result.generated_inputs = generated
        return result
    finally:
        if opened is not None:  # outputs never view the store (the interpreter copies them), so close it
            opened.close()


def _reads_weights(module: Module) -> bool:
    return any(op.name == "weight.get" for f in module.funcs for op in f.ops)


def _load(m: Module | str | os.PathLike) -> tuple[Module, Path | None]:
    """The module, and the directory its store would be in (None for an in-memory module)."""
    if isinstance(m, Module):
        return m, None
    p = Path(m)
    if p.is_dir():
        if not (p / WIR_FILE).is_file():
            raise RuntimeExecutionError(f"'{p}' is not a compiled model directory: it has no {WIR_FILE}")
        return parse_file(p / WIR_FILE), p
    return parse_file(p), p.parent


__all__ = [
    "KERNELS",
    "MANIFEST_FILE",
    "STORE_FILE",
    "WIR_FILE",
    "MemoryStore",
    "InputError",
    "Interpreter",
    "LayerStat",
    "RunResult",
    "RunStats",
    "RuntimeExecutionError",
    "Store",
    "StoreError",
    "bind_inputs",
    "load_inputs",
    "random_inputs",
    "run",
    "save_outputs",
    "write_store",
]
