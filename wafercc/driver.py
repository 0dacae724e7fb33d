"""The compile driver: a model goes through the stages of ``STAGES``, in order, to an output directory.

    stage      what it does                                                 --emit stops after it
    capture    torch.export (or torch.fx) → core-ATen FX graph
    import     FX graph → graph-level WIR + the weights it names            imported
    optimize   the cleanup pipeline (canonicalize, fold, cse, dce)          graph
    partition  streamed layers                                              layers
    tile       each layer's rectangle size and tiling                       tiled
    place      each layer's rectangle on the mesh                           placed
    route      routes and colors; then memplan and cost                     routed (the default)
    write      model.wir + weights.safetensors + manifest.json (+ plan.json, report.txt), atomically

Every stage's WIR reads back into ``wafercc opt``, which can run the rest by pass names. The module is
verified (``verify_module``) after import and after every pass.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.artifacts import KIND_MODEL, MODEL_FILES, PLAN_FILE, REPORT_FILE, WIR_FILE, write_dir_atomic
from runtime.store import write_store
from wafercc.errors import UsageError
from wafercc.ir import Module, print_module
from wafercc.ir.training import check_training, is_training
from wafercc.mapping.plan import MODES
from wafercc.mapping.report import format_report, plan_json, plan_views
from wafercc.mapping.check import check_plan
from wafercc.ops import verify as verify_ops
from wafercc.passes import DEFAULT_PIPELINE, PassManager
from wafercc.target import parse_target

DEFAULT_TARGET = "wse2"


@dataclass(frozen=True)
class Stage:
    name: str  # a key of CompileResult.timings
    emit: str | None  # the --emit name that stops after this stage
    passes: tuple[str, ...] = ()  # the mapping passes it runs


# The pipeline after capture and import (both always run), in order.
STAGES = (
    Stage("optimize", "graph"),
    Stage("partition", "layers", ("partition",)),
    Stage("tile", "tiled", ("tile",)),
    Stage("place", "placed", ("place",)),
    Stage("route", "routed", ("route", "memplan", "cost")),
)
EMIT_STAGES = ("imported",) + tuple(s.emit for s in STAGES)


def verify_module(module: Module) -> Module:
    """Full verification of a module at any stage: the IR's generic rules and every op's own rules; once
    the module is mapped, every promise of its plan. Raises VerifyError."""
    verify_ops(module)
    if is_training(module):
        check_training(module)
    if module.layers:
        check_plan(module)
    return module


@dataclass
class CompileResult:
    module: Module
    weights: dict[str, np.ndarray]  # WIR symbol → data (absent when compiled without weights)
    kinds: dict[str, str]
    op_counts: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)
    out_dir: Path | None = None
    with_weights: bool = True  # False: planned without weight data (--no-weights, or a meta-device model)

    @property
    def text(self) -> str:
        return print_module(self.module)


Progress = Callable[[str], None]


def compile(
    model,
    example_inputs,
    *,
    name: str = "model",
    source: str | None = None,
    capture: str = "export",
    pipeline: str | None = None,
    emit: str = "routed",
    target: str = DEFAULT_TARGET,
    mode: str = "stream",
    out_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    pass_options: dict | None = None,
    with_weights: bool = True,
) -> CompileResult:
    """Compile ``model`` for ``example_inputs``; with ``out_dir``, write the WIR, the plan and (unless
    ``with_weights`` is False or the model lives on the meta device) the MemoryX store there."""
    from wafercc import frontend  # torch: imported once a model is captured
    from wafercc.frontend.interop import to_numpy

    if emit not in EMIT_STAGES:
        raise UsageError(f"unknown --emit stage '{emit}' (choose from {', '.join(EMIT_STAGES)})")
    stages = STAGES[: EMIT_STAGES.index(emit)]
    mapped = any(s.passes for s in stages)
    if mapped:  # a bad target or mode is a usage error before any work
        parse_target(target)
        if mode not in MODES:
            raise UsageError(f"unknown mode '{mode}' (use {' or '.join(MODES)})")
    timings: dict[str, float] = {}
    timed = _Timer(timings, progress)

    with timed("capture", "capturing the model with " + ("torch.export" if capture == "export" else "torch.fx")):
        captured = frontend.capture(model, example_inputs, capture)
    with timed("import", "importing into WIR"):
        imported = frontend.import_graph(captured, name=name, source=source)
        module = verify_module(imported.module)
    if mapped:
        module.attrs["target"] = target
        module.attrs["mode"] = mode
    for stage in stages:
        passes = ",".join(stage.passes) or (pipeline if pipeline is not None else DEFAULT_PIPELINE)
        what = f"mapping onto {target} ({mode}): {stage.name}" if stage.passes else "optimizing"
        with timed(stage.name, what):
            module = PassManager(passes, verifier=verify_module, **(pass_options or {})).run(module)

    # Keep only the weights the final module still declares and uses, in declaration order.
    used = {op.attrs["symbol"].name for f in module.funcs for op in f.ops if op.name == "weight.get"}
    for sym in [s for s in module.weights if s not in used]:
        del module.weights[sym]
    kinds = {s: imported.weights[s].kind for s in module.weights}
    on_meta = any(imported.weights[s].tensor.device.type == "meta" for s in module.weights)
    if with_weights and on_meta:
        timed.say("the model is on the meta device: planning without weight data (no MemoryX store)")
    with_weights = with_weights and not on_meta
    weights = {s: to_numpy(imported.weights[s].tensor) for s in module.weights} if with_weights else {}
    result = CompileResult(module, weights, kinds, imported.op_counts, timings, with_weights=with_weights)
    if out_dir is not None:
        with timed("write", f"writing {out_dir}"):
            views = {}
            if emit == "routed":
                plan, typed = plan_views(module)  # one load (and check) of the plan for both views
                views = {PLAN_FILE: plan_json(module, plan), REPORT_FILE: format_report(typed)}
            result.out_dir = write_output(Path(out_dir), module, weights if with_weights else None, kinds, views)
    return result


class _Timer:
    """``with timed(stage, message):`` says ``message`` to the progress callback and adds the block's wall
    time to ``timings[stage]``."""

    def __init__(self, timings: dict[str, float], progress: Progress | None):
        self.timings = timings
        self.say = progress or (lambda _message: None)

    @contextmanager
    def __call__(self, stage: str, message: str) -> Iterator[None]:
        self.say(message)
        t = time.perf_counter()
        yield
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t


def write_output(
    out_dir: Path,
    module: Module,
    weights: dict[str, np.ndarray] | None,
    kinds: dict[str, str],
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write the compiled model into ``out_dir`` all at once (a failure leaves no partial output, and a
    reader never sees a half-written model). ``weights=None`` (a plan without weight data) writes no
    MemoryX store. An existing ``out_dir`` is replaced only when it is an earlier compiled model (or empty,
    or inside ``runtime.artifacts.forced``): runtime.errors.OutputError otherwise."""

    def fill(tmp: Path) -> None:
        (tmp / WIR_FILE).write_text(print_module(module))
        if weights is not None:
            write_store(tmp, weights, kinds)
        for fname, text in (extra_files or {}).items():
            (tmp / fname).write_text(text)

    return write_dir_atomic(out_dir, fill, KIND_MODEL, legacy=MODEL_FILES)


