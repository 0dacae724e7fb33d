"""Run as a script: create (``create DIR N``) or train (``train DIR``) a large training store, then print
peak memory (VmHWM) in bytes as JSON. The training process never holds a whole tensor: its growth in peak
RSS over its baseline is what the chunked, memory-mapped update costs (tests/training/test_memory.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from runtime.optim import AdamW
from runtime.training_store import TrainingStore


def vm(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def create(d: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    params = {f"w{i}": rng.standard_normal(n // 4, dtype=np.float32) for i in range(4)}
    TrainingStore.create(d, params, AdamW(lr=1e-3), weight_dtype="bf16").close()


def train(d: Path) -> dict:
    rng = np.random.default_rng(1)
    piece = 1 << 20
    g = np.empty(piece, np.float32)
    base = vm("VmHWM")
    with TrainingStore(d) as ts:  # verifies every checksum: reads the whole store once
        size = sum(p.stat().st_size for p in (d / f"slot{ts.committed}").iterdir())
        for micro_batches, clip in ((2, 1.0), (1, None)):  # accumulate + clip (two phases); then streaming
            st = ts.begin_step(micro_batches=micro_batches, clip_norm=clip)
            for _ in range(micro_batches):
                for name in ts.params:
                    n = ts.weight(name).size
                    for a in range(0, n, piece):
                        k = min(piece, n - a)
                        rng.standard_normal(k, dtype=np.float32, out=g[:k])
                        st.add_grad(name, g[:k], a)
                st.end_micro_batch()
            st.finish()
            ts.commit()
    return {"base": base, "peak": vm("VmHWM"), "store": size}


if __name__ == "__main__":
    where = Path(sys.argv[2])
    if sys.argv[1] == "create":
        create(where, int(sys.argv[3]))
    else:
        print(json.dumps(train(where)))
