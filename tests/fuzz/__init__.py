"""Structure-aware fuzzers for the files wafercc reads, built by mutating real compiled outputs.

A short run is part of the test suite; a longer one is `python -m tests.fuzz --budget SECONDS` (see
docs/safety.md). Any input that crashes becomes a regression test beside the fuzzer.
"""
