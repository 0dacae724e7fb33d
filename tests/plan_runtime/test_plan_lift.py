"""PlanMatmul's lift of subnormal operands (runtime/plan.py, LIFT): the same numbers as the plain product
wherever the plain product's partial sums are normal numbers, close to the subnormal ulp elsewhere, and the
plain product when lifting could overflow."""

from __future__ import annotations

import numpy as np

from runtime.plan import LIFT, Counters, PlanMatmul, TilePlan, _has_subnormal, _lift

TINY = float(np.finfo(np.float32).tiny)  # 2**-126, the smallest normal float32


def _plan(M: int, K: int, N: int) -> TilePlan:
    return TilePlan(mt=M, ry=1, kt=K, cx=1, groups=1, nc=N, steps=1, passes=1, columns=(True,), budget=K * N * 4)


def _logit_grads(rng, M: int, V: int) -> np.ndarray:
    """Cross-entropy gradients of wide logits (softmax - onehot) / M: many probabilities underflow to
    subnormals, as in a language model's LM head."""
    logits = (rng.standard_normal((M, V)) * 20).astype(np.float32)
    e = np.exp((logits - logits.max(axis=1, keepdims=True)).astype(np.float32))
    p = e / e.sum(axis=1, keepdims=True, dtype=np.float32)
    p[np.arange(M), rng.integers(0, V, M)] -= 1
    return (p / np.float32(M)).astype(np.float32)


def test_lifted_product_equals_the_plain_one_where_it_is_normal():
    rng = np.random.default_rng(0)
    g = _logit_grads(rng, 64, 4000)
    assert _has_subnormal(g) and np.count_nonzero((g != 0) & (np.abs(g) < TINY)) > 10_000
    w = (rng.standard_normal((4000, 96)) * 0.02).astype(np.float32)
    h = rng.standard_normal((64, 96)).astype(np.float32)
    cases = [(g[None], w[None], True), (g.T[None], h[None], False), (h.T[None], g[None], False)]
    for x, ww, streamed in cases:
        assert _lift(x, ww, streamed) != (0, 0)
        plain = np.matmul(x, ww)
        got = PlanMatmul(_plan(x.shape[1], x.shape[2], ww.shape[2]))(x, ww, streamed, Counters())
        normal = np.abs(plain) >= 2.0**-100
        assert normal.mean() > 0.5
        assert np.array_equal(got[normal].view(np.int32), plain[normal].view(np.int32))
        assert np.max(np.abs(got.astype(np.float64) - plain)) <= 2.0**-120
        exact = np.matmul(x.astype(np.float64), ww.astype(np.float64))
        assert np.all(np.abs(got - exact) <= np.abs(plain - exact) + 2.0**-140)  # never less accurate


def test_no_lift_when_it_could_overflow_or_nothing_is_subnormal():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 8, 16)).astype(np.float32)
    w = rng.standard_normal((1, 16, 4)).astype(np.float32)
    assert _lift(x, w, False) == (0, 0)
    x[0, 0, 0] = 1e-40
    assert _lift(x, w, True) == (LIFT, 0)
    x[0, 1, 1] = 3e33  # 3e33 * max|w| * 16 * 2**24 is past float32's range: the plain product
    assert _lift(x, w, True) == (0, 0)
    got = PlanMatmul(_plan(8, 16, 4))(x, w, True, Counters())
    assert np.array_equal(got.view(np.int32), np.matmul(x, w).view(np.int32))
    x[0, 1, 1] = np.nan
    assert _lift(x, w, True) == (0, 0)


def test_a_weight_from_the_store_is_not_scanned():
    x = np.ones((1, 4, 4), np.float32)
    w = np.full((1, 4, 4), 1e-40, np.float32)
    assert _lift(x, w, True) == (0, 0)
    assert _lift(x, w, False) == (0, LIFT)
