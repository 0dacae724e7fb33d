"""``wafercc verify --train``: N training steps in the runtime and in eager PyTorch with torch.optim, from the
same initial weights and data, compared step by step (docs/training.md, "Verifying training").

    v = compare_training(model, example_inputs, SGD(lr=0.1), steps=3)
    v.passed, v.losses, v.grads, v.weights

The tolerance policy (``training_tolerances``), and why it grows with the steps:

- **loss of step t**: ``|Δ| <= 1e-5·t·max(1, |loss|)``. Step 1 runs the same weights through an fp32 forward:
  1e-5 relative, as inference. Each step's update carries the rounding differences of its gradients
  (the runtime sums products in another order than torch's kernels), which move the next losses; over a few
  steps the differences add up about linearly, hence the factor t.
- **gradients of step 1** (from the same weights): ``|Δg| <= 1e-5·max(1, max|g|)`` per element, max over the
  tensor: a gradient sums over the batch and the output features; relative to its largest element so that a
  gradient that is exactly zero in exact arithmetic (rounding noise in both runs, as a key bias under
  softmax) is not compared relative to itself.
- **weights after N steps**: ``|Δw| <= 1e-5·N·max(1, max|w|)`` for SGD (the update is lr times the
  gradient: its difference is the gradient's, scaled by lr, added N times). AdamW adds ``2·lr·N``: Adam
  divides each gradient by its own running magnitude, so an element whose gradient is pure rounding noise in
  both runs moves by about lr per step in a direction the noise picks; two such runs can end 2·lr·N apart
  while every gradient agrees to 1e-5 of its tensor's scale (the step-1 gradient check is the tight one).
- buffers (batch norm's running statistics) as weights with SGD's bound; integer buffers (its step counter)
  exactly.

**bf16** (``--precision bf16``). The reference is a bf16 copy of the eager model with fp32 master weights
(``_run_eager_bf16``): the wafer stores every value in bf16 and accumulates products in fp32, which is what
torch's CPU bf16 kernels do op by op; torch.autocast would keep softmax, norms and the loss in fp32 and store
fp32 activations, which the wafer does not. The two runs still round at different places (a fused torch kernel
such as log_softmax rounds once, the runtime rounds each op of its decomposition), so the bounds are bf16's:

- **loss of step t**: ``2^-6·t·max(1, |loss|)``: the loss is a bf16 value; when the fp32 sums of the two runs
  straddle a rounding boundary they land one or two bf16 ulps (2^-8 to 2^-7 relative each) apart, and each
  update moves the next step's loss by as much again.
- **gradients of step 1**: ``2^-4·max|g|`` per tensor, without fp32's floor of 1 (a bf16 gradient's error is
  relative to its own scale; a floor of 1 would exceed most gradients): the backward chains dozens of bf16
  roundings (2^-9 relative on average) through norms, softmax and sums with cancellation; measured up to
  1/50 of max|g| on the GPT example.
- **weights after N steps**: ``2^-7·N·max(1, max|w|)`` (+ AdamW's ``2·lr·N``): the masters are fp32, but the
  weight the next forward reads is the master rounded to bf16, so a master difference far below an ulp can
  flip the copy by one bf16 ulp (2^-7 relative at most) and move every later gradient; one ulp per step.
  Buffers the same (batch norm's running statistics are stored in bf16 on both sides).
"""

from __future__ import annotations

import copy
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from runtime.optim import AdamW, SGD
from runtime.training import TrainStep
from wafercc.driver import DEFAULT_TARGET, compile_training
from wafercc.errors import UsageError
from wafercc.frontend.interop import to_numpy

BASE_RTOL = 1e-5
# bf16 training (module docstring, "bf16"): 2 bf16 ulps of the loss per step, 1/16 of a gradient's largest
# element, one bf16 ulp of a weight's or buffer's scale per step.
BF16_LOSS_RTOL = 2.0**-6
BF16_GRAD_RTOL = 2.0**-4
BF16_WEIGHT_RTOL = 2.0**-7


