"""The optimizer on a thread of its own (runtime/training.py, ``_MemoryX``): MemoryX updates the weights while
the wafer runs the backward. The update is elementwise, so feeding a step's chunks from several threads in any
order gives the same bytes; an error on the optimizer's thread is raised in the step, which is rolled back."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

import runtime.training as rt
from runtime.training import TrainStep
from runtime.training_store import StepUpdate, TrainingStepError
from tests.training.conftest import ROOT
from tests.training.driver import train
from wafercc.frontend import load_model_file


@pytest.mark.parametrize("clip", [None, 1.0])
def test_chunks_fed_by_threads_give_the_same_bytes(tmp_path, clip):
    """Three threads feed 7-element pieces (chunks of 512) of three parameters, one of them bf16 with an fp32
    master, over two micro-batches and three steps with commits between: every tensor's checksum equals the
    one-thread run's (the squares of a clipped step are summed exactly, in any order)."""
    train(tmp_path / "one", steps=3, clip_norm=clip, piece=7)
    train(tmp_path / "three", steps=3, clip_norm=clip, piece=7, threads=3)
    one, three = (json.loads((tmp_path / d / "checkpoint.json").read_text())["tensors"] for d in ("one", "three"))
    assert one == three


def test_memoryx_does_its_work_and_raises_its_error():
    memoryx = rt._MemoryX(limit=64)
    done = []
    try:
        for i in range(50):
            memoryx.put(done.append, (i,), 16)  # more than the limit: put waits for the thread
        memoryx.drain()
        assert sorted(done) == list(range(50))

        def fail(x):
            raise TrainingStepError(f"chunk {x} is bad")

        memoryx.put(fail, (7,), 16)
        with pytest.raises(TrainingStepError, match="chunk 7 is bad"):
            memoryx.drain()
        memoryx.put(done.append, (50,), 16)  # the error was handed over once: the queue works again
        memoryx.drain()
        assert done[-1] == 50
    finally:
        memoryx.close()


def test_abort_drops_the_queue():
    memoryx = rt._MemoryX(limit=1 << 20)
    gate, done = threading.Event(), []
    try:
        memoryx.put(gate.wait, (), 1)
        for i in range(5):
            memoryx.put(done.append, (i,), 1)
        gate.set()
        memoryx.abort()
        memoryx.drain()
        assert len(done) < 5 or done == list(range(5))  # what had started finished; the rest was dropped
    finally:
        memoryx.close()


def test_a_result_viewing_the_store_is_copied_before_it_is_queued():
    """A result that is a layout of a streamed weight would change under that weight's update on the other
    thread: it is copied; the interpreter's own results are queued as they are."""
    import mmap

    m = mmap.mmap(-1, 64)
    weight = np.frombuffer(m, np.float32)
    view = weight.reshape(4, 4).T
    got = rt._detached(view)
    assert got is not view and np.shares_memory(got, weight) is False and np.array_equal(got, view)
    own = np.arange(16, dtype=np.float32).reshape(4, 4).T
    assert rt._detached(own) is own
    del weight, view, got
    m.close()


def test_an_optimizer_error_fails_the_step_and_rolls_it_back(compiled_training, tmp_path, monkeypatch):
    """A gradient the store refuses, on the optimizer's thread: the step raises it, nothing of the step stays,
    and the next step equals a fresh run's first."""
    d = tmp_path / "m"
    shutil.copytree(compiled_training("train_mlp", "adamw"), d)
    ref = tmp_path / "ref"
    shutil.copytree(compiled_training("train_mlp", "adamw"), ref)
    _, example = load_model_file(ROOT / "examples" / "train_mlp.py")
    inputs = [t.numpy() for t in example]
    with TrainStep(ref) as step:
        expect = step.run(inputs)
        expect_weights = {n: np.array(step.store.weight(n)) for n in step.store.params}
    real = StepUpdate.add_grad

    def refuse(self, name, grad, offset=0):
        if name == sorted(self._numel)[-1]:
            raise TrainingStepError(f"MemoryX refuses '{name}'")
        return real(self, name, grad, offset)

    with TrainStep(d) as step:
        monkeypatch.setattr(StepUpdate, "add_grad", refuse)
        with pytest.raises(TrainingStepError, match="MemoryX refuses"):
            step.run(inputs)
        assert step.store.step == 0
        monkeypatch.setattr(StepUpdate, "add_grad", real)
        assert step.run(inputs) == expect
        for n, w in expect_weights.items():
            assert np.array_equal(step.store.weight(n), w), n
