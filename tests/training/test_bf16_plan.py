"""A --precision bf16 training plan charges what the step stores and streams: parameters in 2 bytes (the
store streams bf16 beside fp32 masters), every tile in 2 bytes at the f16acc32 rate, gradients out in f32
(the runtime hands MemoryX f32 gradients); the runtime's counters agree with it (docs/training.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import RuntimeExecutionError
from runtime.optim import SGD
from runtime.training import TrainStep
from wafercc.driver import compile_training
from wafercc.frontend import load_model_file
from wafercc.ir import DType

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mlp_plans(tmp_path_factory):
    model, inputs = load_model_file(ROOT / "examples" / "train_mlp.py")
    out = {}
    for precision in ("fp32", "bf16"):
        d = tmp_path_factory.mktemp(precision) / "mlp"
        r = compile_training(model, inputs, SGD(lr=0.05), name="mlp", precision=precision, out_dir=d)
        out[precision] = (r, d, inputs)
    return out


def test_bf16_plan_streams_half_the_weight_bytes(mlp_plans):
    (r32, _, _), (r16, _, _) = mlp_plans["fp32"], mlp_plans["bf16"]
    t32, t16 = r32.module.attrs["plan.totals"], r16.module.attrs["plan.totals"]
    assert r16.module.attrs["storage"] == "bf16" and "storage" not in r32.module.attrs
    assert t16["weight_bytes_streamed"] * 2 == t32["weight_bytes_streamed"] > 0
    assert t16["gradient_bytes_streamed"] == t32["gradient_bytes_streamed"] > 0  # gradients leave in f32
    products = [la for la in r16.module.layers.values() if la.attrs["kind"] in ("matmul", "attention")]
    assert products and all(la.attrs["operand_dtype"] == DType.bf16 for la in products)
    assert all(la.attrs["storage"] == DType.bf16 for la in r16.module.layers.values())
    assert t16["cycles"] < t32["cycles"]  # the products at @fmachs, twice @fmacs


def test_bf16_runtime_counters_agree_with_the_plan(mlp_plans):
    r, d, inputs = mlp_plans["bf16"]
    assert json.loads((d / "training.json").read_text())["precision"] == "bf16"
    with TrainStep(d) as ts:
        res = ts.interp.run([np.asarray(x) for x in inputs], on_stream=lambda pos, value: None)
    seen = 0
    for ls in res.stats.layers:
        layer = r.module.layers[ls.name]
        assert ls.weight_bytes == layer.attrs["stream"]["bytes"], ls.name
        for buf, nbytes in (ls.per_pe or {}).items():
            seen += 1
            assert layer.attrs["memory"][buf] == nbytes, (ls.name, buf)
    assert seen > 0
    assert res.stats.weight_bytes_streamed == r.module.attrs["plan.totals"]["weight_bytes_streamed"]


def test_a_bf16_plan_run_at_another_precision_is_refused(mlp_plans):
    r, d, inputs = mlp_plans["bf16"]
    from runtime import Interpreter

    with TrainStep(d) as ts:
        with pytest.raises(
            RuntimeExecutionError, match=r"the plan stores tensors in bf16 .* this run's precision is fp32"
        ):
            Interpreter(r.module, ts.weights, plan=True, precision="fp32")


def test_layer_and_module_storage_must_agree(mlp_plans):
    import copy

    from wafercc.ir.plan import PlanFormatError, load_plan

    r, _, _ = mlp_plans["bf16"]
    m = copy.deepcopy(r.module)
    del m.attrs["storage"]  # a bf16 plan's layers on a module that says its tensors are in their own dtypes
    with pytest.raises(PlanFormatError, match=r"storage: bf16, but the module's storage is absent"):
        load_plan(m)
    m = copy.deepcopy(r.module)
    next(iter(m.layers.values())).attrs["storage"] = "f64"
    with pytest.raises(PlanFormatError, match=r"storage: expected bf16 or f16 \(the module's 16-bit storage\)"):
        load_plan(m)
