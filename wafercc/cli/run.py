"""``wafercc run`` (execute a compiled model in the numpy reference runtime) and ``wafercc verify`` (compile,
run, and compare with eager PyTorch; bisect a mismatch)."""

from __future__ import annotations

import sys
import zipfile
from contextlib import nullcontext
from pathlib import Path

import runtime
from runtime.artifacts import KIND_MODEL, MODEL_FILES, WIR_FILE, check_output_dir, check_output_file, forced
from wafercc.cli.common import load_model, model_args, runtime_flags, seconds_text
from wafercc.cli.progress import Reporter
from wafercc.cli.training import check_train_args, optimizer_from_args, train_args
from wafercc.driver import verify_module
from wafercc.errors import UsageError
from wafercc.ir import DType, parse_file
from wafercc.mapping.report import format_bytes

TOP_LAYERS = 10


# -- run --------------------------------------------------------------------------------------


def add_run(sub) -> None:
    p = sub.add_parser("run", help="run a compiled model in the numpy reference runtime")
    p.add_argument("path", metavar="PATH", help="a compiled model directory, or a .wir file with its store beside it")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--inputs", metavar="NPZ", help="inputs keyed by argument name (x) or position (arg0, arg1, ...)")
    src.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the random inputs made from the signature when no --inputs is given (default 0)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="NPZ",
        help="write the outputs here (out0, out1, ...); an existing file only if it is such an .npz",
    )
    p.add_argument("--force", action="store_true", help="replace the -o file whatever it holds")
    runtime_flags(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    if args.output:
        check_output_file(args.output, is_outputs_npz, "an .npz of outputs (out0, out1, ...)", force=args.force)
    module, where = _read_module(Path(args.path))
    verify_module(module)  # the compiler's full verifier: op rules and the plan, not only the generic rules
    func = module.func() if len(module.funcs) != 1 else module.funcs[0]
    store = runtime.Store(where) if any(op.name == "weight.get" for op in func.ops) else None
    try:
        interp = runtime.Interpreter(
            module, store, plan=False if args.no_plan else None, precision=args.precision, order=args.reduction_order
        )
        if args.inputs:
            inputs = runtime.load_inputs(args.inputs, interp.func)
        else:
            seed = args.seed if args.seed is not None else 0
            inputs = runtime.random_inputs(interp.func, seed)
            print(
                f"wafercc: no --inputs: running on seeded random inputs (seed {seed}) made from "
                f"{runtime.io.signature(interp.func)}",
                file=sys.stderr,
            )
        result = interp.run(inputs)
    finally:
        if store is not None:
            store.close()
    if args.output:
        runtime.save_outputs(args.output, result.outputs, interp.func)
    print(f"ran {args.path} (@{module.name}.{interp.func.name})")
    print("outputs:")
    for i, (v, a) in enumerate(zip(interp.func.returns, result.outputs)):
        print(f"  out{i}  %{v.name}  {list(a.shape)}  {v.type.dtype.value}")
    print(format_stats(result.stats))
    if args.output:
        print(f"wrote {args.output}")
    return 0


def _read_module(p: Path):
    """The module at ``p`` (a compiled directory or a .wir file) and the directory of its store."""
    if p.is_dir():
        if not (p / WIR_FILE).is_file():
            raise UsageError(f"'{p}' is not a compiled model directory: it has no {WIR_FILE}")
        return parse_file(p / WIR_FILE), p
    if not p.is_file():
        raise UsageError(f"'{p}' does not exist (give a compiled model directory or a .wir file)")
    return parse_file(p), p.parent


def is_outputs_npz(p: Path) -> bool:
    """What `run -o` writes: a zip of out0.npy, out1.npy, ... and nothing else."""
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        return False
    return bool(names) and all(n.startswith("out") and n[3:-4].isdigit() and n.endswith(".npy") for n in names)


def format_stats(stats) -> str:
    """The stats block of ``wafercc run``: totals, then the slowest layers and a total line."""
    lines = [
        "stats:",
        f"  weights streamed from MemoryX  {format_bytes(stats.weight_bytes_streamed):>10}",
        f"  peak resident weights          {format_bytes(stats.peak_resident_weight_bytes):>10}",
        f"  peak live activations          {format_bytes(stats.peak_activation_bytes):>10}",
        f"  wall time                      {seconds_text(stats.seconds):>10}",
    ]
    layers = stats.layers
    if not layers:
        return "\n".join(lines)
    top = sorted(layers, key=lambda s: -s.seconds)[:TOP_LAYERS]
    total = sum(s.seconds for s in layers) or 1e-12
    total_label = f"total ({len(layers)} layers)"
    width = max(len(total_label), *(len(s.name) for s in top))
    lines.append(f"layers (top {len(top)} of {len(layers)} by time):")
    lines.append(f"  {'layer':<{width}}  {'ops':>5}  {'streamed':>10}  {'time':>10}  {'share':>6}")
    for s in top:
        lines.append(
            f"  {s.name:<{width}}  {s.ops:>5}  {format_bytes(s.weight_bytes):>10}  {seconds_text(s.seconds):>10}  "
            f"{s.seconds / total:>6.1%}"
        )
    ops = sum(s.ops for s in layers)
    lines.append(
        f"  {total_label:<{width}}  {ops:>5}  {format_bytes(stats.weight_bytes_streamed):>10}  "
        f"{seconds_text(total):>10}  {1:>6.1%}"
    )
    return "\n".join(lines)


# -- verify -----------------------------------------------------------------------------------


def add_verify(sub) -> None:
    p = sub.add_parser("verify", help="compile a model, run it in the runtime and compare with eager PyTorch")
    model_args(p)
    p.add_argument("--target", default="wse2", metavar="TARGET", help="as for compile (default: wse2)")
    p.add_argument("--mode", choices=("stream", "pipeline"), default="stream", help="as for compile")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--inputs",
        metavar="NPZ",
        help="inputs keyed by argument name or position (default: the model's example inputs)",
    )
    src.add_argument("--seed", type=int, metavar="N", help="seeded random inputs of the example inputs' shapes/dtypes")
    runtime_flags(p)
    p.add_argument(
        "--bisect",
        action="store_true",
        help="also bisect when the outputs match (it runs by itself when they do not); with --train, name the "
        "first diverging gradient and the op behind it when the run does not match",
    )
    p.add_argument(
        "--rtol",
        type=float,
        metavar="R",
        help="relative tolerance for every float output (default: by dtype, see docs/runtime.md)",
    )
    p.add_argument("--atol", type=float, metavar="A", help="absolute tolerance, not scaled (default: by dtype)")
    p.add_argument(
        "-o", "--output", metavar="DIR", help="also write the compiled model here (default: nothing written)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace whatever is at -o (default: only an earlier compiled model, or an empty folder)",
    )
    train_args(p)
    p.add_argument("--steps", type=int, default=3, metavar="N", help="with --train: training steps to compare (3)")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args) -> int:
    from wafercc.numerics.eager import compare_model  # torch

    check_train_args(args)
    if args.train:
        return cmd_verify_training(args)
    if args.steps != 3:
        raise UsageError("--steps is a training option: add --train")

    for flag in ("rtol", "atol"):
        if getattr(args, flag) is not None and not getattr(args, flag) >= 0:
            raise UsageError(f"--{flag} must be a number >= 0, got {getattr(args, flag)}")
    if args.output:
        check_output_dir(args.output, KIND_MODEL, MODEL_FILES, force=args.force)
    progress = Reporter()
    try:
        progress(f"loading {args.model}")
        model, inputs = load_model(args)
        with forced(args.output) if args.output and args.force else nullcontext():
            v = compare_model(
                model,
                inputs,
                inputs=args.inputs,
                seed=args.seed,
                name=Path(args.model).stem,
                source=args.model,
                capture=args.capture,
                target=args.target,
                mode=args.mode,
                out_dir=args.output,
                rtol=args.rtol,
                atol=args.atol,
                bisect=True if args.bisect else None,
                progress=progress,
                precision=args.precision,
                plan=not args.no_plan,
                order=args.reduction_order,
            )
    finally:
        progress.close()
    print(format_verification(v, args))
    return 0 if v.passed else 1


