"""Causal block skipping: the tiler recognizes, from the WIR graph, attention whose scores a constant causal
mask masks before the softmax (and the P.V whose P is then zero above the diagonal), marks the tiling
(``tiling.causal``), and charges only the tiles on or below the diagonal; the typed plan refuses a marking the
graph does not justify; the runtime skips those tiles only after checking that this changes no bit, and runs
to eager PyTorch's numbers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import wafercc
from runtime import Interpreter, Store
from wafercc.ir import DType, parse, print_module
from wafercc.ir.causal import analyze, offset_of_masked, users
from wafercc.ir.plan import PlanFormatError
from wafercc.mapping.flows import LinkLoad
from wafercc.mapping.tiling import Shape, causal_scores_work, search
from wafercc.target.target import parse_target


class Attention(nn.Module):
    """One attention over a projection of x: q, k, v of ``heads`` heads; ``mask`` picks how it is masked."""

    def __init__(self, mask: str, d: int = 32, heads: int = 4):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.mask, self.heads = mask, heads

    def forward(self, x, keep=None):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.mask == "is_causal":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif self.mask == "tril":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=torch.tril(torch.ones(t, t, dtype=torch.bool)))
        elif self.mask == "shifted":  # the last 8 queries against all t keys: key j <= query i + (t - 8)
            q = q[:, :, -8:]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(8, t, dtype=torch.bool).tril(t - 8))
            return y.transpose(1, 2).reshape(b, 8, d)
        elif self.mask == "none":
            y = F.scaled_dot_product_attention(q, k, v)
        elif self.mask == "input":  # a mask given at run time is not a constant: nothing to skip
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        elif self.mask == "kept_scores":  # the raw scores are also returned: a skipped tile would show
            s = q @ k.transpose(-1, -2)
            m = torch.full((t, t), float("-inf")).triu(1)
            y = torch.softmax(s + m, dim=-1) @ v
            return y.transpose(1, 2).reshape(b, t, d), s
        return y.transpose(1, 2).reshape(b, t, d)


def _compile(model, inputs, target="mesh:16x16", out_dir=None, **kw):
    return wafercc.compile(model, inputs, target=target, out_dir=out_dir, **kw)


def _causal(module) -> dict[str, tuple[str, int]]:
    return {
        layer.name: (layer.attrs["tiling"]["causal"]["on"], layer.attrs["tiling"]["causal"]["offset"])
        for layer in module.layers.values()
        if "causal" in layer.attrs.get("tiling", {})
    }


def _uncausal(module):
    """The same plan without the marking (always a valid plan: every tile computed)."""
    m = copy.deepcopy(module)
    for layer in m.layers.values():
        layer.attrs.get("tiling", {}).pop("causal", None)
    return m


def _x(t: int = 37):
    torch.manual_seed(0)
    return (torch.randn(2, t, 32),)


# -- recognition ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", ["is_causal", "tril"])
def test_sdpa_causal_attention_is_marked(mask):
    r = _compile(Attention(mask), _x())
    assert sorted(_causal(r.module).values()) == [("probs", 0), ("scores", 0)]


def test_hf_llama_attention_is_marked():
    """HF LLaMA's eager attention: scores x scale + a finfo.min mask, softmax, P.V (both blocks)."""
    from tests.zoo import llama

    model, inputs = llama()
    r = _compile(model, inputs, target="wse2")
    assert sorted(_causal(r.module).values()) == [("probs", 0)] * 2 + [("scores", 0)] * 2


def test_a_shifted_diagonal_keeps_its_offset():
    r = _compile(Attention("shifted"), _x(24))
    assert sorted(_causal(r.module).values()) == [("probs", 16), ("scores", 16)]


@pytest.mark.parametrize("mask", ["none", "input", "kept_scores"])
def test_what_is_not_causal_is_not_marked(mask):
    """No mask; a mask given at run time; scores that reach something besides the mask (here the model's
    output): the products are computed whole. (kept_scores' P.V is still marked: its P is the softmax of
    masked scores.)"""
    x = _x(16)
    inputs = (*x, torch.ones(16, 16, dtype=torch.bool).tril()) if mask == "input" else x
    r = _compile(Attention(mask), inputs)
    assert [on for on, _ in _causal(r.module).values()] == (["probs"] if mask == "kept_scores" else [])


