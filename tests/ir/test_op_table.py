"""Every op in the table has a result-type rule that works on a sample, a text form and a round trip."""

from __future__ import annotations

import pytest

import wafercc.ops
from wafercc.ir import parse, print_module
from wafercc.ops import OPS

from .op_samples import SAMPLES, T, sample_module, sample_results

CASES = [(name, i) for name in sorted(SAMPLES) for i in range(len(SAMPLES[name]))]


def test_every_op_has_a_sample():
    assert sorted(OPS) == sorted(SAMPLES), "add the missing ops to tests/ir/op_samples.py"


@pytest.mark.parametrize("name, i", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_result_type_rule_on_sample(name: str, i: int):
    operands, attrs = SAMPLES[name][i]
    results = sample_results(name, operands, attrs)
    d = OPS[name]
    assert results and all(r.numel >= 0 for r in results)
    if d.num_results is not None:
        assert len(results) == d.num_results
    # The sample as WIR text verifies and reads back.
    m = sample_module(name, operands, attrs)
    wafercc.ops.verify(m)
    assert parse(print_module(m)) == m


@pytest.mark.parametrize(
    "name, operands, attrs, expected",
    [
        ("add", ["2x3xf32", "3xf32"], {}, ["2x3xf32"]),  # broadcasting
        ("add", ["4xi32", "f64"], {}, ["4xf64"]),  # a 0-d float beats an integer tensor
        ("add", ["4xf16", "4xbf16"], {}, ["4xf32"]),  # f16 with bf16 is f32
        ("mul", ["4xu8", "4xi8"], {}, ["4xi16"]),
        ("div", ["2x3xi64", "3xi64"], {}, ["2x3xf32"]),  # true division of integers
        ("sum", ["2x3xi32"], {}, ["i64"]),
        ("max_dim", ["2x3xf32"], {"dim": 1}, ["2xf32", "2xi64"]),
        ("split", ["2x10xf32"], {"dim": 1, "sizes": [3, 7]}, ["2x3xf32", "2x7xf32"]),
        ("convolution", ["1x3x8x8xf32", "4x3x3x3xf32"], {"padding": [1]}, ["1x4x8x8xf32"]),
    ],
)
def test_result_types(name, operands, attrs, expected):
    assert sample_results(name, [T(o) for o in operands], attrs) == [T(e) for e in expected]


def test_every_op_has_docs_and_a_family():
    for d in OPS.values():
        assert d.doc and d.family in {"create", "elementwise", "nn", "reduce", "shape"}, d.name
        assert {a.kind.rstrip("?") for a in d.attrs.values()} <= {
            "int",
            "float",
            "scalar",
            "bool",
            "str",
            "dtype",
            "ints",
            "symbol",
            "any",
        }, d.name