@dataclass
class Check:
    """One compared quantity: its name, the largest difference, the bound, and whether it holds."""

    name: str
    max_abs: float
    bound: float
    passed: bool


@dataclass
class TrainVerification:
    steps: int
    losses: list[tuple[float, float]]  # (runtime, eager) per step
    loss_checks: list[Check]
    grads: list[Check]  # step 1, per parameter
    weights: list[Check]  # after the last step, per parameter and buffer
    passed: bool
    seconds: dict[str, float] = field(default_factory=dict)
    precision: str = "fp32"

    def failures(self) -> list[Check]:
        return [c for c in [*self.loss_checks, *self.grads, *self.weights] if not c.passed]


def training_tolerances(optimizer, steps: int, precision: str = "fp32") -> dict[str, float]:
    """The policy's factors: loss rtol at step t is ``loss * t``; ``weight`` is the relative bound on a
    weight after ``steps`` steps, ``weight_abs`` the absolute term AdamW adds, ``buffer`` the bound on a float
    buffer. With bf16 storage, the bf16 policy (module docstring)."""
    adam = isinstance(optimizer, AdamW)
    bf16 = precision == "bf16"
    weight = BF16_WEIGHT_RTOL if bf16 else BASE_RTOL
    return {
        "loss": BF16_LOSS_RTOL if bf16 else BASE_RTOL,
        "grad": BF16_GRAD_RTOL if bf16 else BASE_RTOL,
        "grad_floor": 0.0 if bf16 else 1.0,  # the bound's scale: max|g|, or max(1, max|g|) in fp32
        "weight": weight * steps,
        "weight_abs": 2 * optimizer.lr * steps if adam else 0.0,
        "buffer": weight * steps,
    }


def micro_batches(example_inputs: tuple, k: int) -> list[tuple]:
    """The K micro-batches of a step: the example inputs, then K-1 variations of them with the same shapes
    (floats + 0.1·k·noise from a fixed seed; integers (k + x) mod (max + 1), which stays in their range)."""
    out = [tuple(example_inputs)]
    g = torch.Generator().manual_seed(1234)
    for i in range(1, k):
        batch = []
        for x in example_inputs:
            if x.dtype.is_floating_point:
                batch.append(x + 0.1 * i * torch.randn(x.shape, generator=g, dtype=x.dtype))
            elif x.dtype == torch.bool:
                batch.append(x)
            else:
                batch.append((x + i) % (int(x.max()) + 1) if x.numel() else x)
        out.append(tuple(batch))
    return out


def compare_training(
    model,
    example_inputs,
    optimizer,
    *,
    steps: int = 3,
    micro_batches_per_step: int = 1,
    clip_norm: float | None = None,
    name: str = "model",
    source: str | None = None,
    target: str = DEFAULT_TARGET,
    out_dir=None,
    progress=None,
    compiled=None,
    precision: str = "fp32",
) -> TrainVerification:
    """Compile ``model`` for training with ``optimizer`` (or, with ``compiled``, step a copy of that compiled
    directory, which must hold the same optimizer), run ``steps`` steps in the runtime and in eager PyTorch
    from the same initial weights and micro-batches, and compare them under the training policy."""
    if steps < 1:
        raise UsageError(f"--steps must be at least 1, got {steps}")
    say = progress or (lambda _m: None)
    example_inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    eager = copy.deepcopy(model)  # the same initial weights; capture leaves `model` untouched
    batches = micro_batches(example_inputs, micro_batches_per_step)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    tmp = None
    if out_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="wafercc-verify-train-"))
        out_dir = tmp / "model"
    try:
        if compiled is not None:
            shutil.copytree(compiled, out_dir)
        else:
            compile_training(
                model,
                example_inputs,
                optimizer,
                micro_batches=micro_batches_per_step,
                clip_norm=clip_norm,
                precision=precision,
                name=name,
                source=source,
                target=target,
                out_dir=out_dir,
                progress=say,
            )
        seconds["compile"] = time.perf_counter() - t
        say(f"running {steps} training step(s) in the runtime")
        t = time.perf_counter()
        ours = train_in_runtime(Path(out_dir), batches, steps, optimizer, clip_norm, precision)
        seconds["runtime"] = time.perf_counter() - t
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    say(f"running {steps} training step(s) in eager PyTorch")
    t = time.perf_counter()
    theirs = train_in_eager(eager, batches, steps, optimizer, clip_norm, precision)
    seconds["eager"] = time.perf_counter() - t
    return compare_runs(ours, theirs, steps, optimizer, seconds, precision)


