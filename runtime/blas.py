"""The number of threads numpy's OpenBLAS uses for the runtime's products (``PlanMatmul``).

One. Measured on the 2-core benchmark machine with other jobs running (12-layer GPT-2-small training step,
``bench/train_step.py``): 7.3-10.0 s with one BLAS thread against 16.8-23.2 s with OpenBLAS's default of one per
core. A layer's products are small (128 x 768 x 3072) and come one after another between elementwise numpy ops;
after each one OpenBLAS's idle worker spins for a while before sleeping, and on two cores that spin takes the
core the next elementwise op needs (user time 5.5-6 s against 12-20 s for the same work). The largest product
of the step (the tied LM head, 10 GFLOP) takes 0.1-0.3 s on one thread, so the most a second thread could save
is well under the spin it costs.

``blas_threads(n)`` sets the count for the duration of a block and restores the caller's. Where numpy's BLAS is
not an OpenBLAS this module can find (another BLAS, another platform) it does nothing: the products are the
same, only their speed differs.
"""

from __future__ import annotations

import contextlib
import ctypes
from pathlib import Path

BLAS_THREADS = 1

_SET = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
_GET = (
    "scipy_openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)
_api: tuple | None = None


def _openblas():
    """(set, get) of the OpenBLAS numpy loaded, or (None, None)."""
    global _api
    if _api is None:
        _api = (None, None)
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return _api
        paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line and ".so" in line})
        for p in paths:
            try:
                lib = ctypes.CDLL(p)
            except OSError:
                continue
            s = next((getattr(lib, n) for n in _SET if hasattr(lib, n)), None)
            g = next((getattr(lib, n) for n in _GET if hasattr(lib, n)), None)
            if s is not None and g is not None:
                s.argtypes, s.restype, g.argtypes, g.restype = [ctypes.c_int], None, [], ctypes.c_int
                _api = (s, g)
                break
    return _api


@contextlib.contextmanager
def blas_threads(n: int = BLAS_THREADS):
    set_threads, get_threads = _openblas()
    if set_threads is None:
        yield
        return
    before = get_threads()
    if before == n:
        yield
        return
    set_threads(n)
    try:
        yield
    finally:
        set_threads(before)
