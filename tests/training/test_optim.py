"""runtime/optim.py against torch.optim: SGD bit for bit; AdamW bit for bit given torch's sqrt (torch's CPU
sqrt is not correctly rounded; numpy's is), and within a few float32 ulps with numpy's."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import runtime.optim as optim
from runtime.optim import SGD, AdamW, OptimizerConfigError, from_dict
from tests.training.util import torch_sqrt, ulps
from wafercc.ir import WaferError

SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
    dict(lr=0.1, weight_decay=0.1),
    dict(lr=0.1, momentum=0.5, weight_decay=0.1, maximize=True),
]
ADAMW_CONFIGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, amsgrad=True),
    dict(lr=3e-3, betas=(0.3, 0.95), eps=1e-6, weight_decay=0.1),  # beta1 < 0.5: lerp's other branch
    dict(lr=1e-2, weight_decay=0.0, maximize=True),
    dict(lr=1e-3, betas=(0.8, 0.99), weight_decay=0.5, amsgrad=True, maximize=True),
]


def run_both(cfg, tcls, kw, n=4099, steps=6, foreach=False, seed=0, dtype=np.float32):
    """Parameters after ``steps`` updates by torch and by ``cfg``, from the same start and gradients."""
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = [(rng.standard_normal(n) * 10.0 ** rng.integers(-6, 2, n)).astype(np.float32) for _ in range(steps)]
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    topt = tcls([tp], foreach=foreach, **kw)
    p, state = p0.copy(), cfg.init_state("p", (n,))
    for t, g in enumerate(grads, 1):
        tp.grad = torch.from_numpy(g.copy())
        topt.step()
        cfg.step_chunk(p, g, state, t)
    tstate = topt.state[tp]
    return tp.detach().numpy(), p, tstate, state


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("kw", SGD_CONFIGS, ids=str)
def test_sgd_bit_for_bit(kw, foreach):
    tp, p, tstate, state = run_both(SGD(**kw), torch.optim.SGD, kw, foreach=foreach)
    assert np.array_equal(tp.view(np.int32), p.view(np.int32))
    if kw.get("momentum"):
        assert np.array_equal(tstate["momentum_buffer"].numpy(), state["momentum_buffer"])


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("kw", ADAMW_CONFIGS, ids=str)
def test_adamw_bit_for_bit_given_torchs_sqrt(kw, foreach, monkeypatch):
    monkeypatch.setattr(optim, "_sqrt", torch_sqrt)
    tp, p, tstate, state = run_both(AdamW(**kw), torch.optim.AdamW, kw, foreach=foreach)
    assert np.array_equal(tp.view(np.int32), p.view(np.int32))
    for k in AdamW(**kw).state_names():
        assert np.array_equal(tstate[k].numpy(), state[k]), k
    assert float(tstate["step"]) == 6.0


@pytest.mark.parametrize("kw", ADAMW_CONFIGS, ids=str)
def test_adamw_within_ulps_with_ieee_sqrt(kw):
    """Measured: torch's sqrt is 1 ulp off in ~0.7% of elements; after 6 steps the parameters differ by at
    most a few ulps (of the parameter) in a handful of elements, the moments not at all."""
    tp, p, tstate, state = run_both(AdamW(**kw), torch.optim.AdamW, kw)
    assert ulps(tp, p) <= 8
    assert np.mean(tp != p) < 0.01
    assert np.array_equal(tstate["exp_avg"].numpy(), state["exp_avg"])


def test_torch_sqrt_is_what_differs():
    """The premise of the two tests above: numpy's sqrt is correctly rounded, torch's (CPU) is not always."""
    v = np.random.default_rng(1).random(100_000).astype(np.float32)
    exact = np.sqrt(v.astype(np.float64)).astype(np.float32)  # innocuous double rounding: 53 >= 2*24 + 2
    assert np.array_equal(np.sqrt(v), exact)
    assert ulps(torch_sqrt(v), exact) <= 1


@pytest.mark.parametrize(
    "cfg",
    [SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1), AdamW(lr=1e-2, amsgrad=True)],
    ids=["sgd", "adamw"],
)
def test_chunked_equals_whole(cfg):
    rng = np.random.default_rng(3)
    n = 10_007
    p1 = rng.standard_normal(n).astype(np.float32)
    p2 = p1.copy()
    s1, s2 = cfg.init_state("x", (n,)), cfg.init_state("x", (n,))
    cuts = [0, 1, 17, 1000, 1001, 5000, 9999, n]
    for t in range(1, 5):
        g = rng.standard_normal(n).astype(np.float32)
        cfg.step_chunk(p1, g, s1, t)
        for a, b in zip(cuts, cuts[1:]):
            cfg.step_chunk(p2[a:b], g[a:b], {k: v[a:b] for k, v in s2.items()}, t)
    assert np.array_equal(p1.view(np.int32), p2.view(np.int32))
    for k in s1:
        assert np.array_equal(s1[k], s2[k])


@pytest.mark.parametrize("ours, theirs", [(ml_dtypes.bfloat16, torch.bfloat16), (np.float16, torch.float16)])
def test_narrow_weight_is_the_master_rounded_as_torch_rounds(ours, theirs):
    """What the training store streams: the fp32 master rounded to nearest even (overflow, subnormals too)."""
    rng = np.random.default_rng(5)
    m = (rng.standard_normal(100_000) * 10.0 ** rng.integers(-30, 30, 100_000)).astype(np.float32)
    with np.errstate(over="ignore"):
        mine = m.astype(ours)
    assert np.array_equal(
        mine.view(np.uint16), torch.from_numpy(m).to(theirs).view(torch.int16).numpy().view(np.uint16)
    )


f32s = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(f32s, f32s, f32s)
def test_fma_is_correctly_rounded(a, b, c):
    a, b, c = np.float32(a), np.float32(b), np.float32(c)
    got = optim._fma(np.array([a]), b, np.array([c]))[0]
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    want = np.float32(_round_f32(exact))
    assert got == want or (np.isinf(want) and np.isinf(got))


def _round_f32(x: Fraction) -> float:
    """x rounded to nearest-even float32 (via float64 candidates: exact comparisons in Fraction)."""
    if abs(x) >= 2**128 - 2**103:  # half an ulp above the largest float32: overflows to infinity
        return float("inf") if x > 0 else float("-inf")
    with np.errstate(all="ignore"):
        f = np.float32(float(x))  # a close guess; fix it by comparing neighbours exactly
        cands = (np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf)))
    best = None
    for cand in cands:
        if not np.isfinite(cand):
            continue
        d = abs(Fraction(float(cand)) - x)
        key = (d, int(np.array(cand).view(np.int32)) & 1)
        if best is None or key < best[0]:
            best = (key, cand)
    return float(best[1]) if best else float(f)


def test_fma_matches_torchs_fused_kernels():
    """add(alpha), lerp and addcmul in torch's CPU kernels are fused multiply-adds, all elements (vector
    body and scalar tail), at sizes that split across threads."""
    rng = np.random.default_rng(0)
    for n in (7, 33, 100_003):
        a, b = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
        c = (rng.standard_normal(n) * 1e-3).astype(np.float32)
        ta, tb, tc = map(torch.from_numpy, (a, b, c))
        assert np.array_equal(ta.add(tb, alpha=0.37).numpy(), optim._fma(b, np.float32(0.37), a))
        assert np.array_equal(ta.lerp(tb, 0.1).numpy(), optim._lerp(a, b, np.float32(0.1)))
        assert np.array_equal(ta.lerp(tb, 0.7).numpy(), optim._lerp(a, b, np.float32(0.7)))
        assert np.array_equal(tc.addcmul(ta, tb, value=1e-3).numpy(), optim._fma(np.float32(1e-3) * a, b, c))


def _hard_fma_cases() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Operands whose float64 sum a*b + c lands exactly on a float32 midpoint though the exact value does
    not (the double rounding ``_fma`` must repair), at normal and subnormal scales and both signs; exact zeros
    of either sign; results in and below float32's subnormal range; overflow."""
    one, u = np.float32(1), np.float32(2.0**-18)
    a0, b0 = one - u, np.float32(2.0**-24) * (one + u)  # a0*b0 = 2^-24 - 2^-60: half an ulp of 1, minus a hair
    cs = [np.float32(1), np.float32(1 + 2.0**-23), np.float32(1 + 2.0**-22 + 2.0**-23)]
    a, b, c = [], [], []
    for scale in (1.0, 2.0**-60, 2.0**-100, 2.0**-126, 2.0**-140, 2.0**60):
        for sign in (1, -1):
            for ci in cs:
                for flip in (1, -1):  # exact value just above the midpoint, and just below
                    a.append(a0 * flip)
                    b.append(np.float32(b0 * scale))
                    c.append(np.float32(sign * ci * scale))
    zeros = [(0.0, 1.0, 0.0), (-0.0, 1.0, -0.0), (0.0, -1.0, 0.0), (-0.0, -1.0, -0.0), (3.0, 2.0, -6.0)]
    tiny = [(2.0**-75, 2.0**-75, 0.0), (2.0**-75, 2.0**-76, 2.0**-149), (1e-30, 1e-10, -1e-40), (1e-38, 0.5, 0.0)]
    big = [(3e38, 2.0, 0.0), (-3e38, 2.0, 1.0), (2.0**64, 2.0**64, -(2.0**127))]
    for x, y, z in zeros + tiny + big:
        a.append(np.float32(x))
        b.append(np.float32(y))
        c.append(np.float32(z))
    return (np.array(v, dtype=np.float32) for v in (a, b, c))


