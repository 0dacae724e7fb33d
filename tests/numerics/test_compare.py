"""The tolerance policy and ``compare`` (wafercc/numerics/compare.py): per dtype, NaN/inf, shapes, PCC, overrides."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wafercc.numerics import compare, pearson, tolerance_for

BF16 = np.dtype(ml_dtypes.bfloat16)


def ramp(dtype=np.float32, n=64):
    return (np.linspace(-3, 3, n)).astype(dtype)


def test_f32_passes_within_scaled_atol_and_fails_beyond():
    e = ramp() * 1000  # max |expected| = 3000: atol = 1e-5 * 3000 = 0.03
    assert compare(e, e + np.float32(0.02)).passed
    c = compare(e, e + np.float32(0.2))
    assert not c.passed and c.mismatches == e.size and "outside rtol 1e-05, atol 0.03" in c.reason


def test_f32_atol_is_at_least_unscaled_for_small_values():
    e = ramp() * 1e-3
    assert compare(e, e + np.float32(5e-6)).passed
    assert not compare(e, e + np.float32(5e-5)).passed


def test_the_worst_index_and_its_values():
    e = np.zeros((3, 4), np.float32)
    a = e.copy()
    a[2, 1] = 0.5
    a[0, 0] = 0.25
    c = compare(e, a)
    assert (c.worst, c.expected_at, c.actual_at) == ((2, 1), 0.0, 0.5)
    assert c.max_abs == 0.5 and c.mismatches == 2 and c.max_rel == 0.0  # expected 0 everywhere: no relative error
    assert "worst at [2, 1]: expected 0, got 0.5" in c.worst_text()


def test_nan_in_the_same_place_is_equal_elsewhere_is_not():
    e = np.array([1.0, np.nan, np.inf, -np.inf, 2.0], np.float32)
    assert compare(e, e.copy()).passed
    a = e.copy()
    a[4] = np.nan
    c = compare(e, a)
    assert not c.passed and c.mismatches == 1 and c.worst == (4,)
    b = e.copy()
    b[2] = 1e30  # an infinity allows no slack
    assert not compare(e, b).passed


@pytest.mark.parametrize("dtype, ok, bad", [(np.float16, 5e-4, 5e-3), (BF16, 5e-3, 5e-2)])
def test_reduced_precision_tolerances(dtype, ok, bad):
    e = ramp(np.float32, 256)
    assert compare(e.astype(dtype), (e * (1 + ok)).astype(dtype)).passed
    assert not compare(e.astype(dtype), (e * (1 + bad) + bad).astype(dtype)).passed
    assert tolerance_for(dtype).min_pcc == 0.999


def test_reduced_precision_needs_pcc_too():
    e = ramp(np.float32, 256).astype(BF16)
    rng = np.random.default_rng(0)
    noisy = (e.astype(np.float32) + rng.normal(0, 0.3, e.shape).astype(np.float32)).astype(BF16)
    c = compare(e, noisy, atol=1.0)  # loose enough elementwise: only the correlation catches it
    assert c.mismatches == 0 and not c.passed and "PCC" in c.reason


def test_a_small_scale_error_is_caught_in_fp32_and_not_in_bf16():
    """What docs/runtime.md says: PCC is blind to scale, and 0.5% is within one bf16 rounding."""
    e = ramp(np.float32, 256)
    assert not compare(e, e * np.float32(1.005)).passed
    c = compare(e.astype(BF16), (e * np.float32(1.005)).astype(BF16))
    assert c.passed and c.pcc == pytest.approx(1.0, abs=1e-4)


def test_integers_and_bools_are_exact():
    e = np.arange(10, dtype=np.int64)
    assert compare(e, e.copy()).passed
    c = compare(e, e + (e == 3))
    assert not c.passed and c.mismatches == 1 and c.pcc is None and "exact" in c.reason
    assert not compare(np.array([True, False]), np.array([True, True])).passed


def test_shape_and_dtype_must_match():
    e = np.zeros((2, 3), np.float32)
    assert "shape differs" in compare(e, np.zeros((3, 2), np.float32)).reason
    assert "dtype differs" in compare(e, np.zeros((2, 3), np.float64)).reason


def test_user_tolerance_replaces_the_policy_and_is_absolute():
    # These tolerances are the inputs under test (what a user passes with --rtol/--atol), not a numerics
    # policy: the point is that a user's atol is used as given, absolute and unscaled.
    e = ramp() * 1000
    assert not compare(e, e + np.float32(0.02), atol=0.0, rtol=0.0).passed
    assert compare(e, e + np.float32(0.5), atol=1.0).passed
    tol = tolerance_for(np.float32, rtol=0.1, atol=2.0)
    assert (tol.rtol, tol.atol, tol.scale_atol) == (0.1, 2.0, False)


def test_zero_d_and_empty_arrays():
    assert compare(np.float32(1.5) * np.ones((), np.float32), np.full((), 1.5, np.float32)).passed
    assert not compare(np.ones((), np.float32), np.zeros((), np.float32)).passed
    assert compare(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)).passed


def test_pcc_is_reported_for_floats_and_undefined_for_constants():
    e = ramp()
    assert compare(e, e).pcc == pytest.approx(1.0)
    assert compare(np.ones(8, np.float32), np.ones(8, np.float32)).pcc is None
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=50), st.floats(0, 1e-6))
def test_f32_values_within_half_the_tolerance_pass(values, rel):
    e = np.array(values, np.float32)
    a = (e.astype(np.float64) * (1 + rel)).astype(np.float32)
    assert compare(e, a).passed