def train_in_runtime(
    out_dir: Path, batches: list[tuple], steps: int, optimizer, clip_norm=None, precision="fp32"
) -> dict:
    """``steps`` steps of a compiled training directory (stepped in place) on ``batches`` (its micro-batches):
    {"losses": [...], "grads": step 1's gradients by parameter, "weights": every parameter and buffer after}.
    The directory must hold the same optimizer, micro-batch count, clipping and precision (a UsageError if
    not)."""
    feeds = [[to_numpy(x) for x in b] for b in batches]
    with TrainStep(out_dir) as step:
        want = (optimizer, len(batches), clip_norm, precision)
        if (step.store.optimizer, step.micro_batches, step.clip_norm, step.precision) != want:
            raise UsageError(
                f"{out_dir} was compiled for {step.store.optimizer} over {step.micro_batches} micro-batch(es), "
                f"clipping {step.clip_norm}, in {step.precision}; not {optimizer} over {len(batches)}, "
                f"clipping {clip_norm}, in {precision}"
            )
        losses, grads = [], {}
        for i in range(steps):
            got = step.step(feeds[0] if len(feeds) == 1 else feeds, keep_grads=i == 0)
            losses.append(got.loss)
            if i == 0:
                grads = got.grads
        weights = {n: np.array(step.store.master(n)) for n in step.store.params}
        weights.update({n: np.array(step.store.weight(n)) for n in step.store.buffers})
    return {"losses": losses, "grads": grads, "weights": weights}


def _torch_optimizer(params, opt):
    if isinstance(opt, SGD):
        return torch.optim.SGD(
            params,
            lr=opt.lr,
            momentum=opt.momentum,
            dampening=opt.dampening,
            weight_decay=opt.weight_decay,
            nesterov=opt.nesterov,
            maximize=opt.maximize,
        )
    return torch.optim.AdamW(
        params,
        lr=opt.lr,
        betas=opt.betas,
        eps=opt.eps,
        weight_decay=opt.weight_decay,
        amsgrad=opt.amsgrad,
        maximize=opt.maximize,
    )


def _run_eager(model, batches: list[tuple], steps: int, optimizer, clip_norm) -> dict:
    """torch's loop: the mean of the micro-batch losses' gradients ((loss / K).backward()), clipping, step."""
    model.train()
    names = {id(p): n for n, p in model.named_parameters()}  # tied weights: their first name, as the store's
    params = [p for p in model.parameters()]
    initial = _buffers(model)
    opt = _torch_optimizer(params, optimizer)
    k = len(batches)
    losses, grads = [], {}
    for i in range(steps):
        opt.zero_grad()
        total = 0.0
        for b in batches:
            loss = model(*b)
            (loss / k).backward()
            total += float(loss.detach())
        losses.append(total / k)
        if i == 0:
            grads = {names[id(p)]: to_numpy(p.grad.detach()).copy() for p in params if p.grad is not None}
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        opt.step()
    weights = {n: to_numpy(p.detach()).copy() for n, p in model.named_parameters()}
    weights.update({n: to_numpy(b.detach()).copy() for n, b in model.named_buffers()})
    return {"losses": losses, "grads": grads, "weights": weights, "unchanged": _unchanged(initial, model)}


