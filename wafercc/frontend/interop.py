"""torch tensors <-> numpy arrays, the one place the compiler converts between them (bf16 through
ml_dtypes, which numpy lacks: the 16 bits are reinterpreted, never rounded)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import torch


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A copy-free numpy view of ``t``'s data where torch allows one (contiguous CPU tensors), else a copy;
    same dtype."""
    return as_numpy_view(t.detach().contiguous().cpu())


def as_numpy_view(t: torch.Tensor) -> np.ndarray:
    """``t``'s data as numpy without running a torch op (no copy, any strides): a torch kernel between numpy
    kernels would wake torch's thread pool against numpy's."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def to_torch(a: np.ndarray) -> torch.Tensor:
    """A numpy array as a torch tensor that owns a copy of the data."""
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(a, copy=True))
