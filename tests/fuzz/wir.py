"""Mutants of real WIR texts, and the property every one of them must keep.

The seeds are compiled examples at three stages (graph level, tiled, routed on a small mesh). A mutant is
one edit of a seed: a line dropped, duplicated or swapped, a token replaced by another of the text's tokens
or by an extreme value (a huge integer, a negative, NaN, a long string, deep nesting), a span cut out.

The property (``check``): wafercc either accepts the mutant (it parses, verifies, its plan loads, and the
runtime runs it on random inputs to finite-or-matching outputs) or rejects it with a ``WaferError`` —
never another exception, never a hang. A mutant that runs is also compared with the seed's outputs
when it still means the same computation (same printed graph): a plan edit must not change the numbers.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

import runtime
from wafercc.driver import verify_module
from wafercc.ir import WaferError, parse, print_module

ROOT = Path(__file__).resolve().parents[2]
EXTREMES = [
    "0",
    "-1",
    "-2147483649",
    "9" * 40,
    "1" * 5000,
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "-inf",
    '""',
    '"' + "x" * 100_000 + '"',
    "[" * 2000 + "]" * 2000,
    "{" * 500 + "}" * 500,
    "@nope",
    "%nope",
    "tensor<0xf32>",
    "tensor<99999999x99999999xf32>",
    "f64",
    "true",
    "none",
]
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[%@][\w.$]+|-?\d+(?:\.\d+)?(?:e[-+]?\d+)?|tensor<[^>]*>|\w+|[^\s\w]')


@functools.cache
def seeds() -> dict[str, tuple[str, dict[str, np.ndarray]]]:
    """name -> (WIR text, weights) of small compiled examples at graph, tiled and routed stages."""
    from wafercc.driver import compile
    from wafercc.frontend import load_model_file

    out = {}
    for name in ("mlp", "cnn"):
        model, inputs = load_model_file(ROOT / "examples" / f"{name}.py")
        for emit in ("graph", "tiled", "routed"):
            r = compile(model, inputs, name=name, emit=emit, target="mesh:8x8")
            out[f"{name}-{emit}"] = (r.text, r.weights)
    return out


@st.composite
def mutants(draw) -> tuple[str, str]:
    """(seed name, mutated text)."""
    name = draw(st.sampled_from(sorted(seeds())))
    text = seeds()[name][0]
    lines = text.split("\n")
    kind = draw(st.sampled_from(["drop", "dup", "swap", "token", "extreme", "cut"]))
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "drop":
        lines.pop(i)
    elif kind == "dup":
        lines.insert(i, lines[i])
    elif kind == "swap":
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind in ("token", "extreme"):
        toks = list(_TOKEN.finditer(lines[i]))
        if toks:
            t = draw(st.sampled_from(toks))
            if kind == "token":
                pool = _TOKEN.findall(text)
                new = draw(st.sampled_from(pool))
            else:
                new = draw(st.sampled_from(EXTREMES))
            lines[i] = lines[i][: t.start()] + new + lines[i][t.end() :]
    else:
        a = draw(st.integers(0, len(text)))
        b = draw(st.integers(a, min(len(text), a + 200)))
        return name, text[:a] + text[b:]
    return name, "\n".join(lines)


@functools.cache
def reference(name: str) -> list[np.ndarray]:
    text, weights = seeds()[name]
    return _run(parse(text), weights)


def _run(module, weights) -> list[np.ndarray]:
    func = module.func()
    inputs = runtime.random_inputs(func, 0)
    return runtime.Interpreter(module, runtime.MemoryStore(weights)).run(inputs).outputs


def check(name: str, text: str) -> str:
    """What wafercc did with the mutant: "rejected", "accepted" or "same"; raises on a broken promise."""
    try:
        m = verify_module(parse(text, "mutant.wir"))
        weights = seeds()[name][1]
        got = _run(m, weights)
    except WaferError as e:
        assert e.render().startswith(("error: ", "mutant.wir")), e.render()
        return "rejected"
    seed = parse(seeds()[name][0])
    if _graph(m) != _graph(seed):
        return "accepted"  # another computation: nothing to compare with
    for want, have in zip(reference(name), got):
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    return "same"


def _graph(m) -> str:
    """The computation a module means, without its plan: the function's ops and the weights' types."""
    m = parse(print_module(m))
    m.layers.clear()
    m.attrs.clear()
    for op in m.func().ops:
        for k in [k for k in op.attrs if k.startswith("plan.")]:
            del op.attrs[k]
        op.loc = None
    return print_module(m)