def _buffers(model) -> dict:
    return {n: b.detach().clone() for n, b in model.named_buffers()}


def _unchanged(initial: dict, model) -> set[str]:
    """The buffers the steps left bit for bit as they were (a buffer the step never reads nor writes, such as
    LLaMA's rotary_emb.original_inv_freq, is not in the compiled module and has nothing to compare)."""
    now = dict(model.named_buffers())
    return {n for n, b in initial.items() if n in now and torch.equal(now[n].to(b.dtype), b)}


def _run_eager_bf16(model, batches: list[tuple], steps: int, optimizer, clip_norm) -> dict:
    """The reference for --precision bf16: what MemoryX and the wafer do, in torch. A bf16 copy of the model
    (every value stored in bf16; torch's CPU bf16 kernels accumulate in fp32, as the wafer's FMACs) runs
    forward and backward on bf16 inputs; its gradients, in fp32, are summed over the micro-batches and
    averaged into the fp32 master parameters, which torch.optim updates; the copy then takes the masters
    rounded to bf16 (round to nearest even, as the store's streamed weights)."""
    model.train()
    work = copy.deepcopy(model).to(torch.bfloat16)  # deepcopy keeps tied weights tied
    initial = _buffers(work)
    names = {id(p): n for n, p in model.named_parameters()}
    masters, copies = list(model.parameters()), list(work.parameters())
    opt = _torch_optimizer(masters, optimizer)
    k = len(batches)
    losses, grads = [], {}
    for i in range(steps):
        opt.zero_grad()
        total = 0.0
        for b in batches:
            loss = work(*(x.to(torch.bfloat16) if x.is_floating_point() else x for x in b))
            loss.backward()
            total += float(loss.detach())
            _accumulate_grads(masters, copies)
        for m in masters:
            if m.grad is not None:
                m.grad /= k
        losses.append(total / k)
        if i == 0:
            grads = {names[id(p)]: to_numpy(p.grad.detach()).copy() for p in masters if p.grad is not None}
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(masters, clip_norm)
        opt.step()
        with torch.no_grad():
            for m, c in zip(masters, copies):
                c.copy_(m)
    weights = {n: to_numpy(p.detach()).copy() for n, p in model.named_parameters()}
    weights.update({n: to_numpy(b.detach().float() if b.is_floating_point() else b) for n, b in work.named_buffers()})
    return {"losses": losses, "grads": grads, "weights": weights, "unchanged": _unchanged(initial, work)}


def _accumulate_grads(masters: list, copies: list) -> None:
    for m, c in zip(masters, copies):
        if c.grad is not None:
            g = c.grad.float()
            m.grad = g if m.grad is None else m.grad + g
            c.grad = None


def train_in_eager(model, batches: list[tuple], steps: int, optimizer, clip_norm=None, precision="fp32") -> dict:
    """The same ``steps`` steps in eager PyTorch with torch.optim (``model`` is trained in place); the same
    dict as ``train_in_runtime``. bf16 runs the wafer's bf16 storage with fp32 masters (see the module doc)."""
    run = _run_eager_bf16 if precision == "bf16" else _run_eager
    return run(model, batches, steps, optimizer, clip_norm)