def test_fma_hard_cases_are_correctly_rounded():
    a, b, c = _hard_fma_cases()
    got = optim._fma(a, b, c)
    for x, y, z, g in zip(a, b, c, got):
        want = np.float32(_round_f32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))))
        assert g == want or (np.isinf(want) and np.isinf(g)), (x, y, z, g, want)
    # signs of zero, and everything once more against torch's fused kernel (addcmul with value 1: c + a*b)
    want = torch.from_numpy(c).addcmul(torch.from_numpy(a), torch.from_numpy(b), value=1).numpy()
    assert np.array_equal(got.view(np.int32), want.view(np.int32))


def test_fma_in_blocks_with_zeros_matches_torch():
    """Long arrays, mostly zeros (a parameter without gradient), with the hard cases scattered in them; into
    ``out`` that is also the addend, as the optimizers call it."""
    rng = np.random.default_rng(11)
    n = 3 * optim.BLOCK + 1234
    ha, hb, hc = _hard_fma_cases()
    a, b = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
    c = (rng.standard_normal(n) * 10.0 ** rng.integers(-40, 3, n)).astype(np.float32)
    for x in (a, b, c):
        x[rng.random(n) < 0.9] = 0
    where = rng.choice(n, ha.size, replace=False)
    a[where], b[where], c[where] = ha, hb, hc
    want = torch.from_numpy(c.copy()).addcmul(torch.from_numpy(a), torch.from_numpy(b), value=1).numpy()
    for lo, hi in ((0, n), (5, optim.BLOCK + 3)):
        out = c[lo:hi].copy()
        optim._fma(a[lo:hi], b[lo:hi], out, out=out)
        assert np.array_equal(out.view(np.int32), want[lo:hi].view(np.int32))


