"""erf in float64, vectorized, without scipy (the runtime depends on numpy and ml_dtypes only).

math.erf is exact enough but scalar (np.vectorize over it is ~100x too slow), so:
- |x| < 0.5: the Maclaurin series erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)), 14 terms;
  the first dropped term is < 1e-18 relative there, and a series keeps the relative error tiny near 0,
  where 1 - erfc(x) would cancel.
- |x| >= 0.5: erf = 1 - erfc, with erfc from the Chebyshev fit of Numerical Recipes (3rd ed., Erf::erfccheb):
  erfc(z) = t * exp(-z^2 + P(4t - 2)), t = 2 / (2 + z). Measured against math.erfc: relative error
  < 2e-13 for erfc on [0, 30], < 5e-16 for erf on [0.5, 30] (tests/runtime/test_runtime_special.py).
"""

from __future__ import annotations

import math

import numpy as np

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SERIES = np.array([(-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(14)])
_CHEB = np.array([
    -1.3026537197817094, 6.4196979235649026e-1, 1.9476473204185836e-2, -9.561514786808631e-3,
    -9.46595344482036e-4, 3.66839497852761e-4, 4.2523324806907e-5, -2.0278578112534e-5,
    -1.624290004647e-6, 1.303655835580e-6, 1.5626441722e-8, -8.5238095915e-8, 6.529054439e-9,
    5.059343495e-9, -9.91364156e-10, -2.27365122e-10, 9.6467911e-11, 2.394038e-12, -6.886027e-12,
    8.94487e-13, 3.13092e-13, -1.12708e-13, 3.81e-16, 7.106e-15, -1.523e-15, -9.4e-17, 1.21e-16,
    -2.8e-17,
])


def erfc_nonneg(z: np.ndarray) -> np.ndarray:
    """erfc(z) for z >= 0 (float64), by Clenshaw's recurrence over the Chebyshev coefficients."""
    t = 2.0 / (2.0 + z)
    ty = 4.0 * t - 2.0
    d = np.zeros_like(z)
    dd = np.zeros_like(z)
    for c in _CHEB[:0:-1]:
        d, dd = ty * d - dd + c, d
    return t * np.exp(-z * z + 0.5 * (_CHEB[0] + ty * d) - dd)


def _erf_series(x: np.ndarray) -> np.ndarray:
    x2 = x * x
    acc = np.full_like(x, _SERIES[-1])
    for c in _SERIES[-2::-1]:
        acc = acc * x2 + c
    return _TWO_OVER_SQRT_PI * x * acc


def erf(x: np.ndarray) -> np.ndarray:
    """erf of a float array, computed in float64; NaN stays NaN, erf(+-inf) = +-1."""
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    small = ax < 0.5
    out = np.empty_like(x)
    out[small] = _erf_series(x[small])
    big = ~small  # includes NaN (NaN < 0.5 is False), which the erfc branch carries through
    z = ax[big]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        out[big] = np.copysign(1.0 - erfc_nonneg(z), x[big])
    return out
