"""Decompositions applied at capture (wafercc/frontend/decompose.py): each rewrite computes what the op
computes, library custom ops are decomposed when they can be, and one that cannot is one clear error naming
it, its source line and why."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from wafercc.errors import UnsupportedOpError
from wafercc.frontend import capture, import_graph
from wafercc.frontend.decompose import DECOMPOSITIONS, Decline
from wafercc.numerics import compare_model

grouped_mm = DECOMPOSITIONS["transformers::grouped_mm_fallback"]
histc = DECOMPOSITIONS["aten::histc"]
index_put = DECOMPOSITIONS["aten::index_put"]


def _grouped_mm_loop(x, w, offs):  # the library's own definition (transformers/integrations/moe.py)
    out = torch.zeros(x.shape[0], w.shape[2], dtype=x.dtype)
    start = 0
    for i, end in enumerate(offs.tolist()):
        out[start:end] = x[start:end] @ w[i]
        start = end
    return out


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(0, 4), min_size=1, max_size=5), tail=st.integers(0, 3), seed=st.integers(0, 99))
def test_grouped_mm_matches_the_loop(counts, tail, seed):
    # empty groups, and rows past offs[-1] (which the loop leaves zero), included
    g = torch.Generator().manual_seed(seed)
    offs = torch.tensor(counts).cumsum(0).to(torch.int32)
    x = torch.randn(int(offs[-1]) + tail, 3, generator=g)
    w = torch.randn(len(counts), 3, 5, generator=g)
    torch.testing.assert_close(grouped_mm(x, w, offs), _grouped_mm_loop(x, w, offs), rtol=1e-6, atol=1e-6)


def test_aten_grouped_mm_matches_torch():
    # torch._grouped_mm (transformers' path for bf16 weights) leaves the rows past offs[-1] undefined
    x, w = torch.randn(6, 8), torch.randn(3, 8, 8)
    offs = torch.tensor([2, 2, 5], dtype=torch.int32)
    got = DECOMPOSITIONS["aten::_grouped_mm"](x, w, offs)
    torch.testing.assert_close(got[:5], torch._grouped_mm(x, w, offs=offs)[:5], rtol=1e-6, atol=1e-6)
    with pytest.raises(Decline):
        DECOMPOSITIONS["aten::_grouped_mm"](x, w, None)


def test_grouped_mm_is_not_poisoned_by_other_groups():
    # a row times another group's weights may overflow; the row's own result must not turn into nan
    x = torch.tensor([[1e30], [1.0]])
    w = torch.tensor([[[1.0]], [[1e30]]])
    out = grouped_mm(x, w, torch.tensor([1, 2]))
    assert torch.equal(out, torch.tensor([[1e30], [1e30]]))


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.floats(-3, 7, width=32), st.sampled_from([0.0, 5.0, -1.0, float("nan")])), min_size=1, max_size=20
    ),
    bins=st.integers(1, 7),
    lo=st.sampled_from([0.0, -1.0, 0.5]),
    width=st.sampled_from([5.0, 3.0, 1.5]),
)
def test_histc_matches_torch(values, bins, lo, width):
    x = torch.tensor(values, dtype=torch.float32)
    assert torch.equal(histc(x, bins, lo, lo + width), torch.histc(x, bins, lo, lo + width))


def test_histc_with_a_data_range_declines():
    with pytest.raises(Decline, match="range from the data"):
        histc(torch.randn(4), 3, 0, 0)


INDEX_PUT_CASES = [
    ("1-D, a permutation", (6,), lambda: [torch.tensor([3, 0, 5, 1, 4, 2])], (6,)),
    ("rows, duplicates and negatives", (5, 3), lambda: [torch.tensor([0, -1, 2, 2])], (4, 3)),
    ("broadcast value", (5, 3), lambda: [torch.tensor([1, 3])], ()),
    ("two index tensors", (4, 5), lambda: [torch.tensor([0, 3, 3]), torch.tensor([4, 0, 1])], (3,)),
    ("a slice first", (3, 4, 2), lambda: [None, torch.tensor([[0, 3], [1, 1]])], (3, 2, 2, 2)),
    ("non-adjacent indices", (3, 4, 5), lambda: [torch.tensor([0, 2]), None, torch.tensor([1, 4])], (2, 4)),
]


@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("case", INDEX_PUT_CASES, ids=[c[0] for c in INDEX_PUT_CASES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.int64])
def test_index_put_matches_torch(case, accumulate, dtype):
    _, shape, make_indices, vshape = case
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g) * 10).to(dtype)
    v = (torch.randn(vshape, generator=g) * 10).to(dtype)
    indices = make_indices()
    want = torch.ops.aten.index_put(x, indices, v, accumulate)
    got = index_put(x, indices, v, accumulate)
    if accumulate or case[0] != "rows, duplicates and negatives":
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    else:  # torch leaves duplicates undefined; its CPU kernel writes in order, so the last one wins
        torch.testing.assert_close(got, want)


def test_index_put_with_a_mask_and_one_value():
    x = torch.randn(3, 4)
    mask = x > 0
    for acc in (False, True):
        want = torch.ops.aten.index_put(x, [mask], torch.tensor(2.5), acc)
        assert torch.equal(index_put(x, [mask], torch.tensor(2.5), acc), want)
    rows = torch.tensor([True, False, True])
    minus = torch.tensor(-1.0)
    assert torch.equal(index_put(x, [rows], minus), torch.ops.aten.index_put(x, [rows], minus))
    with pytest.raises(Decline, match="data-dependent"):
        index_put(x, [mask], torch.ones(int(mask.sum())))


class _Scatter(nn.Module):
    """inv[perm] = arange and a histogram, as transformers' MoE routing computes them."""

    def forward(self, x):
        _, perm = torch.sort(x)
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.shape[0])
        return x[inv] * 2 + torch.histc(x, bins=4, min=-2, max=2).sum()