# -- training ---------------------------------------------------------------------------------------------

TRAIN_STORE_DIR = "store"  # the MemoryX training store (runtime/training_store.py) inside a compiled directory
TRAIN_FILE = "training.json"  # the step's settings: micro-batches, clipping, the inputs


def compile_training(
    model,
    example_inputs,
    optimizer,
    *,
    micro_batches: int = 1,
    clip_norm: float | None = None,
    precision: str = "fp32",
    name: str = "model",
    source: str | None = None,
    target: str = DEFAULT_TARGET,
    mode: str = "stream",
    out_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    with_weights: bool = True,
) -> CompileResult:
    """Compile a training model (its forward returns a scalar loss) for weight-streaming training: capture
    the joint forward + backward graph, import it (gradients tied to their weights), plan both passes and
    the training phases (mapping/training.py); with ``out_dir`` write model.wir, plan.json, report.txt,
    training.json and the MemoryX training store holding the weights and ``optimizer`` (a runtime.optim
    optimizer) with its state. Without weights (``with_weights=False``, or a model on the meta device) the
    step is only planned: no store and no example inputs are written, as inference's --no-weights."""
    from runtime.training import TRAIN_PRECISIONS
    from wafercc.frontend.interop import to_numpy
    from wafercc.frontend.training import import_training  # torch

    from wafercc.ir.plan import STORAGE_ATTR
    from wafercc.mapping import training as train_plan

    parse_target(target)
    if mode != "stream":
        raise UsageError(f"training is planned in stream mode (weight streaming), not {mode!r}")
    if micro_batches < 1:
        raise UsageError(f"--grad-accum must be at least 1, got {micro_batches}")
    if clip_norm is not None and not clip_norm > 0:
        raise UsageError(f"--clip-grad-norm must be a number > 0, got {clip_norm}")
    if precision not in TRAIN_PRECISIONS:
        raise UsageError(
            f"training runs in {' or '.join(TRAIN_PRECISIONS)} (--precision), not {precision}: fp16 would need "
            "loss scaling, which wafercc does not do"
        )
    timings: dict[str, float] = {}
    timed = _Timer(timings, progress)
    with timed("capture", "capturing the joint forward + backward graph (AOTAutograd)"):
        imported = import_training(model, example_inputs, name=name, source=source)
    with timed("import", "verifying the imported training graph"):
        module = verify_module(imported.module)
    module.attrs["target"] = target
    module.attrs["mode"] = mode
    if precision != "fp32":  # the plan charges what the step stores: 16-bit tiles, parameters streamed in 16 bits
        module.attrs[STORAGE_ATTR] = TRAIN_PRECISIONS[precision]
    for stage in STAGES:
        what = f"mapping onto {target} ({mode}): {stage.name}" if stage.passes else "optimizing"
        with timed(stage.name, what):
            module = PassManager(",".join(stage.passes) or DEFAULT_PIPELINE, verifier=verify_module).run(module)
        if not stage.passes:  # after the cleanup (whose cse would merge them): the backward's own weight reads
            module = verify_module(train_plan.restream_weights(module))
    with timed("train", "planning the training phases"):
        words = len(optimizer.state_names())
        module = verify_module(train_plan.run(module, optimizer_state_words=words, clip=clip_norm is not None))
    kinds = {s: imported.weights[s].kind for s in module.weights}
    if with_weights and any(imported.weights[s].tensor.device.type == "meta" for s in module.weights):
        timed.say("the model is on the meta device: planning without weight data (no training store)")
        with_weights = False
    weights = {s: to_numpy(imported.weights[s].tensor) for s in module.weights} if with_weights else {}
    result = CompileResult(module, weights, kinds, imported.op_counts, timings, with_weights=with_weights)
    if out_dir is not None:
        settings = {"micro_batches": micro_batches, "clip_norm": clip_norm}
        if precision != "fp32":  # bf16: the store streams bf16 weights beside fp32 masters
            settings["precision"] = precision
        inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
        examples = {a.name: to_numpy(t) for a, t in zip(module.func().args, inputs)} if with_weights else None
        with timed("write", f"writing {out_dir}"):
            result.out_dir = write_training_output(
                Path(out_dir), module, weights if with_weights else None, kinds, optimizer, settings, examples
            )
    return result


