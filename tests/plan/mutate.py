"""Mutants of a compiled plan: every numeric and structural field of every layer, changed one at a time.

A mutant is ``(layer, path, description, new top-level value)``: the layer attribute ``path[0]`` replaced by
a copy with one change. ``classify`` runs a mutant through the plan gate (``check_plan``, what ``run``,
``verify``, ``opt`` and ``golden`` call) and the runtime (which loads the plan with the same rules) and
says what happened:

- ``refused``: a WaferError with exit code 2 whose message names the layer and a ``[plan-...]`` rule;
- ``same``: it ran to the original's numbers (within the fp32 tolerance the plan runtime is held to);
- ``wrong``: it ran to other numbers, crashed with another exception, or was refused without naming the
  layer and rule. A sound checker leaves none.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator

import numpy as np

from runtime import Interpreter
from wafercc.ir import DType, SymbolRef, WaferError
from wafercc.ir.plan import FLOWS, KINDS
from wafercc.mapping.check import check_plan

# Other values to try for the string fields, by key.
_ALTERNATIVES = {
    "kind": KINDS,
    "flow": FLOWS,
    "axis": ("x", "y", "time"),
    "buffer": ("runtime", "activation", "weight", "free"),
    "bound": ("compute", "ingress", "fabric", "broadcast"),
    "roofline_by": ("compute", "ingress"),
}


def _ints(v: int, full: bool) -> list[int]:
    return sorted(({v - 1, v + 1, 0, 2 * v, -1} if full else {v - 1, v + 1}) - {v})


def _floats(v: float, full: bool) -> list[float]:
    return sorted(({0.0, v * 2 + 1.0, -1.0} if full else {v * 2 + 1.0}) - {v})


def _edits(value, path: tuple, full: bool) -> Iterator[tuple[tuple, str, object]]:
    """(path inside value, description, replacement) for every leaf change and every removal."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield (k,), "removed", REMOVE
            for sub, what, new in _edits(v, path + (k,), full):
                yield (k,) + sub, what, new
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, (dict, SymbolRef)):
                yield (i,), "removed", REMOVE
            for sub, what, new in _edits(v, path + (i,), full):
                yield (i,) + sub, what, new
    else:
        for what, new in _leaf_edits(value, path, full):
            yield (), what, new


def _leaf_edits(value, path: tuple, full: bool) -> Iterator[tuple[str, object]]:
    if isinstance(value, bool):
        yield f"{value} -> {not value}", not value
    elif isinstance(value, int):
        for n in _ints(value, full):
            yield f"{value} -> {n}", n
    elif isinstance(value, float):
        for n in _floats(value, full):
            yield f"{value} -> {n}", n
    elif isinstance(value, str):
        key = next((p for p in reversed(path) if isinstance(p, str)), "")
        options = ("%nothing",) if key == "anchor" else _ALTERNATIVES.get(key, ()) + (value + "_x",)
        for n in options:
            if n != value:
                yield f"{value!r} -> {n!r}", n
    elif isinstance(value, DType):
        n = DType.f16 if value != DType.f16 else DType.f32
        yield f"{value.value} -> {n.value}", n


REMOVE = object()


def _apply(value, sub: tuple, new) -> None:
    if not sub:
        raise ValueError("a leaf replaces the whole attribute")
    target = value
    for p in sub[:-1]:
        target = target[p]
    if new is REMOVE:
        del target[sub[-1]]
    else:
        target[sub[-1]] = new


def _top_value(value, sub: tuple, new):
    if not sub:
        return new
    top = copy.deepcopy(value)
    _apply(top, sub, new)
    return top


def mutants(module, full: bool = False) -> Iterator[tuple[str, tuple, str, object]]:
    """(layer, path, description, new value of the top-level attribute ``path[0]``, or ``REMOVE``): every
    leaf changed and every key and list entry removed, one at a time. An integer becomes v - 1 and v + 1
    (``full``: also 0, -1 and 2v), a float 2v + 1 (``full``: also 0 and -1), a bool its negation, a string
    every other value of its enum and a misspelling, a dtype another one."""
    for layer in list(module.layers.values()):
        for key, value in list(layer.attrs.items()):
            yield layer.name, (key,), "removed", REMOVE
            for sub, what, new in _edits(value, (key,), full):
                yield layer.name, (key,) + sub, what, _top_value(value, sub, new)


def classify(module, store, inputs, ref: np.ndarray, layer: str, path: tuple, new) -> tuple[str, str]:
    """Apply one mutant to ``module`` (restored afterwards) and say what happened: (outcome, detail)."""
    attrs = module.layers[layer].attrs
    key = path[0]
    old = attrs[key]
    if new is REMOVE:
        del attrs[key]
    else:
        attrs[key] = new
    try:
        check_plan(module)
        out = Interpreter(module, store).run(inputs).outputs[0]
    except WaferError as e:
        msg = str(e)
        if e.exit_code == 2 and f"@{layer}" in msg and re.search(r"\[plan-[a-z]+\]$", msg):
            return "refused", msg
        return "wrong", f"refused without naming the layer and rule: {msg}"
    except Exception as e:  # noqa: BLE001 - a crash is what the gate must prevent
        return "wrong", f"crashed: {type(e).__name__}: {e}"
    finally:
        attrs[key] = old  # (a removed key comes back last: the printer and plan.json sort keys anyway)
    err = float(np.abs(out - ref).max() / max(1.0, float(np.abs(ref).max()))) if out.shape == ref.shape else np.inf
    if err == 0.0:
        return "same", "identical"
    if err < 1e-5:
        return "same", f"within fp32 rounding ({err:.1e})"
    return "wrong", f"ran to other numbers (relative error {err:.2e})"
