"""The fast OpInfo subset: one op of every family wafercc maps (and every edge the sweep found), its first
sample, compiled to a routed plan and run plan-faithfully against eager PyTorch.

The whole sweep (every op, three samples) is ``python -m tests.opinfo --all`` (docs/testing.md); the rules
are the same: no crash, no wrong answer, and an unsupported op only if expected_unsupported.txt lists it.
"""

from __future__ import annotations

import pytest

from . import harness

SUBSET = [
    # elementwise
    "abs",
    "add",
    "mul",
    "div.no_rounding_mode",
    "pow",
    "where",
    "clamp",
    "acosh",
    "lgamma",
    "polygamma.polygamma_n_1",
    "nn.functional.gelu",
    "sigmoid",
    "logical_and",
    "eq",
    # reductions
    "sum",
    "mean",
    "amax",
    "argmax",
    "var",
    "var_mean",
    "cumsum",
    "softmax",
    "log_softmax",
    "linalg.vector_norm",
    "std",
    # matrix products and nn
    "mm",
    "bmm",
    "addmm",
    "matmul",
    "nn.functional.linear",
    "nn.functional.conv2d",
    "nn.functional.batch_norm",
    "nn.functional.layer_norm",
    "nn.functional.group_norm",
    "nn.functional.max_pool2d",
    "nn.functional.avg_pool2d",
    "nn.functional.adaptive_avg_pool2d",
    "nn.functional.max_pool3d",
    "nn.functional.avg_pool3d",
    "nn.functional.adaptive_avg_pool3d",
    "nn.functional.grid_sample",
    "nn.functional.interpolate.bilinear",
    "nn.functional.embedding",
    "cdist",
    "nn.functional.pdist",
    "cummax",
    "addbmm",
    "diagonal_scatter",
    # data movement
    "reshape",
    "permute",
    "transpose",
    "squeeze",
    "unsqueeze",
    "cat",
    "stack",
    "split",
    "gather",
    "scatter",
    "scatter_add",
    "scatter_reduce.sum",
    "index_select",
    "index_put",
    "diagonal",
    "as_strided",
    "as_strided_scatter",
    "masked_scatter",
    "slice_scatter",
    "select_scatter",
    "flip",
    "topk",
    "sort",
    "triu",
    "clone",
    "view",
    # refused with a reason
    "nonzero",
]
SAMPLES = 1


@pytest.fixture(scope="module")
def ops():
    return {harness.full_name(op): op for op in harness.op_db()}


@pytest.mark.parametrize("name", SUBSET)
def test_opinfo_op(ops, name):
    op = ops[name]
    outcomes = [harness.run_case(op, s, i) for i, s in enumerate(harness.samples(op, SAMPLES))]
    assert outcomes, f"{name}: OpInfo gave no float32 sample"
    expected = harness.expected_unsupported()
    # One sample cannot show that a listed op now passes every sample: the full sweep says that.
    bad = [p for p in harness.problems(outcomes, expected) if "now supported" not in p]
    assert not bad, "\n".join(bad)


def test_expected_list_names_real_ops(ops):
    unknown = sorted(set(harness.expected_unsupported()) - set(ops))
    assert not unknown, f"expected_unsupported.txt names ops OpInfo does not have: {unknown}"