def cmd_verify_training(args) -> int:
    """``verify --train``: N steps in the runtime and in eager PyTorch with torch.optim, compared."""
    from wafercc.numerics.training import compare_training, format_training_verification  # torch

    not_training = [f for f in ("inputs", "seed", "rtol", "atol") if getattr(args, f) is not None]
    not_training += [f for f in ("no_plan",) if getattr(args, f)]
    not_training += ["mode"] if args.mode != "stream" else []
    if not_training:
        flag = "--" + not_training[0].replace("_", "-")
        raise UsageError(f"{flag} does not apply to verify --train (it compares the training policy's steps)")
    if args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}")
    optimizer = optimizer_from_args(args)
    if args.output:
        check_output_dir(args.output, KIND_MODEL, MODEL_FILES, force=args.force)
    progress = Reporter()
    try:
        progress(f"loading {args.model}")
        model, inputs = load_model(args)
        with forced(args.output) if args.output and args.force else nullcontext():
            v = compare_training(
                model,
                inputs,
                optimizer,
                steps=args.steps,
                micro_batches_per_step=args.grad_accum,
                clip_norm=args.clip_grad_norm,
                name=Path(args.model).stem,
                source=args.model,
                target=args.target,
                out_dir=args.output,
                progress=progress,
                precision=args.precision,
            )
        bisected = None
        if args.bisect and not v.passed:  # without a divergence, --bisect adds nothing
            from wafercc.numerics.train_bisect import bisect_training

            progress("bisecting: AOTAutograd's joint graph in torch beside the joint WIR in the runtime")
            model, inputs = load_model(args)  # the initial weights again
            bisected = bisect_training(model, inputs, name=Path(args.model).stem, source=args.model)
    finally:
        progress.close()
    print(format_training_verification(v, args.model))
    if bisected is not None:
        print(bisected.text())
    return 0 if v.passed else 1


