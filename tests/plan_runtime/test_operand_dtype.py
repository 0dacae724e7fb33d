"""A product of exact 16-bit values accumulated in fp32 (``operand_dtype``, docs/plan.md): the plan stores and
moves its operands in 2 bytes and computes at the FMAC's fp32-accumulate rate; the runtime counts the same
bytes and computes the same numbers as without it. Operands computed in fp32 (scaled, a softmax) keep 4."""

from __future__ import annotations

import copy

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import wafercc
from runtime import Interpreter, Store
from wafercc.ir import DType
from wafercc.ir.plan import PlanFormatError


class Upcast(torch.nn.Module):
    """bf16 activations and a bf16 weight, multiplied in fp32 the way autocast-free code does (``.float()``)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(8, 12).to(torch.bfloat16))

    def forward(self, q, k, v):
        s = torch.bmm(q.float(), k.float().transpose(1, 2))  # exact upcasts through a transpose: 16-bit operands
        p = torch.softmax(s, dim=-1)
        y = torch.bmm(p, v.float())  # p is an fp32 softmax: not 16-bit values, stays 4-byte
        z = q.float() @ self.w.float()  # a streamed bf16 weight, upcast: 2 bytes a value
        return y + z[..., :8]


class Scaled(torch.nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # the math path scales q, k in fp32


def _inputs():
    torch.manual_seed(0)
    return tuple(torch.randn(1, 16, 8).to(torch.bfloat16) for _ in range(3))  # B = 1: no batch groups


def _np(inputs):
    return [x.float().numpy().astype(ml_dtypes.bfloat16) for x in inputs]


def _compile(model, inputs, d, target="mesh8"):
    r = wafercc.compile(model.eval(), inputs, name="m", target=target, out_dir=d)
    with torch.no_grad():
        ref = model(*inputs).float().numpy()
    return r, Store(d), ref


def _anchors(module):
    return [layer for layer in module.layers.values() if layer.attrs["kind"] in ("matmul", "attention")]


@pytest.mark.parametrize("target", ["mesh4", "mesh8", "wse2"])
def test_exact_upcasts_are_16_bit_operands_and_the_runtime_agrees(target, tmp_path):
    inputs = _inputs()
    r, store, ref = _compile(Upcast(), inputs, tmp_path, target)
    qk, pv, proj = sorted(_anchors(r.module), key=lambda la: la.attrs["index"])
    assert qk.attrs["operand_dtype"] == DType.bf16 and qk.attrs["dtype"] == DType.f32
    assert "operand_dtype" not in pv.attrs  # the softmax's fp32 values are not bf16 values
    assert proj.attrs["operand_dtype"] == DType.bf16
    tl = qk.attrs["tiling"]
    assert "B" not in tl  # one product: no batch groups
    assert qk.attrs["memory"]["activation"] == tl["M"]["tile"] * tl["K"]["tile"] * 2
    res = Interpreter(r.module, store).run(_np(inputs))
    out = res.outputs[0]
    assert np.abs(out - ref).max() <= 1e-5 * max(1.0, float(np.abs(ref).max()))  # fp32: summation order only
    for ls in res.stats.layers:
        layer = r.module.layers[ls.name]
        assert ls.weight_bytes == layer.attrs["stream"]["bytes"], ls.name  # the bf16 weight: 2 bytes a value
        for buf, nbytes in (ls.per_pe or {}).items():
            assert layer.attrs["memory"][buf] == nbytes, (ls.name, buf)
    assert proj.attrs["stream"]["bytes"] == 8 * 12 * 2 * proj.attrs["tiling"]["passes"]


def test_16_bit_operands_take_the_fp32_accumulate_rate(tmp_path):
    """The same product with fp32 inputs computes at @fmacs (2 FLOP/cycle at peak on wse2), with exact bf16
    upcasts at @fmachs (f16acc32, 4), both times fmac_sustained: the rate read back from each plan's compute
    term (passes x N.steps chunks of M.tile x K.tile x N.chunk FMACs, plus a fill each)."""
    from wafercc.target import parse_target

    t = parse_target("wse2")
    inputs = _inputs()
    for model_inputs, dtype in ((inputs, DType.bf16), (tuple(x.float() for x in inputs), DType.f32)):
        r, _, _ = _compile(Upcast(), model_inputs, tmp_path / dtype.value, "wse2")
        a = _anchors(r.module)[0].attrs
        assert a.get("operand_dtype") == (DType.bf16 if dtype == DType.bf16 else None)
        tl = a["tiling"]
        chunks = tl["passes"] * tl["N"]["steps"]  # B = 1
        per_chunk = a["estimate"]["compute"] / chunks - t.fmac_pipeline_fill_cycles
        rate = 2 * tl["M"]["tile"] * tl["K"]["tile"] * tl["N"]["chunk"] / per_chunk
        assert rate == pytest.approx(t.fmac_rate(dtype), rel=0.02)  # compute is recorded to 0.1 cycle
        assert t.fmac_rate(dtype) == pytest.approx((4 if dtype == DType.bf16 else 2) * t.fmac_sustained)


def test_fp32_scaled_operands_keep_4_bytes(tmp_path):
    inputs = _inputs()
    r, store, ref = _compile(Scaled(), inputs, tmp_path)
    assert all("operand_dtype" not in layer.attrs for layer in _anchors(r.module))


def test_a_claim_the_operands_do_not_bear_is_refused(tmp_path):
    """A plan saying 16-bit operands for a product whose operand is computed in fp32 is refused at load."""
    inputs = _inputs()
    r, store, _ = _compile(Upcast(), inputs, tmp_path)
    m = copy.deepcopy(r.module)
    qk = _anchors(m)[0]
    convert = next(op for op in m.func().ops if op.name == "convert")  # q's upcast becomes an fp32 computation
    convert.name = "neg"
    convert.attrs.pop("dtype", None)
    with pytest.raises(PlanFormatError, match=rf"layer @{qk.name}: operand_dtype: bf16, but the operands of its "):
        Interpreter(m, store).run(_np(inputs))


def test_operand_dtype_must_be_16_bit(tmp_path):
    r, store, _ = _compile(Upcast(), _inputs(), tmp_path)
    m = copy.deepcopy(r.module)
    qk = _anchors(m)[0]
    qk.attrs["operand_dtype"] = "i8"
    with pytest.raises(PlanFormatError, match=r"operand_dtype: expected bf16 or f16 for the operands of an f32 prod"):
        Interpreter(m, store).run(_np(_inputs()))
