"""One training step of a compiled training directory, in numpy (docs/training.md, "Running a step").

    from runtime.training import TrainStep

    with TrainStep("build/train_mlp") as step:        # model.wir, plan.json, training.json, store/
        loss = step.run([x, y])                       # forward + backward in the runtime, the update in MemoryX
        step.store.commit()                           # a checkpoint (atomic), when the caller wants one

The joint module's ``@forward`` returns (loss, gradients..., buffer updates...) (docs/wir.md, "Training
modules"). A step runs it once per micro-batch in the interpreter, following the plan (as ``wafercc run``
does), reading the weights from the training store (``TrainingStore.weight``). Each gradient streams into the
store's step (``begin_step`` / ``add_grad`` / ``end_micro_batch`` / ``finish``) chunk by chunk as soon as the
backward has computed it and the module has read its weight for the last time (the store may update that
weight in place), and is dropped: no gradient outlives that point. The store applies the optimizer on a thread
of its own while the backward goes on (``_MemoryX``); the buffers' new values (batch norm's running
statistics) are written back at the end of the step.

Never imports torch.
"""

from __future__ import annotations

import collections
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wafercc.ir import Module, WaferError, parse_file
from wafercc.ir.training import check_training, is_training, result_roles

from .artifacts import WIR_FILE
from .errors import RuntimeExecutionError
from .heap import keep_freed_memory
from .interpreter import Interpreter
from .training_store import StepResult, TrainingStore

TRAIN_STORE_DIR = "store"
TRAIN_FILE = "training.json"
# A step's storage precision (training.json "precision"): the runtime's (runtime/plan.py), and the dtype the
# training store streams each parameter in, beside its fp32 master (docs/training.md, "bf16 training").
TRAIN_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


class TrainingRunError(WaferError):
    """A directory that is not a compiled training model, or inputs that do not fit one step."""


@dataclass
class StepOutcome:
    """One optimizer step: the loss of each micro-batch, their mean, and what the store's update did."""

    losses: list[float]
    result: StepResult
    grads: dict[str, np.ndarray] = field(default_factory=dict)  # with keep_grads: the step's mean gradient

    @property
    def loss(self) -> float:
        return float(np.mean(np.asarray(self.losses, dtype=np.float64))) if self.losses else float("nan")


class _Weights:
    """The interpreter's weight store over a training store: weights and buffers as they are now, and within
    a step the buffers the earlier micro-batches updated."""

    def __init__(self, store: TrainingStore):
        self.store = store
        self.updated: dict[str, np.ndarray] = {}

    def check(self, declared) -> None:
        names = set(self.store.params) | set(self.store.buffers)
        missing = [w.name for w in declared if w.name not in names]
        if missing:
            raise TrainingRunError(f"the training store has no weight '{missing[0]}' the module reads")

    def get(self, name: str, expect=None) -> np.ndarray:
        if name in self.updated:
            return self.updated[name]
        w = self.store.weight(name)
        return w if w.dtype == np.float32 or w.dtype.kind in "iub" else w.astype(np.float32)  # bf16 streams

    def release(self, name: str) -> None:
        if name not in self.updated:
            self.store.release(name)

    def close(self) -> None:
        pass