@pytest.mark.parametrize("kw", ADAMW_CONFIGS + [dict(lr=1e-2, betas=(0.9, 0.999))], ids=str)
def test_adamw_sparse_gradients_over_many_blocks(kw, monkeypatch):
    """A tied embedding's step: most rows get a zero gradient, some tiny (their squares subnormal), over
    several blocks of the update and a tail; bit for bit with torch given its sqrt, the state too."""
    monkeypatch.setattr(optim, "_sqrt", torch_sqrt)
    rng = np.random.default_rng(7)
    n = 2 * optim.BLOCK + 77
    p0 = rng.standard_normal(n).astype(np.float32)
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    topt = torch.optim.AdamW([tp], foreach=False, **kw)
    cfg = AdamW(**kw)
    p, state = p0.copy(), cfg.init_state("p", (n,))
    for t in range(1, 9):
        g = (rng.standard_normal(n) * 10.0 ** rng.integers(-25, 2, n)).astype(np.float32)
        g[rng.random(n) < (0.99 if t % 2 else 0.5)] = 0
        tp.grad = torch.from_numpy(g.copy())
        topt.step()
        cfg.step_chunk(p, g, state, t)
    assert np.array_equal(tp.detach().numpy().view(np.int32), p.view(np.int32))
    for k in cfg.state_names():
        assert np.array_equal(topt.state[tp][k].numpy().view(np.int32), state[k].view(np.int32)), k


