"""The tolerance policy and comparing arrays: numpy only.

    cmp = compare(expected, actual)          # Comparison(max_abs, max_rel, pcc, passed, reason, ...)

The policy, per dtype of the expected value (docs/runtime.md says why):

    f64    rtol 1e-7   atol 1e-7 * scale
    f32    rtol 1e-5   atol 1e-5 * scale     scale = max(1, max|expected|): accumulation order differs
    f16    rtol 1e-3   atol 1e-3 * scale     between BLAS implementations, and its error grows with the
    bf16   rtol 1e-2   atol 1e-2 * scale     magnitude of the sums, not of each element; + PCC >= 0.999
    ints, bool         exact

NaN in the same place on both sides is equal; so is an infinity of the same sign.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

# dtype name -> (rtol, atol before scaling, minimum PCC or None)
POLICY: dict[str, tuple[float, float, float | None]] = {
    "float64": (1e-7, 1e-7, None),
    "float32": (1e-5, 1e-5, None),
    "float16": (1e-3, 1e-3, 0.999),
    "bfloat16": (1e-2, 1e-2, 0.999),
}


@dataclass(frozen=True)
class Tolerance:
    """``|actual - expected| <= atol' + rtol * |expected|`` elementwise, where ``atol' = atol * max(1,
    max|expected|)`` when ``scale_atol`` (else ``atol``); and PCC >= ``min_pcc`` when it is set."""

    rtol: float = 0.0
    atol: float = 0.0
    scale_atol: bool = True
    min_pcc: float | None = None
    exact: bool = False  # integers and bools: equal or not

    def describe(self, atol_used: float | None = None) -> str:
        if self.exact:
            return "exact"
        atol = (
            f"atol {atol_used:.2g}"
            if atol_used is not None
            else f"atol {self.atol:.2g}" + (" x max(1, max|expected|)" if self.scale_atol else "")
        )
        return f"rtol {self.rtol:.2g}, {atol}" + (f", PCC >= {self.min_pcc}" if self.min_pcc is not None else "")


def tolerance_for(dtype, rtol: float | None = None, atol: float | None = None) -> Tolerance:
    """The policy's tolerance for ``dtype``; a given ``rtol``/``atol`` replaces the policy's (an ``atol``
    given by the user is absolute: it is not scaled)."""
    name = dtype if dtype in POLICY else np.dtype(dtype).name  # a policy name, or any numpy dtype
    if name not in POLICY:
        return Tolerance(exact=True)
    r, a, pcc = POLICY[name]
    tol = Tolerance(r, a, True, pcc)
    if rtol is not None:
        tol = replace(tol, rtol=float(rtol))
    if atol is not None:
        tol = replace(tol, atol=float(atol), scale_atol=False)
    return tol


@dataclass
class Comparison:
    """How far ``actual`` is from ``expected``. ``max_rel`` is over the elements where expected != 0;
    ``worst`` is the index that breaks the tolerance most (or differs most when none does)."""

    shape: tuple[int, ...]
    dtype: str
    max_abs: float
    max_rel: float
    pcc: float | None  # None for non-float values, and where it is undefined (constant arrays)
    mismatches: int  # elements outside the tolerance
    size: int
    passed: bool
    reason: str  # why it failed ("" when it passed)
    tolerance: Tolerance
    atol_used: float = 0.0
    worst: tuple[int, ...] | None = None
    expected_at: float | None = None
    actual_at: float | None = None

    def summary(self) -> str:
        """One line: errors and verdict."""
        pcc = f"  pcc {self.pcc:.6f}" if self.pcc is not None else ""
        verdict = "ok" if self.passed else f"FAIL: {self.reason}"
        return f"max abs {self.max_abs:.3g}  max rel {self.max_rel:.3g}{pcc}  {verdict}"

    def worst_text(self) -> str:
        if self.worst is None:
            return ""
        return f"worst at {list(self.worst)}: expected {self.expected_at:.8g}, got {self.actual_at:.8g}"


def compare(
    expected,
    actual,
    tol: Tolerance | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    pcc: bool = True,
) -> Comparison:
    """Compare ``actual`` with ``expected`` under ``tol`` (default: the policy for expected's dtype).
    ``pcc=False`` skips the correlation where the tolerance does not need it (bisect's intermediates)."""
    e, a = np.asarray(expected), np.asarray(actual)
    tol = tol or tolerance_for(e.dtype, rtol, atol)
    if e.shape != a.shape or e.dtype != a.dtype:
        what = "shape" if e.shape != a.shape else "dtype"
        return Comparison(
            e.shape,
            e.dtype.name,
            math.inf,
            math.inf,
            None,
            e.size,
            e.size,
            False,
            f"{what} differs: expected {e.dtype.name}{list(e.shape)}, got {a.dtype.name}{list(a.shape)}",
            tol,
        )
    if tol.exact:
        return _compare_exact(e, a, tol)
    return _compare_float(e, a, tol, pcc or tol.min_pcc is not None)


def _compare_exact(e: np.ndarray, a: np.ndarray, tol: Tolerance) -> Comparison:
    shape = e.shape
    e, a = np.atleast_1d(e), np.atleast_1d(a)  # numpy turns 0-d results into scalars
    bad = e != a
    n = int(np.count_nonzero(bad))
    diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
    c = Comparison(
        shape,
        e.dtype.name,
        _max(diff),
        _max_rel(diff, np.abs(e.astype(np.float64))),
        None,
        n,
        e.size,
        n == 0,
        "" if n == 0 else f"{n} of {e.size} elements differ (exact)",
        tol,
    )
    if n:
        _set_worst(c, np.argmax(bad), e, a)
    return c


def _compare_float(e: np.ndarray, a: np.ndarray, tol: Tolerance, want_pcc: bool) -> Comparison:
    shape, name = e.shape, e.dtype.name
    # f16/bf16 are exact in f32, and f32 differences need no more: f64 only for f64 (half the memory traffic).
    ct = np.float64 if e.dtype == np.float64 else np.float32
    e, a = np.atleast_1d(e).astype(ct, copy=False), np.atleast_1d(a).astype(ct, copy=False)
    with np.errstate(all="ignore"):
        diff = np.abs(a - e)
        mag = np.abs(e)
        if not np.isfinite(diff).all():  # NaN or inf somewhere: the rare, slower path
            same = (e == a) | (np.isnan(e) & np.isnan(a))  # equal infinities, NaN in the same place
            diff[same] = 0
            diff[np.isnan(diff)] = np.inf  # NaN on one side only
            mag[~np.isfinite(mag)] = 0  # an infinite expected value allows no slack: equal or wrong
        scale = max(1.0, _max(mag)) if tol.scale_atol else 1.0
        atol = tol.atol * scale
        excess = diff - (atol + tol.rtol * mag)
        n = int(np.count_nonzero(excess > 0))
    pcc = pearson(e, a) if want_pcc else None
    reasons = [f"{n} of {e.size} elements outside {tol.describe(atol)}"] if n else []
    if tol.min_pcc is not None and pcc is not None and pcc < tol.min_pcc:
        reasons.append(f"PCC {pcc:.6f} < {tol.min_pcc}")
    c = Comparison(
        shape, name, _max(diff), _max_rel(diff, mag), pcc, n, e.size, not reasons, "; ".join(reasons), tol, atol
    )
    if n or c.max_abs > 0:
        _set_worst(c, np.argmax(excess) if n else np.argmax(diff), e, a)
    return c


def pearson(e: np.ndarray, a: np.ndarray) -> float | None:
    """Pearson correlation over the elements finite on both sides, in f64; None where undefined."""
    e, a = np.asarray(e, np.float64).reshape(-1), np.asarray(a, np.float64).reshape(-1)
    ok = np.isfinite(e) & np.isfinite(a)
    if np.count_nonzero(ok) < 2:
        return None
    x, y = (e, a) if ok.all() else (e[ok], a[ok])
    x, y = x - x.mean(), y - y.mean()

    def dot(u, v) -> float:  # einsum, not BLAS: no thread pool to wake between the runtime's kernels
        return float(np.einsum("i,i->", u, v))

    den = math.sqrt(dot(x, x) * dot(y, y))
    return dot(x, y) / den if den > 0 else None


def _max(x: np.ndarray) -> float:
    return float(x.max()) if x.size else 0.0


def _max_rel(diff: np.ndarray, mag: np.ndarray) -> float:
    """max(diff / |expected|) over the elements where expected is finite and not 0."""
    rel = np.divide(diff, mag, out=np.zeros_like(diff), where=mag > 0)
    return _max(rel)


def _set_worst(c: Comparison, flat: int, e: np.ndarray, a: np.ndarray) -> None:
    """``flat`` indexes ``e`` and ``a`` raveled; the index is reported in ``c.shape``."""
    c.worst = tuple(int(i) for i in np.unravel_index(int(flat), c.shape))
    idx = np.unravel_index(int(flat), e.shape)
    c.expected_at, c.actual_at = float(e[idx]), float(a[idx])
