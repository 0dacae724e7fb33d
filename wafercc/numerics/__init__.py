"""Numerics: is a compiled model's answer right?

    compare.py   the tolerance policy and array comparison (numpy only)
    eager.py     compile a model, run it in the runtime and in eager PyTorch, compare every output
    bisect.py    name the first WIR op whose result diverges from PyTorch's

``compare`` and the policy import nothing heavy; ``compare_model`` and ``bisect_model`` need torch, so
they are loaded on first use (reading a golden or a tolerance never imports torch).
"""

from __future__ import annotations

import importlib

from wafercc.numerics.compare import POLICY, Comparison, Tolerance, compare, pearson, tolerance_for

_LAZY = {  # name -> module that defines it (imports torch)
    "ModelComparison": "eager",
    "OutputCheck": "eager",
    "compare_model": "eager",
    "run_eager": "eager",
    "BisectResult": "bisect",
    "bisect_model": "bisect",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"wafercc.numerics.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'wafercc.numerics' has no attribute '{name}'")


__all__ = ["POLICY", "Comparison", "Tolerance", "compare", "pearson", "tolerance_for", *_LAZY]