def format_verification(v, args) -> str:
    s = v.seconds
    head = (
        f"verify {args.model}: compiled for {args.target} ({args.mode}) in {s.get('compile', 0):.2f} s; "
        f"runtime {seconds_text(s.get('runtime', 0))}, eager PyTorch {seconds_text(s.get('eager', 0))}, "
        f"on {v.inputs_from}"
    )
    lines = [head]
    rows = [("output", "shape", "dtype", "max abs", "max rel", "pcc", "result")]
    for o in v.outputs:
        c = o.comparison
        rows.append(
            (
                o.name,
                str(list(c.shape)),
                DType.wir_name(c.dtype),
                f"{c.max_abs:.3g}",
                f"{c.max_rel:.3g}",
                "-" if c.pcc is None else f"{c.pcc:.6f}",
                "ok" if c.passed else "FAIL",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    for o in v.outputs:
        c = o.comparison
        if not c.passed:
            lines.append(f"  {o.name}: {c.reason}" + (f"; {c.worst_text()}" if c.worst else ""))
    tols = {DType.wir_name(o.comparison.dtype): o.comparison.tolerance.describe() for o in v.outputs}
    lines.append("tolerance: " + "; ".join(f"{d} {t}" for d, t in tols.items()))
    if v.reason:
        lines.append(f"mismatch: {v.reason}")
    n_ok = sum(o.comparison.passed for o in v.outputs)
    lines.append(f"{'match' if v.passed else 'MISMATCH'}: {n_ok} of {len(v.outputs)} output(s) within tolerance")
    if v.bisect is not None:
        lines.append(v.bisect.text())
    if v.diagnosis:
        lines.append(v.diagnosis)
    if v.stages:
        first = next((st for st, ok, _ in v.stages if not ok), None)
        lines.append(
            "plan stages: "
            + ", ".join(f"{st} {'ok' if ok else 'FAIL'} (max rel {rel:.3g})" for st, ok, rel in v.stages)
            + (f"; the numbers first move at the {first} stage" if first else "")
        )
    return "\n".join(lines)


def add_commands(sub) -> None:
    add_run(sub)
    add_verify(sub)
