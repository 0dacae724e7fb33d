"""The runtime's vectorized erf against math.erf (f64) and torch.erf (f32)."""

from __future__ import annotations

import math

import numpy as np
import torch

from runtime.kernels.special import erf, erfc_nonneg


def _grid() -> np.ndarray:
    pos = np.concatenate([np.geomspace(1e-300, 1e-3, 200), np.linspace(0, 8, 40001), np.geomspace(8, 1e300, 100)])
    return np.concatenate([pos, -pos])


def test_erf_matches_math_erf_to_double_precision():
    x = _grid()
    want = np.array([math.erf(v) for v in x])
    got = erf(x)
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-300)
    assert rel.max() < 1e-15


def test_erfc_matches_math_erfc_where_it_does_not_underflow():
    z = np.linspace(0, 26, 20001)
    want = np.array([math.erfc(v) for v in z])
    assert (np.abs(erfc_nonneg(z) - want) / want).max() < 2e-13


def test_erf_special_values():
    got = erf(np.array([0.0, -0.0, np.inf, -np.inf, np.nan]))
    np.testing.assert_array_equal(got[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(got[1]) and np.isnan(got[4])


def test_erf_rounded_to_f32_matches_torch():
    x = np.linspace(-10, 10, 100001, dtype=np.float32)
    want = torch.erf(torch.from_numpy(x)).numpy()
    got = erf(x).astype(np.float32)
    # torch's f32 erf is itself a polynomial approximation (~1 ulp); ours is exact then rounded once.
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=1e-7)
