"""Sweep cases for the ops issue 13 added (run-time checks, scatters, norms, 3-d pooling, ...), in the format
of cases.py: (op name, input arrays, attributes, tolerance)."""

from __future__ import annotations

import numpy as np

from tests.runtime.cases import C, bools, f32, ints

MORE = [
    C("check", [np.ones((2, 3), bool)], {"message": "holds"}),
    C("check", [f32(4, lo=0.5)], id="check-float"),
]
