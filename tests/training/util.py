"""Helpers of the training tests."""

from __future__ import annotations

import numpy as np
import torch


def ulps(a: np.ndarray, b: np.ndarray) -> int:
    """The largest distance in float32 ulps (units in the last place) between two arrays."""
    ia, ib = (x.astype(np.float32).view(np.int32).astype(np.int64) for x in (a, b))
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return int(np.abs(ia - ib).max())


def torch_sqrt(x: np.ndarray) -> np.ndarray:
    return torch.from_numpy(np.ascontiguousarray(x)).sqrt().numpy()
