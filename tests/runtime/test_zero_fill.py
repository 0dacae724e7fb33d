"""full of zero bits and index_put into all-zero tensors take calloc'd memory (runtime/kernels): the same bits
as filling and copying, -0.0 and other values included, against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime import Interpreter
from tests.runtime.test_runtime_ops import one_op_module
from wafercc.ir import DType


@pytest.mark.parametrize("value", [0.0, -0.0, 1.5, 0])
def test_full_keeps_every_bit(value):
    m = one_op_module("full", [], {"shape": [1100, 1000], "value": value, "dtype": DType.f32})
    got = Interpreter(m).run([]).outputs[0]
    want = torch.full((1100, 1000), value, dtype=torch.float32).numpy()
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("base", [0.0, -0.0, 2.0])
@pytest.mark.parametrize("repeats", [False, True])
def test_index_put_accumulate_into_a_large_tensor(base, repeats):
    """Distinct rows: torch's bits. Repeated rows: torch adds them in an order of its threads' making, so the
    reference is the copy-and-add the kernel did before (np.add.at, in index order)."""
    rng = np.random.default_rng(0)
    x = np.full((2048, 600), base, np.float32)  # 1.2M elements: past the size where the zero scan runs
    idx = (rng.integers(0, 2048, 300) if repeats else rng.choice(2048, 300, replace=False)).astype(np.int64)
    vals = rng.standard_normal((300, 600)).astype(np.float32)
    m = one_op_module("index_put", [x, vals, idx], {"dims": [0], "accumulate": True})
    got = Interpreter(m).run([x, vals, idx]).outputs[0]
    if repeats:
        want = x.copy()
        np.add.at(want, idx, vals)
    else:
        t = torch.from_numpy(x.copy()).index_put((torch.from_numpy(idx),), torch.from_numpy(vals), accumulate=True)
        want = t.numpy()
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert np.array_equal(x, np.full((2048, 600), base, np.float32))  # the input is not written
