"""Training runs of a compiled training directory: data in batches, checkpoints, resume, the loss log
(``wafercc train``; docs/training.md, "Training runs").

    from runtime.trainer import TrainRun

    with TrainRun("build/train_mlp", data="data.npz", steps=100, checkpoint_every=10) as run:
        for step, loss in run:                       # one optimizer step each, committed every 10 and at the end
            print(step, loss)

The data: one array per model input, named like it (``x``, ``labels``), all with the same dim 0 (the samples),
each sample shaped and typed like one row of the input; cut into batches of the compiled batch size B along
dim 0, in order, wrapping around at the end (the last ``samples mod B`` are never used). Step t with K
micro-batches per step takes batches (t-1)K .. tK-1 (mod the number of batches): the data position is a
function of the step, so a resumed run sees what the uninterrupted one saw. Without data: the example inputs
the directory was compiled with (``inputs.npz``), every step.

A checkpoint is ``TrainingStore.commit`` with ``data = {"train": {...}}``: the data's sha256 and batch size (a
resume with other data is refused), the next batch, and every step's loss so far (so the log of a resumed run
is the log of an uninterrupted one). The log (step,loss CSV) is rewritten atomically after each checkpoint, so
it never shows a step the store has not kept.

Never imports torch.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wafercc.ir import Func, WaferError

from .artifacts import check_output_file, write_atomic
from .errors import InputError
from .io import memory_bytes, read_npz
from .kernels import np_dtype
from .training import TRAIN_STORE_DIR, TrainStep

INPUTS_FILE = "inputs.npz"  # in a compiled training directory: the example inputs, by argument name
LOG_HEADER = "step,loss"
DEFAULT_CHECKPOINT_EVERY = 100


class TrainRunError(WaferError):
    """A training run that cannot start: bad data, a batch size the model was not compiled for, a store that
    has trained already (without resume) or has nothing to resume, a log that is not ours to replace."""


@dataclass
class Data:
    """The training data: one array per model input (in the function's order), cut into batches of ``batch``."""

    arrays: list[np.ndarray]
    batch: int
    sha256: str
    source: str  # what it is, for messages: "data.npz" or "the example inputs (inputs.npz)"

    @property
    def samples(self) -> int:
        return int(self.arrays[0].shape[0])

    @property
    def batches(self) -> int:
        return self.samples // self.batch

    def get(self, index: int) -> list[np.ndarray]:
        """Batch ``index`` (wrapping around), one array per input."""
        b = index % self.batches
        return [a[b * self.batch : (b + 1) * self.batch] for a in self.arrays]


def compiled_batch(func: Func) -> int:
    """The batch size the training function was compiled for: dim 0 of its inputs (all the same)."""
    dims = {a.name: (a.type.shape[0] if a.type.shape else None) for a in func.args}
    scalar = [n for n, d in dims.items() if d is None]
    if scalar:
        raise TrainRunError(
            f"input %{scalar[0]} of @{func.name} is a scalar: training data is cut into batches along dim 0 of "
            "every input, so every input needs a batch dim"
        )
    if len(set(dims.values())) > 1:
        shown = ", ".join(f"%{n} {d}" for n, d in dims.items())
        raise TrainRunError(
            f"the inputs of @{func.name} do not share a batch size (dim 0: {shown}): training data is cut into "
            "batches along dim 0 of every input"
        )
    return next(iter(dims.values()))


def load_data(path: str | os.PathLike, func: Func, batch: int, flag: str = "--data") -> Data:
    """The arrays of ``path`` (an .npz keyed by the names of ``func``'s inputs), checked against ``func``:
    each is ``[N, *input.shape[1:]]`` in the input's dtype, N the same for all and at least ``batch``."""
    args = {a.name: a for a in func.args}

    def bounds(keys: list[str]) -> dict[str, int]:
        missing = [n for n in args if n not in keys]
        extra = [k for k in keys if k not in args]
        if missing or extra:
            parts = [f"missing {', '.join(missing)}" if missing else "", f"unknown {', '.join(extra)}" if extra else ""]
            raise InputError(
                f"the arrays must be named like the model's inputs ({', '.join(args)}): "
                + "; ".join(p for p in parts if p)
            )
        return {k: memory_bytes() for k in keys}

    def expect(key: str, dtype: np.dtype, shape: tuple) -> str:
        t = args[key].type
        want = np_dtype(t)
        ok_dtype = dtype == want or (want.name == "bfloat16" and dtype == np.dtype("V2"))
        if ok_dtype and len(shape) == len(t.shape) and tuple(shape[1:]) == tuple(t.shape[1:]):
            return ""
        sample = f"{want}{list(t.shape[1:])}" if len(t.shape) > 1 else f"{want} scalars"
        whole = ", ".join(["N"] + [str(d) for d in t.shape[1:]])
        return f"array '{key}' is {dtype}{list(shape)}; input %{key} takes samples of {sample}: give {want}[{whole}]"

    try:
        data = read_npz(path, bounds, "training data", expect)
    except InputError as e:
        raise TrainRunError(f"{flag} {e}") from None
    arrays = [_as_input(data[n], args[n]) for n in args]
    counts = {n: int(a.shape[0]) for n, a in zip(args, arrays)}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{n} {c}" for n, c in counts.items())
        raise TrainRunError(f"{flag} {path}: the arrays hold different numbers of samples (dim 0: {shown})")
    n = next(iter(counts.values()))
    if n < batch:
        raise TrainRunError(
            f"{flag} {path} holds {n} sample(s), fewer than one batch of {batch}: give at least {batch} samples"
        )
    return Data(arrays, batch, _sha256(path), str(path))


def example_data(plan_dir: Path, func: Func, batch: int) -> Data:
    """The example inputs the directory was compiled with: one batch, every step."""
    path = plan_dir / INPUTS_FILE
    if not path.is_file():
        raise TrainRunError(
            f"'{plan_dir}' has no {INPUTS_FILE} (the example inputs; compile --train writes it): pass --data, "
            "or compile the model again"
        )
    try:
        data = load_data(path, func, batch, flag="the example inputs")
    except TrainRunError as e:
        raise TrainRunError(f"{e} (the example inputs of '{plan_dir}' are damaged: compile again)") from None
    data.source = f"the example inputs ({INPUTS_FILE})"
    return data


def _as_input(a: np.ndarray, arg) -> np.ndarray:
    want = np_dtype(arg.type)
    return a.view(want) if a.dtype != want else a  # bf16 stored as raw 2-byte values


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- the log -------------------------------------------------------------------------------------


def is_loss_log(p: Path) -> bool:
    """What ``--log`` writes: ``step,loss`` then one line per step, 1, 2, ..."""
    with open(p, errors="strict") as f:
        lines = f.read(1 << 26).splitlines()
    if not lines or lines[0] != LOG_HEADER:
        return False
    for i, line in enumerate(lines[1:], 1):
        step, _, loss = line.partition(",")
        if step != str(i):
            return False
        float(loss)  # ValueError: not ours
    return True


def log_text(losses: list[float]) -> str:
    return "".join([LOG_HEADER + "\n"] + [f"{i},{loss!r}\n" for i, loss in enumerate(losses, 1)])


# -- the run -------------------------------------------------------------------------------------


class TrainRun:
    """A training run of a compiled directory to ``steps`` total steps (None: one pass over the data, see
    ``epoch_steps``); iterate it for (step, loss).

    Everything is checked when it is made (the data, the batch, the store's state against ``resume``, the
    log's place): a mistake is a TrainRunError before anything is trained or written."""

    def __init__(
        self,
        plan_dir: str | os.PathLike,
        *,
        steps: int | None = None,
        data: str | os.PathLike | None = None,
        batch: int | None = None,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        resume: bool = False,
        log: str | os.PathLike | None = None,
        plan: bool = True,
    ):
        _check_counts(steps, batch, checkpoint_every)
        if log is not None:
            check_output_file(log, is_loss_log, f"a {LOG_HEADER} log", force=False)
        self.dir = Path(plan_dir)
        if data is not None and not Path(data).is_file():
            raise TrainRunError(f"--data '{data}' does not exist (give an .npz of arrays named like the inputs)")
        self.trainer = TrainStep(self.dir, plan=plan)
        try:
            self._setup(steps, data, batch, checkpoint_every, resume, log)
        except BaseException:
            self.trainer.close()
            raise

    def _setup(self, steps, data, batch, checkpoint_every, resume, log) -> None:
        func = self.trainer.func
        compiled = compiled_batch(func)
        if batch is not None and batch != compiled:
            raise TrainRunError(
                f"'{self.dir}' was compiled for batches of {compiled} (dim 0 of its example inputs); --batch "
                f"{batch} needs the model compiled with example inputs of batch {batch}"
            )
        self.data = example_data(self.dir, func, compiled) if data is None else load_data(data, func, compiled)
        self.k = self.trainer.micro_batches
        self.by_default = steps is None
        steps = epoch_steps(self.data, self.k) if steps is None else steps
        self.steps, self.every, self.log = steps, checkpoint_every, log
        store = self.trainer.store
        self.start = store.step
        self.losses = self._check_resume(store, resume)
        if self.start > steps:
            given = f"--steps {steps}"
            if self.by_default:
                given = f"one pass over the data ({steps} step(s): no --steps given)"
            raise TrainRunError(
                f"the store in '{self.dir / TRAIN_STORE_DIR}' is at step {self.start}, past {given} "
                "(the run's total steps): nothing to do; give a larger --steps"
            )

    def _check_resume(self, store, resume: bool) -> list[float]:
        where = self.dir / TRAIN_STORE_DIR
        if not resume:
            if store.step > 0:
                raise TrainRunError(
                    f"the store in '{where}' has trained {store.step} step(s) already (its last checkpoint): pass "
                    "--resume to continue it to --steps, or compile the model again to start over; nothing "
                    "was trained"
                )
            return []
        if store.step == 0:
            raise TrainRunError(
                f"--resume: the store in '{where}' has no checkpoint to resume (it holds the initial weights, "
                "step 0): run without --resume"
            )
        rec = store.data.get("train") if isinstance(store.data, dict) else None
        if not _is_record(rec, store.step):
            raise TrainRunError(
                f"--resume: the store in '{where}' was trained to step {store.step} outside wafercc train (its "
                "checkpoint records no data position): wafercc train cannot continue it"
            )
        if rec["data_sha256"] != self.data.sha256 or rec["batch"] != self.data.batch:
            raise TrainRunError(
                f"--resume: the checkpoint at step {store.step} was trained on other data ({rec['source']}, "
                f"sha256 {rec['data_sha256'][:12]}...); this run's is {self.data.source} (sha256 "
                f"{self.data.sha256[:12]}...): resume with the same --data"
            )
        return [float(v) for v in rec["losses"]]

    def __iter__(self):
        """Train from the store's step to ``steps``: yields (step, loss) after each; commits every
        ``checkpoint_every`` steps and after the last one (then the log is rewritten)."""
        store = self.trainer.store
        if self.log is not None and self.losses and store.step == self.steps:
            self._write_log()  # a finished run resumed again: the log as the checkpoint has it
        while store.step < self.steps:
            t = store.step + 1
            batches = [self.data.get((t - 1) * self.k + j) for j in range(self.k)]
            out = self.trainer.step(batches if self.k > 1 else batches[0])
            self.losses.append(out.loss)
            if store.step % self.every == 0 or store.step == self.steps:
                self.checkpoint()
            yield store.step, out.loss

    def checkpoint(self) -> int:
        store = self.trainer.store
        record = {
            "source": self.data.source,
            "data_sha256": self.data.sha256,
            "batch": self.data.batch,
            "micro_batches": self.k,
            "next_batch": store.step * self.k % self.data.batches,
            "losses": self.losses,
        }
        step = store.commit(data={**store.data, "train": record})
        if self.log is not None:
            self._write_log()
        return step

    def _write_log(self) -> None:
        write_atomic(self.log, log_text(self.losses))

    def close(self) -> None:
        self.trainer.close()

    def __enter__(self) -> TrainRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def epoch_steps(data: Data, micro_batches: int) -> int:
    """The steps of one pass over the data: each step takes ``micro_batches`` batches, and no batch is used
    twice (a tail of fewer batches than a step needs is left for the next pass); at least one step. Without
    --data the data is the example inputs, one batch: one step."""
    return max(1, data.batches // micro_batches)


def _check_counts(steps: int, batch: int | None, every: int) -> None:
    for flag, v in (("--steps", steps), ("--batch", batch), ("--checkpoint-every", every)):
        if v is not None and v < 1:
            raise TrainRunError(f"{flag} must be at least 1, got {v}")


def _is_record(rec, step: int) -> bool:
    return (
        isinstance(rec, dict)
        and isinstance(rec.get("data_sha256"), str)
        and isinstance(rec.get("batch"), int)
        and isinstance(rec.get("source"), str)
        and isinstance(rec.get("losses"), list)
        and len(rec["losses"]) == step
        and all(isinstance(v, (int, float)) for v in rec["losses"])
    )


__all__ = ["Data", "INPUTS_FILE", "TrainRun", "TrainRunError", "epoch_steps", "is_loss_log", "load_data", "log_text"]
