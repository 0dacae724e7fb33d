"""Structure-aware mutation of JSON documents and bytes, shared by the format fuzzers (store, golden, npz).

A JSON mutant is the document with one place changed: a value replaced by an extreme one (wrong type, huge,
negative, NaN, deeply nested, a long string), a key dropped or added, a list item dropped or duplicated.
A byte mutant is the bytes cut, spliced, or with a run overwritten.
"""

from __future__ import annotations

import copy
import json

from hypothesis import strategies as st

EXTREMES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**63,
    2**64 + 1,
    -(2**63),
    10**40,
    1.5,
    -0.0,
    float("nan"),
    float("inf"),
    "",
    "x",
    "F32",
    "f32",
    "bfloat16",
    "object",
    "|O",
    "../x.py",
    "/etc/passwd",
    "x" * 100_000,
    [],
    [1],
    [-1],
    [0, 10**12],
    [2**40, 2**40],
    [[]],
    {},
    {"a": 1},
]


def paths(doc, prefix=()) -> list[tuple]:
    """Every place in ``doc``: a tuple of keys and indices."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, prefix + (i,))
    return out


def _set(doc, path: tuple, value):
    if not path:
        return value
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return doc


def _get(doc, path: tuple):
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def json_mutant(draw, doc):
    """``doc`` (a JSON value) with one place changed."""
    doc = copy.deepcopy(doc)
    places = paths(doc)
    path = draw(st.sampled_from(places))
    kind = draw(st.sampled_from(["extreme", "extreme", "drop", "add", "dup", "deep", "swap"]))
    here = _get(doc, path)
    if kind == "extreme":
        return _set(doc, path, copy.deepcopy(draw(st.sampled_from(EXTREMES))))
    if kind == "deep":
        depth = draw(st.sampled_from([70, 1000, 100_000]))
        return _set(doc, path, _nested(depth))
    if kind == "drop" and path:
        parent = _get(doc, path[:-1])
        del parent[path[-1]]
        return doc
    if kind == "add" and isinstance(here, dict):
        here[draw(st.sampled_from(["__metadata__", "extra", "", "format"]))] = draw(st.sampled_from(EXTREMES[:12]))
        return doc
    if kind == "dup" and isinstance(here, list) and here:
        here.append(copy.deepcopy(here[0]))
        return doc
    if kind == "swap" and path:
        other = draw(st.sampled_from(places))
        return _set(doc, path, copy.deepcopy(_get(doc, other)) if not _is_prefix(path, other) else None)
    return _set(doc, path, None)


def _is_prefix(a: tuple, b: tuple) -> bool:
    return b[: len(a)] == a


def _nested(depth: int):
    """A list nested ``depth`` deep, built without recursion."""
    v: list = []
    for _ in range(min(depth, 900)):
        v = [v]
    return v if depth <= 900 else _Raw("[" * depth + "]" * depth)


class _Raw(str):
    """Text spliced into a JSON document as is (json.dumps cannot write what is nested this deep)."""


def dumps(doc) -> bytes:
    raws: list[str] = []

    def default(o):
        raise TypeError(o)

    def swap(v):
        if isinstance(v, _Raw):
            raws.append(str(v))
            return f"\x00RAW{len(raws) - 1}\x00"
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v

    text = json.dumps(swap(doc), default=default)
    for i, raw in enumerate(raws):
        text = text.replace(f'"\\u0000RAW{i}\\u0000"', raw)
    return text.encode()


@st.composite
def bytes_mutant(draw, data: bytes):
    """``data`` cut short, with a span removed or duplicated, or a run of bytes overwritten."""
    kind = draw(st.sampled_from(["cut", "splice", "dup", "overwrite", "empty"]))
    n = len(data)
    a = draw(st.integers(0, n))
    if kind == "empty":
        return b""
    if kind == "cut":
        return data[:a]
    b = draw(st.integers(a, min(n, a + 64)))
    if kind == "splice":
        return data[:a] + data[b:]
    if kind == "dup":
        return data[:b] + data[a:b] + data[b:]
    run = draw(st.binary(min_size=1, max_size=16))
    return data[:a] + run + data[a + len(run) :]