def test_offset_is_the_last_unmasked_key_past_the_diagonal():
    m = np.ones((1, 4, 6), dtype=bool)  # True: masked
    for i in range(4):
        m[0, i, : i + 3] = False  # query i sees keys 0 .. i + 2
    assert offset_of_masked(m) == 2
    m[0, 1, 5] = False  # one key far past the diagonal moves it for every row: 1 + 4 = 5
    assert offset_of_masked(m) == 4
    m[0, 0, 5] = False  # the first query sees the last key: nothing is left to skip
    assert offset_of_masked(m) is None


# -- the cost model ---------------------------------------------------------------------------------------


def test_causal_scores_work_counts_the_tiles_on_or_below_the_diagonal():
    """Against a brute-force count: per pass, row group 0's busiest row computes every chunk that starts at
    or before its last token + offset; streamed keys are every group's such chunks."""
    for M, N, off, per_pass, passes, groups, nc in [
        (37, 37, 0, 19, 2, 1, 4),
        (64, 64, 0, 16, 4, 2, 8),
        (8, 24, 16, 8, 1, 3, 3),
        (50, 50, -3, 10, 5, 4, 1),
        (100, 80, 0, 30, 4, 1, 128),
    ]:
        nt = -(-N // groups)
        steps = streamed = out = 0
        for p in range(passes):
            last = min((p + 1) * per_pass, M) - 1
            for g in range(groups):
                for a in range(g * nt, min((g + 1) * nt, N), nc):
                    if a <= last + off:
                        b = min(a + nc, (g + 1) * nt, N)
                        streamed += b - a
                        if g == 0:
                            steps, out = steps + 1, out + b - a
        got = causal_scores_work(M, N, off, np.array(per_pass), np.array(passes), np.array(nt), np.array(nc))
        assert tuple(int(v) for v in got) == (steps, streamed, out), (M, N, off)


def test_prefill_scores_cost_less_when_causal():
    """LLaMA3-8B's Q.K^T at 4K tokens on 480 x 480 PEs: with the causal mask known, passes over M stream
    only the keys each pass's tokens see (the later passes more); the roofline counts the products on or
    below the diagonal; the estimate is still its terms' composition."""
    t = parse_target("mesh:480x480,clock-ghz=1.1")
    B, M, K, N = 32, 4096, 128, 4096
    plain = Shape("attention", B, M, K, N, DType.f32, 0, 2 * B * M * K * N, B * M * N)
    causal = Shape("attention", B, M, K, N, DType.f32, 0, 2 * B * M * K * N, B * M * N, causal=("scores", 0))
    a, b = search(plain, t).cost_dict(), search(causal, t).cost_dict()
    # Not half: a pass's rows run in step with its broadcast chunks, so each pass costs its last row's
    # chunks: 9 passes of one token per row (456 rows) leave (1 + ... + 8) x 456 + 4096 of every row's 9 x 4096
    # key columns without the mask, 0.56, and more broadcast (docs/hardware.md).
    assert b["total"] < 0.6 * a["total"], (a, b)
    assert b["compute"] < 0.6 * a["compute"]
    assert b["roofline"] == pytest.approx(a["roofline"] * (1 + 1 / M) / 2, rel=1e-3)
    for c in (a, b):
        overlapped = max(c["compute"], c["ingress"], c["broadcast"], c["reduce"])
        assert c["total"] == pytest.approx(overlapped + c["latency"] + c["tail"], abs=0.2)


@pytest.fixture(scope="module")
def causal_plan(tmp_path_factory):
    d = tmp_path_factory.mktemp("causal")
    model, inputs = Attention("is_causal"), _x()
    r = _compile(model, inputs, out_dir=d)
    with torch.no_grad():
        ref = model(*inputs).numpy()
    return r.module, Store(d), [x.numpy() for x in inputs], ref, d


def test_routes_carry_what_the_estimate_charges(causal_plan):
    """The causal scores' reduce rings carry only the chunks on or below the diagonal, exactly what the
    estimate's reduce term charges (half each way); the busiest link recomputed from the routes is the
    plan's."""
    module, *_ = causal_plan
    t = parse_target(module.attrs["target"])
    for layer in module.layers.values():
        a = layer.attrs
        if a.get("kind") != "attention":
            continue
        rings = [r for r in a["routes"] if r["flow"] == "reduce"]
        if rings:
            assert 2 * rings[0]["bytes"] == pytest.approx(a["estimate"]["reduce"] * t.link_bytes_per_cycle, abs=2)
        load = LinkLoad(t.width, t.height)
        from wafercc.mapping.flows import Flow

        for r in a["routes"]:
            load.add(Flow(r["flow"], layer.name, tuple(r["box"]), r["axis"], r.get("src"), r["bytes"]))
        assert load.busiest()[0] == pytest.approx(a["links"]["bytes"], abs=2)


def test_the_report_shows_the_skipping(causal_plan):
    from tests.cli_runner import run_cli

    module, *_, out = causal_plan
    name = next(layer.name for layer in module.layers.values() if _is_scores(layer.attrs))
    r = run_cli("report", out, "--layer", name)
    assert r.returncode == 0, r.stderr
    assert "  causal      score tiles wholly above the mask's diagonal (key > query) are skipped" in r.stdout
    table = (out / "report.txt").read_text()
    row = next(line for line in table.splitlines() if line.startswith(name + " "))
    assert " cs " in row + " "


# -- the typed plan ---------------------------------------------------------------------------------------


def _refused(module, store, xs, pick, edit, match):
    m = copy.deepcopy(module)
    layer = next(x for x in m.layers.values() if pick(x.attrs))
    edit(layer.attrs)
    with pytest.raises(PlanFormatError, match=match.replace("{name}", layer.name)):
        Interpreter(m, store).run(xs)


def _is_scores(a):
    return a.get("tiling", {}).get("causal", {}).get("on") == "scores"


def test_a_marking_the_graph_does_not_justify_is_refused(tmp_path):
    model, inputs = Attention("none"), _x(16)
    r = _compile(model, inputs, out_dir=tmp_path)
    _refused(
        r.module,
        Store(tmp_path),
        [x.numpy() for x in inputs],
        lambda a: a.get("kind") == "attention",
        lambda a: a["tiling"].__setitem__("causal", {"on": "scores", "offset": 0}),
        r"layer @{name}: tiling.causal: \{on = scores, offset = 0\}, but the graph does not justify it: the scores "
        r"of %bmm are not masked by a constant causal mask before the softmax, nor is its first operand the "
        r"softmax of such masked scores \[plan-causal\]",
    )


def test_a_wrong_offset_or_role_is_refused(causal_plan):
    module, store, xs, _, _ = causal_plan
    _refused(
        module,
        store,
        xs,
        _is_scores,
        lambda a: a["tiling"]["causal"].__setitem__("offset", -1),
        r"layer @{name}: tiling.causal: \{on = scores, offset = -1\}, but the graph justifies \{on = scores, "
        r"offset = 0\} for %bmm \[plan-causal\]",
    )
    _refused(
        module, store, xs, _is_scores, lambda a: a["tiling"]["causal"].__setitem__("on", "keys"), r"expected one of"
    )
    _refused(
        module,
        store,
        xs,
        _is_scores,
        lambda a: a["tiling"]["causal"].__setitem__("offset", 0.5),
        r"tiling.causal.offset: expected an integer, got 0.5",
    )


def test_a_marking_on_a_matmul_layer_is_refused(causal_plan):
    module, store, xs, _, _ = causal_plan
    _refused(
        module,
        store,
        xs,
        lambda a: a.get("kind") == "matmul",
        lambda a: a["tiling"].__setitem__("causal", {"on": "scores", "offset": 0}),
        r"layer @{name}: tiling.causal: causal skipping is planned for attention layers in stream mode, not a "
        r"matmul layer \[plan-causal\]",
    )


# -- the runtime ------------------------------------------------------------------------------------------


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint32 if a.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("order", ["grouped", "ring"])
def test_causal_plan_runs_to_eager_and_skips(causal_plan, order):
    module, store, xs, ref, _ = causal_plan
    it = Interpreter(module, store, order=order)
    out = it.run(xs).outputs[0]
    assert np.abs(out - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    assert all(c == {"skipped": 1, "computed": 0} for c in it.planned.causal_runs.values())
    assert len(it.planned.causal_runs) == 2


def test_ring_order_is_bitwise_the_unskipped_plan(causal_plan):
    """In the wafer's own summation order every kept partial sum is added as without skipping, and a
    skipped one would have added +-0.0 to a finite sum: the results are the same bits."""
    module, store, xs, _, _ = causal_plan
    a = Interpreter(module, store, order="ring").run(xs).outputs[0]
    b = Interpreter(_uncausal(module), store, order="ring").run(xs).outputs[0]
    assert np.array_equal(_bits(a), _bits(b))


def test_the_masked_scores_are_bitwise_the_unskipped_ones(causal_plan):
    """In either order the skipped score tiles (0.0) become exactly what the mask makes of the computed
    ones: every value from the mask's add on is the same bits. (In grouped order P.V's shorter reduction
    is one BLAS product of another length, whose fp32 sums differ from the full one's by rounding only, as
    grouped and ring orders do: checked to eager above.)"""
    module, store, xs, _, _ = causal_plan
    seen = [{}, {}]
    for i, m in enumerate((module, _uncausal(module))):
        Interpreter(m, store).run(xs, on_result=lambda op, out, i=i: seen[i].__setitem__(op.results[0].name, out[0]))
    func = module.func()
    adds = [op.results[0].name for op in func.ops if op.name in ("add", "softmax")]
    assert len(adds) >= 2
    for name in adds:
        if seen[0][name].dtype.kind == "f":
            assert np.array_equal(_bits(seen[0][name]), _bits(seen[1][name])), name


@pytest.mark.parametrize("bad", ["inf", "nan"])
def test_non_finite_inputs_compute_every_tile(causal_plan, bad):
    """An infinite or NaN input reaches Q, K and V: a score might be inf or NaN (the mask would not make it
    -inf) and 0 x inf is NaN, so the runtime's checks make both products compute every tile, and the
    result is the unskipped plan's, NaNs included."""
    module, store, xs, _, _ = causal_plan
    x = xs[0].copy()
    x[0, 3, 5] = float(bad)
    it = Interpreter(module, store, order="ring")
    a = it.run([x]).outputs[0]
    b = Interpreter(_uncausal(module), store, order="ring").run([x]).outputs[0]
    assert all(c == {"skipped": 0, "computed": 1} for c in it.planned.causal_runs.values())
    assert np.array_equal(_bits(a), _bits(b))


def test_hf_llama_runs_causal_to_eager(tmp_path):
    from tests.zoo import llama

    model, inputs = llama()
    r = _compile(model, inputs, target="mesh:8x8", out_dir=tmp_path)
    with torch.no_grad():
        ref = model(*inputs)
    ref = (ref[0] if isinstance(ref, tuple) else ref).numpy()
    it = Interpreter(r.module, Store(tmp_path), order="ring")
    out = it.run([x.numpy() for x in inputs]).outputs[0]
    assert np.abs(out - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    assert sum(c["skipped"] for c in it.planned.causal_runs.values()) == 4


def test_skipping_does_change_the_scores(causal_plan):
    """The check can fail: the anchor's own result does differ above the diagonal (0.0 where the score is
    not), so the bitwise agreement after the mask is not a comparison of two unskipped runs."""
    module, store, xs, _, _ = causal_plan
    seen = [{}, {}]
    for i, m in enumerate((module, _uncausal(module))):
        Interpreter(m, store).run(xs, on_result=lambda op, out, i=i: seen[i].__setitem__(op.results[0].name, out[0]))
    scores = next(op for op in module.func().ops if op.name == "bmm").results[0].name
    s, full = seen[0][scores], seen[1][scores]
    assert not np.array_equal(s, full)
    upper = np.triu(np.ones(s.shape[1:], dtype=bool), 1)
    assert (s[:, upper] == 0).mean() > 0.5 and (full[:, upper] != 0).all()


def test_wir_round_trip_keeps_the_marking(causal_plan):
    module, *_ = causal_plan
    again = parse(print_module(module))
    assert _causal(again) == _causal(module)
    func = again.func()
    uses = users(func)
    found = [analyze(func, op, uses) for op in func.ops if op.name == "bmm"]
    assert sorted((u.on, u.offset) for u in found if u is not None) == [("probs", 0), ("scores", 0)]


def test_masked_fill_attention_is_marked_and_skipped(example_models, tmp_path):
    """examples/gpt.py masks with masked_fill(~tril, -inf), a where selecting the fill: the scores are
    skipped whatever they hold (the fill replaces them), and the run is the unskipped plan's, bit for bit
    in ring order, and eager's within 1e-5."""
    model, inputs = example_models["gpt"]
    r = _compile(model, inputs, out_dir=tmp_path)
    assert sorted(_causal(r.module).values()) == [("probs", 0)] * 2 + [("scores", 0)] * 2
    xs = [x.numpy() for x in inputs]
    it = Interpreter(r.module, Store(tmp_path), order="ring")
    out = it.run(xs).outputs[0]
    base = Interpreter(_uncausal(r.module), Store(tmp_path), order="ring").run(xs).outputs[0]
    assert np.array_equal(_bits(out), _bits(base))
    with torch.no_grad():
        ref = model(*inputs).numpy()
    assert np.abs(out - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    assert all(c == {"skipped": 1, "computed": 0} for c in it.planned.causal_runs.values())
