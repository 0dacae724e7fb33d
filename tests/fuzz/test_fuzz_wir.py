"""A short run of the WIR fuzzer (tests/fuzz/wir.py); `python -m tests.fuzz --budget 60` runs longer."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.fuzz import wir


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(wir.mutants())
def test_wir_mutants_are_run_right_or_refused_cleanly(mutant):
    name, text = mutant
    wir.check(name, text)
