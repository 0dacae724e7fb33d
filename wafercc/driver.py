"""The compile driver: a flat list of named stages from an nn.Module to an output directory.

    capture    torch.export (or torch.fx) → core-ATen FX graph            --emit imported stops after import
    import     FX graph → graph-level WIR + the weights it names
    optimize   the cleanup pipeline (canonicalize, fold, cse, dce)          --emit graph
    partition  streamed layers                                              --emit layers
    tile       each layer's rectangle size and tiling                       --emit tiled
    place      each layer's rectangle on the mesh                           --emit placed
    route      routes and colors; memplan; cost                             --emit routed (the default)
    write      model.wir + weights.safetensors + manifest.json (+ plan.json, report.txt), atomically

Every stage's WIR reads back into ``wafercc opt``, which can run the rest by pass names.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from wafercc.errors import UsageError
from wafercc.ir import Module, print_module

EMIT_STAGES = ("imported", "graph", "layers", "tiled", "placed", "routed")
# The mapping passes each --emit stage runs after the cleanup pipeline.
MAPPING = {"layers": ["partition"], "tiled": ["partition", "tile"], "placed": ["partition", "tile", "place"],
           "routed": ["partition", "tile", "place", "route", "memplan", "cost"]}
DEFAULT_TARGET = "wse2"


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
    from wafercc import frontend
    from wafercc.passes import DEFAULT_PIPELINE, PassManager
    from wafercc.verification import verify

    if emit not in EMIT_STAGES:
        raise UsageError(f"error: unknown --emit stage '{emit}' (choose from {', '.join(EMIT_STAGES)})")
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    if emit in MAPPING:  # a bad target or mode is a usage error before any work
        from wafercc.mapping.plan import MODES
        from wafercc.target import parse_target

        parse_target(target)
        if mode not in MODES:
            raise UsageError(f"error: unknown mode '{mode}' (use {' or '.join(MODES)})")

    t = time.perf_counter()
    say("capturing the model with " + ("torch.export" if capture == "export" else "torch.fx"))
    captured = frontend.capture(model, example_inputs, capture)
    timings["capture"] = time.perf_counter() - t

    t = time.perf_counter()
    say("importing into WIR")
    imported = frontend.import_graph(captured, name=name, source=source)
    module = imported.module
    verify(module)
    timings["import"] = time.perf_counter() - t

    if emit != "imported":
        t = time.perf_counter()
        say("optimizing")
        module = PassManager(pipeline if pipeline is not None else DEFAULT_PIPELINE, **(pass_options or {})).run(module)
        timings["optimize"] = time.perf_counter() - t
    if emit in MAPPING:
        t = time.perf_counter()
        say(f"mapping onto {target} ({mode})")
        module.attrs["target"] = target
        module.attrs["mode"] = mode
        module = PassManager(",".join(MAPPING[emit]), **(pass_options or {})).run(module)
        timings["map"] = time.perf_counter() - t

    # Keep only the weights the final module still declares and uses, in declaration order.
    used = {op.attrs["symbol"].name for f in module.funcs for op in f.ops if op.name == "weight.get"}
    for sym in [s for s in module.weights if s not in used]:
        del module.weights[sym]
    kinds = {s: imported.weights[s].kind for s in module.weights}
    on_meta = any(imported.weights[s].tensor.device.type == "meta" for s in module.weights)
    if with_weights and on_meta:
        say("the model is on the meta device: planning without weight data (no MemoryX store)")
    with_weights = with_weights and not on_meta
    weights = {s: to_numpy(imported.weights[s].tensor) for s in module.weights} if with_weights else {}
    result = CompileResult(module, weights, kinds, imported.op_counts, timings, with_weights=with_weights)
    if out_dir is not None:
        t = time.perf_counter()
        say(f"writing {out_dir}")
        extra = {}
        if emit == "routed":
            from wafercc.mapping.report import format_report, plan_dict, plan_json

            extra = {"plan.json": plan_json(module), "report.txt": format_report(plan_dict(module))}
        result.out_dir = write_output(Path(out_dir), module, weights if with_weights else None, kinds, extra)
        timings["write"] = time.perf_counter() - t
    return result


def to_numpy(t) -> np.ndarray:
    """A torch tensor as a numpy array of the same dtype (bf16 through ml_dtypes)."""
    import torch

    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def write_output(out_dir: Path, module: Module, weights: dict[str, np.ndarray] | None, kinds: dict[str, str],
                 extra_files: dict[str, str] | None = None) -> Path:
    """Write the compiled model into ``out_dir`` all at once (a failure leaves no partial output, and a
    reader never sees a half-written model). ``weights=None`` (a plan without weight data) writes no
    MemoryX store."""
    from runtime.files import write_dir_atomic
    from runtime.store import write_store

    def fill(tmp: Path) -> None:
        (tmp / "model.wir").write_text(print_module(module))
        if weights is not None:
            write_store(tmp, weights, kinds)
        for fname, text in (extra_files or {}).items():
            (tmp / fname).write_text(text)

    return write_dir_atomic(out_dir, fill)

