"""Capture and import rules that real libraries lean on: torch's legacy empty operands of cat, library custom
ops decomposed at capture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wafercc.frontend import capture, import_graph
from wafercc.numerics import compare_model


class _CatOntoEmpty(nn.Module):
    """What a fresh transformers DynamicCache does: torch.cat onto a 1-D tensor with no elements."""

    def __init__(self, dim: int, empty_first: bool, empty_dtype=torch.float32):
        super().__init__()
        self.dim, self.empty_first, self.empty_dtype = dim, empty_first, empty_dtype

    def forward(self, x):
        empty = torch.tensor([], dtype=self.empty_dtype)
        parts = [empty, x * 2, empty] if self.empty_first else [x * 2, empty, x]
        return torch.cat(parts, dim=self.dim) + 1


@pytest.mark.parametrize("dim, empty_first", [(-2, True), (0, True), (3, False), (-1, False)])
def test_cat_skips_empty_1d_operands_as_torch_does(dim, empty_first):
    # Regression: the empty operand used to reach the cat op when it came first ("cannot concatenate
    # tensor<0xf32> and tensor<2x2x16x16xf32>"), which broke every HF decoder with its default cache.
    torch.manual_seed(0)
    m, x = _CatOntoEmpty(dim, empty_first), torch.randn(2, 3, 4, 5)
    r = compare_model(m, (x,), plan=False)
    assert r.passed


def test_cat_keeps_the_promotion_from_a_skipped_operand():
    # torch.cat([f32 empty, f16 x]) is f32: the skipped operand still takes part in dtype promotion.
    m, x = _CatOntoEmpty(-1, True), torch.randn(2, 3, dtype=torch.float16)
    ops = [op.name for op in import_graph(capture(m, (x,))).module.func().ops]
    assert "convert" in ops
    assert m(x).dtype == torch.float32
    assert compare_model(m, (x,), plan=False).passed


def test_cat_of_only_empty_operands():
    class M(nn.Module):
        def forward(self, x):
            return torch.cat([torch.tensor([]), torch.tensor([])]).sum() + x

    assert compare_model(M(), (torch.randn(3),), plan=False).passed


class _SdpaThenView(nn.Module):
    """GPT-2's attention with sdpa: the output is transposed back, reshaped, and viewed by Conv1D."""

    def forward(self, q, k, v):
        b, h, n, e = q.shape
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(b, n, h * e)
        return y.view(-1, h * e) * 2


def test_sdpa_output_keeps_the_kernels_layout_through_decomposition():
    # Regression: torch's decomposition of the CPU flash-attention op lays its output out differently from the
    # kernel, so run_decompositions failed with "Cannot view a tensor with shape torch.Size([2, 8, 32]) and
    # strides (32, 64, 1)" on every GPT-2 with its default attention (sdpa).
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 8, 8) for _ in range(3))
    assert compare_model(_SdpaThenView(), (q, k, v), plan=False).passed


def test_the_sdpa_fix_matches_the_kernels_strides():
    # If a torch release changes the kernel's layout, the fix must follow it.
    from wafercc.frontend.decompose import _sdpa_flash_cpu

    q = torch.randn(2, 4, 8, 8)
    want = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, q, q)[0]
    got = _sdpa_flash_cpu(q, q, q)[0]
    assert got.stride() == want.stride()
    torch.testing.assert_close(got, want)
