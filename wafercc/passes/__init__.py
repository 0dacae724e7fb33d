"""Passes over WIR: one pass per file, run by the pass manager from pipeline strings.

Typical use: ``run_pipeline(module, DEFAULT_PIPELINE)``, or ``PassManager("cse,dce", time_passes=True)``
for the debugging options (IR dumps, timing, statistics, reproducers).
"""

from .manager import (
    PassFailure,
    PassManager,
    PipelineError,
    available_passes,
    read_reproducer_pipeline,
    register_pass,
    run_pipeline,
    unregister_pass,
)

# The graph-level cleanup every compile runs: local rewrites, then constants, then merge and sweep.
DEFAULT_PIPELINE = "canonicalize,fold,cse,dce"

__all__ = [
    "DEFAULT_PIPELINE",
    "PassFailure",
    "PassManager",
    "PipelineError",
    "available_passes",
    "read_reproducer_pipeline",
    "register_pass",
    "run_pipeline",
    "unregister_pass",
]
