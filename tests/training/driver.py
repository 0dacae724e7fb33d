"""A deterministic training loop on a training store, for the checkpoint and fault-injection tests: gradients
are a function of the step, the micro-batch and the current weights, delivered in chunks, so a run resumed
from any checkpoint must end with the same bytes as an uninterrupted one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from runtime.optim import AdamW, SGD
from runtime.training_store import TrainingStore

SHAPES = {"a": (37, 41), "b": (1000,), "c": (13,)}


def initial():
    rng = np.random.default_rng(7)
    params = {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}
    return params, {"bn": np.zeros(5, np.float32)}


def grad(ts: TrainingStore, name: str, step: int, micro: int) -> np.ndarray:
    rng = np.random.default_rng(1000 * step + 10 * micro + sorted(SHAPES).index(name))
    w = ts.master(name).reshape(-1)
    return (np.float32(0.01) * w + rng.standard_normal(w.size).astype(np.float32)).astype(np.float32)


def train(
    store: Path,
    steps: int = 3,
    every: int = 2,
    micro_batches: int = 2,
    optimizer=None,
    clip_norm: float | None = 1.0,
    piece: int = 400,
    chunk: int = 512,
    reverse: bool = False,
    threads: int = 1,
) -> TrainingStore:
    """Run (or resume) to ``steps``, committing every ``every`` steps and at the end; returns the closed store.
    With ``threads`` > 1 each micro-batch's pieces are fed by that many threads at once, as the training step's
    optimizer thread and the caller feed them (runtime/training.py)."""
    optimizer = optimizer or AdamW(lr=1e-2, amsgrad=True)
    if not (store / "checkpoint.json").exists():
        params, buffers = initial()
        TrainingStore.create(store, params, optimizer, buffers, weight_dtype={"a": "bf16"}, chunk=chunk).close()
    with TrainingStore(store, chunk=chunk) as ts:
        assert ts.data.get("pos", 0) == ts.step
        while ts.step < steps:
            n = ts.step + 1
            st = ts.begin_step(micro_batches=micro_batches, clip_norm=clip_norm)
            for k in range(micro_batches):
                pieces = []
                for name in SHAPES:
                    if name == "c" and (n + k) % 2:
                        continue  # c has no gradient in some micro-batches (torch: grad None / not accumulated)
                    g = grad(ts, name, n, k)
                    starts = range(0, g.size, piece)
                    pieces += [(name, g[a : a + piece], a) for a in (reversed(starts) if reverse else starts)]
                if threads == 1:
                    for args in pieces:
                        st.add_grad(*args)
                else:
                    with ThreadPoolExecutor(threads) as pool:
                        list(pool.map(lambda args: st.add_grad(*args), pieces))
                st.end_micro_batch()
            ts.set_buffer("bn", np.full(5, n, np.float32))
            st.finish()
            if ts.step % every == 0 or ts.step == steps:
                ts.commit(data={"pos": ts.step})
        return ts


def optimizers():
    return {"adamw": AdamW(lr=1e-2, amsgrad=True), "sgd": SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)}