class TrainStep:
    """A compiled training directory opened for stepping. ``run(inputs)`` takes one optimizer step on one
    batch (``micro_batches`` = 1) or a list of micro-batches, and returns the mean loss; ``step(...)`` the
    same with the details. ``store`` is the open TrainingStore (commit, rollback, the step count)."""

    def __init__(self, plan_dir: str | os.PathLike, plan: bool = True, verify_store: bool = True):
        self.dir = Path(plan_dir)
        self.module = _load_module(self.dir)
        self.settings = _load_settings(self.dir)
        self.func = self.module.func()
        self.roles = result_roles(self.func)
        self.store = TrainingStore(self.dir / TRAIN_STORE_DIR, verify=verify_store)
        self.memoryx = None
        try:
            self.weights = _Weights(self.store)
            # Gradients are handed out as the run makes them, once their parameter's last read is done.
            stream = {i: (target,) for i, (role, target) in enumerate(self.roles) if role == "grad"}
            self.interp = Interpreter(self.module, self.weights, plan=plan, precision=self.precision, stream=stream)
            keep_freed_memory()  # the two threads' page faults and unmaps would stall each other (runtime/heap.py)
            self.memoryx = _MemoryX()
        except BaseException:
            self.store.close()
            raise

    @property
    def micro_batches(self) -> int:
        return int(self.settings.get("micro_batches", 1))

    @property
    def clip_norm(self) -> float | None:
        return self.settings.get("clip_norm")

    @property
    def precision(self) -> str:
        return self.settings.get("precision", "fp32")

    def run(self, inputs) -> float:
        """One optimizer step; the mean loss of its micro-batches."""
        return self.step(inputs).loss

    def step(self, inputs, keep_grads: bool = False) -> StepOutcome:
        """One optimizer step (``inputs``: one batch, or a list of ``micro_batches`` batches). ``keep_grads``
        also returns the gradients as they streamed out (their mean over the micro-batches, before
        clipping), for checking; otherwise no gradient outlives the point where it streams out."""
        batches = self._micro_batches(inputs)
        self.weights.updated = {}
        update = self.store.begin_step(micro_batches=len(batches), clip_norm=self.clip_norm)
        losses = []
        grads: dict[str, np.ndarray] = {}
        try:
            for batch in batches:
                keep = grads if keep_grads else None
                sink = _GradSink(update, self.memoryx, self.store.chunk, self.roles, keep, len(batches))
                outputs = self.interp.run(batch, on_stream=sink).outputs
                self.memoryx.drain()
                losses.append(float(outputs[0]))
                for value, (role, target) in zip(outputs, self.roles):
                    if role == "update":  # kept for the next micro-batch, written at the end of the step
                        self.weights.updated[target] = np.array(value)
                update.end_micro_batch()
            for name, value in self.weights.updated.items():
                self.store.set_buffer(name, value)
            result = update.finish()
        except BaseException:
            self.memoryx.abort()
            self.store.rollback()
            raise
        finally:
            self.weights.updated = {}
        return StepOutcome(losses, result, grads)

    def _micro_batches(self, inputs) -> list:
        k = self.micro_batches
        if k == 1:
            return [inputs]
        if (
            not isinstance(inputs, (list, tuple))
            or len(inputs) != k
            or not all(isinstance(b, (list, tuple, dict)) for b in inputs)
        ):
            raise TrainingRunError(
                f"this model accumulates gradients over {k} micro-batches: give a list of {k} input lists"
            )
        return list(inputs)

    def close(self) -> None:
        if self.memoryx is not None:
            self.memoryx.close()
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _GradSink:
    """The interpreter's ``on_stream`` for one micro-batch: each gradient to MemoryX in the store's chunks the
    moment it is handed out, through ``memoryx`` (with ``keep``, also its share of the step's mean gradient,
    in float64, taken at once)."""

    def __init__(self, update, memoryx: _MemoryX, chunk: int, roles: list, keep: dict | None, k: int):
        self.update, self.memoryx, self.chunk, self.roles, self.keep, self.k = update, memoryx, chunk, roles, keep, k

    def __call__(self, pos: int, value: np.ndarray) -> None:
        target = self.roles[pos][1]
        v = _detached(np.asarray(value))
        # row-major order, chunk by chunk; a strided gradient (a transpose's view) is copied a chunk at a time
        flat = v.reshape(-1) if v.flags.c_contiguous else v.flat
        for lo in range(0, max(v.size, 1), self.chunk):
            n = min(self.chunk, v.size - lo)
            self.memoryx.put(self._feed, (target, flat, lo, n), 4 * n)
        if self.keep is not None:
            g = np.asarray(value, dtype=np.float64) / self.k
            self.keep[target] = self.keep[target] + g if target in self.keep else g

    def _feed(self, target: str, flat, lo: int, n: int) -> None:
        self.update.add_grad(target, np.asarray(flat[lo : lo + n], dtype=np.float32), lo)


def _detached(v: np.ndarray) -> np.ndarray:
    """``v``, or a copy of it when it views memory the step may still write: the interpreter's kernels return
    new arrays and never write one afterwards, but a result that is a view of a streamed weight (a layout of
    the store's memory map) would change under the optimizer's update of that weight, on the other thread."""
    root = v
    while isinstance(root, np.ndarray) and not root.flags.owndata:
        root = root.base
    return v if isinstance(root, np.ndarray) else v.copy()


