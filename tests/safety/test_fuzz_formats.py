"""Short runs of the format fuzzers (tests/fuzz/store.py, npz.py, golden.py, planjson.py): a few seconds each
in the suite; `python -m tests.fuzz --budget 60` runs them (and the WIR fuzzer) longer. A mutant that breaks a promise
fails here; fixed, it becomes a named regression test in tests/safety."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.fuzz import golden, npz, planjson, store

SHORT = settings(
    max_examples=120, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


@SHORT
@given(store.mutants())
def test_store_mutants_are_read_right_or_refused_cleanly(mutant):
    store.check(*mutant)


@SHORT
@given(npz.mutants())
def test_npz_input_mutants_are_read_right_or_refused_cleanly(mutant):
    npz.check(*mutant)


@SHORT
@given(golden.mutants())
def test_golden_mutants_are_read_right_or_refused_cleanly(mutant):
    golden.check(*mutant)


@SHORT
@given(planjson.mutants())
def test_plan_json_mutants_are_shown_or_refused_cleanly(mutant):
    planjson.check(*mutant)
