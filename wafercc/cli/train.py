"""``wafercc train``: train a compiled training directory in the reference runtime (runtime/trainer.py), with
a progress bar showing each step's loss, checkpoints in the training store, ``--resume`` and a loss log."""

from __future__ import annotations

import sys
import time

from runtime.trainer import DEFAULT_CHECKPOINT_EVERY, TrainRun


def add_commands(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a compiled training model (compile --train) in the reference runtime, checkpointing its store",
    )
    p.add_argument("dir", metavar="DIR", help="a directory written by wafercc compile MODEL.py --train")
    p.add_argument(
        "--data",
        metavar="NPZ",
        help="arrays named like the model's inputs, samples along dim 0, cut into batches in order "
        "(default: the example inputs, every step)",
    )
    p.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="the run's total optimizer steps (default: one pass over the data, each batch once; with the example "
        "inputs, 1)",
    )
    p.add_argument(
        "--batch",
        type=int,
        metavar="B",
        help="samples per batch (default and only choice: the batch the model was compiled for)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=DEFAULT_CHECKPOINT_EVERY,
        metavar="S",
        help=f"commit a checkpoint every S steps and after the last (default {DEFAULT_CHECKPOINT_EVERY})",
    )
    p.add_argument("--resume", action="store_true", help="continue the store's last checkpoint to --steps")
    p.add_argument("--log", metavar="CSV", help="write step,loss for every step here (rewritten at each checkpoint)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    with TrainRun(
        args.dir,
        steps=args.steps,
        data=args.data,
        batch=args.batch,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        log=args.log,
    ) as run:
        start = run.start
        with _Bar(run.steps, start, args.quiet) as bar:
            for step, loss in run:
                bar.update(step, loss)
        print(summary(run, start, args))
    return 0


def summary(run: TrainRun, start: int, args) -> str:
    d = run.data
    used = d.batches * d.batch
    unused = f", {d.samples - used} unused" if d.samples > used else ""
    per = f"{run.k} micro-batches of {d.batch} per step" if run.k > 1 else f"batches of {d.batch}"
    lines = []
    if start == run.steps:
        given = "one pass over the data" if run.by_default else f"--steps {run.steps}"
        lines.append(f"{args.dir}: the store is at step {start} already ({given}): nothing to train")
    else:
        steps = f"step {run.steps}" if start + 1 == run.steps else f"steps {start + 1}-{run.steps}"
        lines.append(
            f"trained {args.dir}: {steps} on {d.source} ({d.samples} samples, {per}, "
            f"{d.batches} batch(es) per epoch{unused})"
        )
    if run.losses:
        lines.append(f"  loss: step 1 {run.losses[0]:.6g}, step {len(run.losses)} {run.losses[-1]:.6g}")
    lines.append(f"  checkpoint: step {run.trainer.store.step} in {run.trainer.store.dir}")
    if args.log:
        lines.append(f"  wrote {args.log}")
    return "\n".join(lines)


class _Bar:
    """A progress bar with the last step's loss on a terminal (rich); elsewhere a line on stderr at most once
    a second, and for the last step."""

    def __init__(self, total: int, start: int, quiet: bool):
        self.total, self.quiet = total, quiet
        self.last = 0.0
        self.bar = None
        if not quiet and sys.stderr.isatty() and start < total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.task = self.bar.add_task("train", total=total, completed=start, loss="-")
            self.bar.start()

    def update(self, step: int, loss: float) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=step, loss=f"{loss:.6g}")
            return
        now = time.perf_counter()
        if now - self.last >= 1.0 or step == self.total:
            print(f"wafercc: step {step}/{self.total} loss {loss:.6g}", file=sys.stderr)
            self.last = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