class _MemoryX:
    """MemoryX's side of a step, beside the wafer's: the optimizer updates on a thread of their own.

    The interpreter (the wafer) hands each gradient out as the backward makes it, and the store's update of
    that parameter runs on this thread while the backward goes on, as MemoryX updates the weights it holds
    while the wafer computes. The hand-off is the point a gradient may be applied at (after its weight's last
    read, ``runtime.schedule.stream_points``), so the update never races a read of its weight. The work is
    queued in the store's chunks; when more than ``limit`` bytes of gradient wait, the wafer waits (the
    memory a step holds stays bounded, as without the thread). ``drain`` finishes the queue with the calling
    thread's help (the last gradients, the tied embedding's, arrive when the backward is over: both cores
    update it). An error on the thread is raised in the caller by the next ``put`` or ``drain``. numpy
    releases the interpreter lock in its loops, so the two threads run on two cores."""

    def __init__(self, limit: int = 64 << 20):
        self.limit = limit
        self._queue: collections.deque = collections.deque()
        self._waiting = 0  # bytes queued
        self._busy = 0  # items being worked on
        self._error: BaseException | None = None
        self._closed = False
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name="wafercc-memoryx", daemon=True)
        self._thread.start()

    def put(self, fn, args: tuple, nbytes: int) -> None:
        with self._cv:
            while self._error is None and self._queue and self._waiting + nbytes > self.limit:
                self._cv.wait()
            self._raise()
            self._queue.append((fn, args, nbytes))
            self._waiting += nbytes
            self._cv.notify_all()

    def drain(self) -> None:
        """Return once everything put has been done (working on the queue meanwhile), or raise its error."""
        while self._work(block=False):
            pass
        with self._cv:
            while self._busy:
                self._cv.wait()
            self._raise()

    def abort(self) -> None:
        """Drop what is queued and wait for the work under way; forget any error (the step is rolled back)."""
        with self._cv:
            self._queue.clear()
            self._waiting = 0
            while self._busy:
                self._cv.wait()
            self._error = None
            self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _serve(self) -> None:
        while self._work(block=True):
            pass

    def _work(self, block: bool) -> bool:
        """Do one queued item; False when there is none (or, blocking, when closed)."""
        with self._cv:
            while not self._queue:
                if not block or self._closed:
                    return False
                self._cv.wait()
            fn, args, nbytes = self._queue.popleft()
            self._waiting -= nbytes
            self._busy += 1
        try:
            fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the wafer's thread, which raises it
            with self._cv:
                self._error = self._error or e
                self._queue.clear()
                self._waiting = 0
        finally:
            with self._cv:
                self._busy -= 1
                self._cv.notify_all()
        return True


def _load_module(d: Path) -> Module:
    if (d / WIR_FILE).is_file() and (d / TRAIN_FILE).is_file() and not (d / TRAIN_STORE_DIR).exists():
        raise TrainingRunError(
            f"'{d}' was planned without weights (--no-weights, or a model on the meta device): it has no "
            "training store to train; compile the model with its weights to train it"
        )
    if not (d / WIR_FILE).is_file() or not (d / TRAIN_STORE_DIR).is_dir():
        raise TrainingRunError(
            f"'{d}' is not a compiled training model: it needs {WIR_FILE} and {TRAIN_STORE_DIR}/ "
            "(make one with wafercc compile MODEL.py --train -o DIR)"
        )
    module = parse_file(d / WIR_FILE)
    if not is_training(module):
        raise TrainingRunError(f"'{d / WIR_FILE}' is an inference module (compile it with --train)")
    check_training(module)
    return module


def _load_settings(d: Path) -> dict:
    p = d / TRAIN_FILE
    try:
        settings = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise TrainingRunError(f"cannot read {p}: {e}") from None
    k, clip = settings.get("micro_batches", 1), settings.get("clip_norm")
    if not isinstance(settings, dict) or not isinstance(k, int) or k < 1:
        raise RuntimeExecutionError(f"{p}: micro_batches must be an integer >= 1")
    if clip is not None and not (isinstance(clip, (int, float)) and clip > 0):
        raise RuntimeExecutionError(f"{p}: clip_norm must be a number > 0 or null")
    if settings.get("precision", "fp32") not in TRAIN_PRECISIONS:
        raise RuntimeExecutionError(f"{p}: precision must be one of {', '.join(TRAIN_PRECISIONS)}")
    return settings


__all__ = ["TRAIN_PRECISIONS", "StepOutcome", "TrainStep", "TrainingRunError"]
