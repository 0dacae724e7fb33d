"""The process heap while training steps run: freed blocks stay in the heap (glibc's ``mallopt``).

A training step (runtime/training.py) runs the optimizer on a thread of its own, beside the interpreter. By
default glibc serves every allocation above a threshold (128 KiB, raised as far as 32 MiB as it sees them freed)
with its own ``mmap`` and gives it back with ``munmap`` when numpy frees it, and returns the top of the heap to
the OS past 128 KiB. Each ``munmap`` takes the process's memory-map lock for writing and makes every core that
runs a thread of the process flush its TLB, so the interpreter's activations, made and freed thousands of times a
step, stall the optimizer's page faults on the store's memory map and the other way round. Measured on the
2-core benchmark machine (12-layer GPT-2-small AdamW step, ``bench/train_step.py``, other jobs stopped): 5.5-10.1 s
a step with the optimizer's thread and glibc's defaults, 4.1-6.7 s with ``keep_freed_memory()``.

``keep_freed_memory()`` makes blocks up to 1 GiB come from the heap and never trims it, so a freed activation's
pages are reused by the next one. The peak RSS is the peak the step allocates, as before; the heap does not shrink
after it. Where the C library is not glibc it does nothing (the results are the same, only the speed differs).
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = (1 << 31) - 1  # an int: never trim

_done = False


def keep_freed_memory() -> bool:
    """Set the heap policy above for this process (once); whether it is in force."""
    global _done
    if _done:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
