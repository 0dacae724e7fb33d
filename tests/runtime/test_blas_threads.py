"""runtime/blas.py: the runtime's products run on one OpenBLAS thread, and the caller's count comes back."""

from __future__ import annotations

import numpy as np
import pytest

import runtime.plan as plan
from runtime.blas import BLAS_THREADS, _openblas, blas_threads

set_threads, get_threads = _openblas()
needs_openblas = pytest.mark.skipif(set_threads is None, reason="numpy's BLAS is not an OpenBLAS found here")


@needs_openblas
def test_count_inside_and_restored_after():
    before = get_threads()
    with blas_threads():
        assert get_threads() == BLAS_THREADS == 1
    assert get_threads() == before
    with pytest.raises(RuntimeError), blas_threads(1):
        raise RuntimeError("boom")
    assert get_threads() == before


@needs_openblas
def test_plan_matmul_runs_on_one_thread(monkeypatch):
    seen = []
    real = np.matmul

    def spy(*a, **k):
        seen.append(get_threads())
        return real(*a, **k)

    monkeypatch.setattr(plan.np, "matmul", spy)
    p = plan.TilePlan(mt=4, ry=1, kt=8, cx=1, groups=1, nc=3, steps=1, passes=1, columns=(True,), budget=96)
    x, w = np.ones((1, 4, 8), np.float32), np.ones((1, 8, 3), np.float32)
    y = plan.PlanMatmul(p)(x, w, True, plan.Counters())
    assert seen == [1] and np.array_equal(y, np.full((1, 4, 3), 8, np.float32))