def write_training_output(
    out_dir: Path,
    module: Module,
    weights: dict | None,
    kinds: dict,
    optimizer,
    settings: dict,
    examples: dict | None = None,
) -> Path:
    """A compiled training directory, all at once: model.wir, plan.json, report.txt (with the phases),
    training.json, the training store (``store/``: weights, fp32 optimizer state, checkpoint 0; none when
    ``weights`` is None, a plan without weight data) and, given ``examples`` (the example inputs by argument
    name), inputs.npz: what ``wafercc train`` trains on without ``--data``."""
    import json

    from runtime.io import npz_bytes
    from runtime.trainer import INPUTS_FILE
    from runtime.training import TRAIN_PRECISIONS
    from runtime.training_store import TrainingStore
    from wafercc.mapping.training import phase_summary

    plan, typed = plan_views(module)  # one load (and check) of the plan for both views
    dtype = TRAIN_PRECISIONS[settings.get("precision", "fp32")]  # the dtype parameters stream in

    def fill(tmp: Path) -> None:
        (tmp / WIR_FILE).write_text(print_module(module))
        (tmp / PLAN_FILE).write_text(plan_json(module, plan))
        (tmp / REPORT_FILE).write_text(format_report(typed) + "\n" + phase_summary(plan))
        (tmp / TRAIN_FILE).write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")
        if examples is not None:
            (tmp / INPUTS_FILE).write_bytes(npz_bytes(examples))
        if weights is not None:
            params = {s: w for s, w in weights.items() if kinds[s] == "parameter"}
            buffers = {s: w for s, w in weights.items() if kinds[s] != "parameter"}
            TrainingStore.create(tmp / TRAIN_STORE_DIR, params, optimizer, buffers=buffers, weight_dtype=dtype).close()

    return write_dir_atomic(out_dir, fill, KIND_MODEL, legacy=MODEL_FILES)
