"""End to end: every example and zoo model, compiled by wafercc, run by the runtime from its MemoryX store,
against eager PyTorch (fp32: within 1e-5 of the output's scale)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime import Interpreter, Store, write_store
from tests.conftest import EXAMPLES, ZOO


@pytest.mark.parametrize("name", EXAMPLES + ZOO)
def test_compiled_model_matches_eager(name, compiled, example_models, zoo_models, tmp_path):
    model, inputs = {**example_models, **zoo_models}[name]
    result = compiled[name]
    write_store(tmp_path, result.weights, result.kinds)
    with torch.no_grad():
        want = model(*inputs).numpy()
    with Store(tmp_path) as st:  # the graph-level run: each weight read once, when first used
        res = Interpreter(result.module, st, plan=False).run([t.numpy() for t in inputs])
        assert res.stats.weight_bytes_streamed == st.bytes_read == sum(a.nbytes for a in result.weights.values())
    with Store(tmp_path) as st:  # the plan's run (wse2, streaming): what the plan says it streams
        planned = Interpreter(result.module, st).run([t.numpy() for t in inputs])
        assert planned.stats.weight_bytes_streamed == result.module.attrs["plan.totals"]["weight_bytes_streamed"]
    np.testing.assert_allclose(planned.outputs[0], want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    got = res.outputs[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())))
    assert res.stats.peak_resident_weight_bytes <= res.stats.weight_bytes_streamed
    assert sum(layer.ops for layer in res.stats.layers) == len(result.module.func().ops)