@pytest.mark.parametrize(
    "cfg",
    [SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1), AdamW(lr=1e-2, amsgrad=True)],
    ids=["sgd", "adamw"],
)
def test_strided_slices_update_in_place(cfg):
    """A non-contiguous slice is updated whole (not in blocks) and in place: the same numbers as a copy."""
    rng = np.random.default_rng(4)
    n = 2 * optim.BLOCK + 10
    p1 = rng.standard_normal(2 * n).astype(np.float32)
    p0, p2 = p1.copy(), p1[::2].copy()
    s1 = {k: np.zeros(2 * n, np.float32) for k in cfg.state_names()}
    s2 = cfg.init_state("x", (n,))
    for t in range(1, 4):
        g = rng.standard_normal(n).astype(np.float32)
        cfg.step_chunk(p1[::2], g, {k: v[::2] for k, v in s1.items()}, t)
        cfg.step_chunk(p2, g, s2, t)
    assert np.array_equal(p1[::2].view(np.int32), p2.view(np.int32))
    assert np.array_equal(p1[1::2], p0[1::2])  # the elements between untouched
    for k in s1:
        assert np.array_equal(s1[k][::2], s2[k])
        assert not s1[k][1::2].any()


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: SGD(lr=-0.1), "lr must be a finite number >= 0"),
        (lambda: SGD(lr=float("nan")), "lr must be a finite number"),
        (lambda: SGD(lr=0.1, momentum=-1), "momentum"),
        (lambda: SGD(lr=0.1, weight_decay=-1e-4), "weight_decay"),
        (lambda: SGD(lr=0.1, nesterov=True), "nesterov momentum needs momentum > 0"),
        (lambda: SGD(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening = 0"),
        (lambda: SGD(lr="0.1"), "lr must be a number"),
        (lambda: SGD(lr=0.1, nesterov=1), "nesterov must be true or false"),
        (lambda: AdamW(lr=-1), "lr must be"),
        (lambda: AdamW(betas=(1.0, 0.999)), "betas[0] must be a finite number in [0, 1)"),
        (lambda: AdamW(betas=(0.9,)), "betas must be two numbers"),
        (lambda: AdamW(eps=-1e-8), "eps"),
        (lambda: AdamW(weight_decay=-0.1), "weight_decay"),
        (lambda: from_dict({"type": "Adagrad"}), "unknown optimizer 'Adagrad'"),
        (lambda: from_dict({"type": "SGD", "lr": 0.1, "lrr": 1}), "unknown setting lrr"),
        (lambda: from_dict({"type": "SGD"}), "SGD:"),
    ],
)
def test_bad_configs(make, words):
    with pytest.raises(OptimizerConfigError) as e:
        make()
    assert isinstance(e.value, WaferError) and e.value.exit_code == 2
    assert words in str(e.value)
    assert not str(e.value).startswith("error")


def test_config_round_trip():
    for cfg in [SGD(lr=0.1, momentum=0.9, nesterov=True), AdamW(lr=1e-3, betas=(0.8, 0.9), amsgrad=True)]:
        assert from_dict(cfg.to_dict()) == cfg
    assert SGD(lr=1).lr == 1.0 and isinstance(SGD(lr=1).lr, float)