def compare_runs(
    ours: dict, theirs: dict, steps: int, optimizer, seconds: dict | None = None, precision="fp32"
) -> TrainVerification:
    """The runtime's run against eager's under the training policy (``training_tolerances``)."""
    tol = training_tolerances(optimizer, steps, precision)
    loss_checks = []
    for t, (a, b) in enumerate(zip(ours["losses"], theirs["losses"]), start=1):
        bound = tol["loss"] * t * max(1.0, abs(b))
        diff = abs(a - b) if math.isfinite(a) and math.isfinite(b) else math.inf
        loss_checks.append(Check(f"loss step {t}", diff, bound, diff <= bound))
    floor = tol["grad_floor"]
    grads = [_check(n, ours["grads"].get(n), g, tol["grad"], 0.0, floor) for n, g in theirs["grads"].items()]
    weights = []
    for n, w in theirs["weights"].items():
        got = ours["weights"].get(n)
        if got is None and n in theirs.get("unchanged", ()) and n not in theirs["grads"]:
            continue  # a buffer the step never touches: the compiled module does not hold it
        if np.issubdtype(w.dtype, np.floating):
            abs_term = tol["weight_abs"] if n in ours["grads"] else 0.0
            rel = tol["weight"] if n in ours["grads"] else tol["buffer"]
            weights.append(_check(n, got, w, rel, abs_term))
        else:
            same = got is not None and got.shape == w.shape and np.array_equal(got, w)
            weights.append(Check(n, 0.0 if same else math.inf, 0.0, same))
    passed = all(c.passed for c in [*loss_checks, *grads, *weights])
    losses = list(zip(ours["losses"], theirs["losses"]))
    return TrainVerification(steps, losses, loss_checks, grads, weights, passed, seconds or {}, precision)


def _check(name: str, got, want: np.ndarray, rel: float, abs_term: float, floor: float = 1.0) -> Check:
    if got is None or np.shape(got) != want.shape:
        return Check(name, math.inf, 0.0, False)
    w = want.astype(np.float64)
    diff = np.abs(np.asarray(got, dtype=np.float64) - w)
    worst = float(diff.max()) if diff.size else 0.0
    if not np.all(np.isfinite(diff)):
        worst = math.inf
    scale = max(floor, float(np.abs(w).max())) if w.size else floor
    bound = rel * scale + abs_term
    return Check(name, worst, bound, worst <= bound)


def format_training_verification(v: TrainVerification, model: str) -> str:
    s = v.seconds
    flags = " --precision bf16" if v.precision == "bf16" else ""
    lines = [
        f"verify {model} --train{flags}: {v.steps} step(s); compiled in {s.get('compile', 0):.2f} s, runtime "
        f"{s.get('runtime', 0):.2f} s, eager PyTorch {s.get('eager', 0):.2f} s"
    ]
    rows = [("step", "loss (runtime)", "loss (eager)", "|diff|", "bound", "result")]
    for (a, b), c in zip(v.losses, v.loss_checks):
        rows.append((c.name.split()[-1], f"{a:.7g}", f"{b:.7g}", f"{c.max_abs:.3g}", f"{c.bound:.3g}", _ok(c)))
    lines += _table(rows)
    rows = [("weight", "grad step 1 max|diff|", "bound", "final max|diff|", "bound", "result")]
    grads = {c.name: c for c in v.grads}
    for c in v.weights:
        g = grads.get(c.name)
        ok = c.passed and (g is None or g.passed)
        rows.append(
            (
                c.name,
                f"{g.max_abs:.3g}" if g else "-",
                f"{g.bound:.3g}" if g else "-",
                f"{c.max_abs:.3g}",
                f"{c.bound:.3g}",
                "ok" if ok else "FAIL",
            )
        )
    lines += _table(rows)
    lines.append(
        "tolerance (bf16): loss 2^-6·t·max(1,|loss|); step-1 gradients 2^-4·max|g|; weights after N steps "
        "2^-7·N·max(1,max|w|), + 2·lr·N with AdamW (docs/training.md)"
        if v.precision == "bf16"
        else "tolerance: loss 1e-5·t·max(1,|loss|); step-1 gradients 1e-5·max(1,max|g|); weights after N steps "
        "1e-5·N·max(1,max|w|), + 2·lr·N with AdamW (docs/training.md)"
    )
    bad = v.failures()
    n = len(v.loss_checks) + len(v.weights)
    lines.append(
        "match: every step's loss and every weight within tolerance"
        if v.passed
        else f"MISMATCH: {len(bad)} of {n + len(v.grads)} checks out of tolerance, first {bad[0].name}"
    )
    return "\n".join(lines)


def _ok(c: Check) -> str:
    return "ok" if c.passed else "FAIL"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