def test_ops_without_a_converter_are_decomposed_at_capture():
    from wafercc.frontend.capture import importable
    from wafercc.frontend.decompose import core_table, decompose_unsupported

    m, x = _Scatter(), torch.randn(8)
    cap = capture(m, (x,))
    assert all(importable(n.target) for n in cap.graph.nodes if n.op == "call_function")
    assert compare_model(m, (x,), plan=False).passed
    # wafercc's table at work, whatever converters the importer has meanwhile
    mine = {torch.ops.aten.histc.default, torch.ops.aten.index_put.default, torch.ops.aten.empty_permuted.default}
    ep = torch.export.export(m, (x,)).run_decompositions(core_table())
    dec = decompose_unsupported(ep, lambda t: t not in mine and importable(t))
    assert sorted(dec.applied) == ["aten::empty_permuted", "aten::histc", "aten::index_put"], dec.applied
    assert not any(n.target in mine for n in dec.program.graph.nodes)
    torch.testing.assert_close(dec.program.module()(x), m(x))


@torch.library.custom_op("wafercc_test::scaled_silu", mutates_args=())
def _scaled_silu(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.silu(x) * scale


@_scaled_silu.register_fake
def _(x, scale):
    return torch.empty_like(x)


class _UsesStaticCustomOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return _scaled_silu(self.fc(x), torch.tensor(1.5))


def test_a_custom_op_with_a_static_implementation_is_decomposed():
    torch.manual_seed(0)
    m, x = _UsesStaticCustomOp(), torch.randn(2, 4)
    cap = capture(m, (x,))
    assert not any("scaled_silu" in str(n.target) for n in cap.graph.nodes)
    ops = import_graph(cap).module.func().ops
    sigmoid = next(op for op in ops if op.name == "sigmoid")  # silu's core-ATen form
    assert sigmoid.loc is not None and sigmoid.loc.file.endswith("test_decompositions.py")  # the model's line
    assert compare_model(m, (x,), plan=False).passed


DATA_DEPENDENT_OP = textwrap.dedent("""
    import torch
    from torch import nn

    @torch.library.custom_op("wafercc_test::repeat_rows", mutates_args=())
    def repeat_rows(x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[i:i + 1].expand(int(c), -1) for i, c in enumerate(counts.tolist())]).sum(0, keepdim=True)

    @repeat_rows.register_fake
    def _(x, counts):
        return x.new_empty(1, x.shape[1])

    class M(nn.Module):
        def forward(self, x):
            return repeat_rows(torch.relu(x), torch.tensor([1, 2, 3]))  # line 15

    model = M()
    example_inputs = (torch.randn(3, 4),)
""")


def test_a_custom_op_that_cannot_be_decomposed_is_one_clear_error(tmp_path):
    path = tmp_path / "dd_op.py"
    path.write_text(DATA_DEPENDENT_OP)
    r = subprocess.run(
        [sys.executable, "-m", "wafercc.cli", "compile", str(path), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert f"wafercc_test::repeat_rows  at {path.name}:15" in r.stderr or f"{path}:15" in r.stderr, r.stderr
    assert "not decomposed" in r.stderr and "data-dependent" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_the_error_in_process_names_the_op():
    ns = {}
    exec(
        compile(DATA_DEPENDENT_OP.replace("wafercc_test::repeat_rows", "wafercc_test::repeat_rows2"), "dd.py", "exec"),
        ns,
    )
    with pytest.raises(UnsupportedOpError, match=r"wafercc_test::repeat_rows2 .*\n.*not decomposed"):
        import_graph(capture(ns["model"], ns["example_inputs"]))


class _Bilinear(nn.Module):
    def forward(self, x):
        y = nn.functional.interpolate(x, scale_factor=2, mode="bilinear")
        return nn.functional.interpolate(y, size=(5, 7), mode="bilinear", align_corners=True)


def test_ops_torch_can_decompose_are_decomposed():
    # An op without a converter that torch has a decomposition for (upsample_bilinear2d.vec, SegFormer's decode
    # head, before it had a converter) is decomposed by torch's. Which ops lack a converter changes, so the
    # importer's coverage is stood in for here.
    from wafercc.frontend.capture import importable
    from wafercc.frontend.decompose import core_table, decompose_unsupported

    m, x = _Bilinear(), torch.randn(1, 2, 4, 4)
    ep = torch.export.export(m, (x,)).run_decompositions(core_table())
    bilinear = torch.ops.aten.upsample_bilinear2d.vec
    assert any(n.target is bilinear for n in ep.graph.nodes)
    dec = decompose_unsupported(ep, lambda t: t is not bilinear and importable(t))
    assert dec.applied == ["aten::upsample_bilinear2d"] and not dec.failures
    assert not any(n.target is bilinear for n in dec.program.graph.nodes)
    torch.testing.assert_close(dec.program.module()(x), m(x))
    assert compare_model(m, (x,), plan=False).passed  # by the converter or the decomposition


class _HistcAndIndexPut(nn.Module):
    def forward(self, x):
        idx = torch.tensor([3, 0, 5])
        return torch.index_put(x, (idx,), x[:3] * 2) + torch.histc(x, bins=4, min=-2, max=2).sum()


def test_the_fx_capture_uses_the_same_table():
    from wafercc.frontend.capture import importable

    m, x = _HistcAndIndexPut(), torch.randn(8)
    cap = capture(m, (x,), method="fx")
    assert all(importable(n.target) for n in cap.graph.nodes if n.op == "call_function")
    assert compare_model(m, (x,), capture="fx", plan=False).passed


class _ErfcxThenHistc(nn.Module):
    def forward(self, x):
        return torch.histc(torch.special.erfcx(x), bins=4, min=0, max=2)


def test_a_decomposition_that_only_trades_the_op_for_another_is_not_kept():
    # Regression: torch decomposes special_erfcx into prims::erfcx; the error named the prims op, which the
    # model never calls. The op of the model is kept and the error says what its decomposition would need;
    # the other op's decomposition (histc) is still applied.
    from wafercc.frontend.capture import importable
    from wafercc.frontend.decompose import core_table, decompose_unsupported

    erfcx = {torch.ops.aten.special_erfcx.default, torch.ops.prims.erfcx.default}
    histc_op = torch.ops.aten.histc.default
    m, x = _ErfcxThenHistc(), torch.randn(6)
    ep = torch.export.export(m, (x,)).run_decompositions(core_table())
    dec = decompose_unsupported(ep, lambda t: t not in erfcx and t is not histc_op and importable(t))
    targets = {n.target for n in dec.program.graph.nodes}
    assert torch.ops.aten.special_erfcx.default in targets and torch.ops.prims.erfcx.default not in targets
    assert histc_op not in targets and dec.applied == ["aten::histc"]
    assert dec.failures == {
        "aten::special_erfcx": "its decomposition brings prims::erfcx, which wafercc cannot take either"
    }
