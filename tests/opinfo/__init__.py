"""The OpInfo sweep: every op of torch's own OpInfo database, compiled by wafercc and run in the plan runtime.

    python -m tests.opinfo --all          # the whole sweep (677 ops, 3 samples each), prints the counts
    python -m tests.opinfo --op cumsum    # one op (a substring of its name), each case's outcome

``harness.py`` runs one case and classifies it; ``test_opinfo.py`` runs a fast subset in the test suite.
"""
