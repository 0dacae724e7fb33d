"""``wafercc compile``, ``wafercc opt`` and ``wafercc check``: from a model file (or WIR text) to WIR and a plan."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

from runtime.trainer import INPUTS_FILE
from runtime.artifacts import (
    KIND_MODEL,
    MANIFEST_FILE,
    MODEL_FILES,
    PLAN_FILE,
    REPORT_FILE,
    STORE_FILE,
    WIR_FILE,
    check_output_dir,
    check_output_file,
    forced,
    write_atomic,
)
from wafercc.cli.common import load_model, model_args
from wafercc.cli.progress import Reporter
from wafercc.cli.training import check_train_args, describe_optimizer, optimizer_from_args, train_args
from wafercc.driver import EMIT_STAGES, TRAIN_FILE, TRAIN_STORE_DIR, compile, compile_training, verify_module
from wafercc.errors import UsageError
from wafercc.ir import parse, parse_file, print_module
from wafercc.mapping.report import format_bytes
from wafercc.mapping.training import rate_text
from wafercc.passes import PassManager, read_reproducer_pipeline
from wafercc.passes.manager import TEMP_DIR


def add_commands(sub) -> None:
    add_compile(sub)
    add_opt(sub)
    add_check(sub)


# -- compile ----------------------------------------------------------------------------------


def add_compile(sub) -> None:
    p = sub.add_parser("compile", help="compile a model file to WIR and a MemoryX weight store")
    model_args(p)
    p.add_argument("-o", "--output", metavar="DIR", help="output directory (default: build/<model name>)")
    p.add_argument("--passes", metavar="PIPELINE", help="cleanup pipeline (default: canonicalize,fold,cse,dce)")
    p.add_argument(
        "--target",
        default="wse2",
        metavar="TARGET",
        help="wse2 (default), wse3, mesh4/8/16/32, or mesh:WxH[,sram-kib=N,colors=N,clock-ghz=F,io-gbps=F]",
    )
    p.add_argument(
        "--mode",
        choices=("stream", "pipeline"),
        default="stream",
        help="weight streaming (default) or layer pipelined (all weights resident)",
    )
    p.add_argument(
        "--emit", choices=EMIT_STAGES, default="routed", help="stop after a stage (default: routed, the full plan)"
    )
    p.add_argument(
        "--no-weights",
        action="store_true",
        help="plan without weight data: no MemoryX store (automatic for a model on the meta device)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace whatever is at -o (default: only an earlier compiled model, or an empty folder)",
    )
    train_args(p)
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="with --train: bf16 streams bf16 weights (fp32 masters in MemoryX) and the step computes in bf16 "
        "storage with fp32 accumulation (default fp32)",
    )
    p.set_defaults(func=cmd_compile)


def cmd_compile(args) -> int:
    check_train_args(args)
    if args.precision != "fp32" and not args.train:
        raise UsageError(
            "--precision is a training option of compile: add --train (an inference model runs in the precision "
            "wafercc run --precision or verify --precision choose)"
        )
    if args.train:
        return cmd_compile_training(args)
    out = Path(args.output) if args.output else Path("build") / Path(args.model).stem
    check_output_dir(out, KIND_MODEL, MODEL_FILES, force=args.force)  # before minutes of work, not after
    progress = Reporter(args.quiet)
    try:
        progress(f"loading {args.model}")
        model, inputs = load_model(args)
        with forced(out) if args.force else nullcontext():
            result = compile(
                model,
                inputs,
                name=Path(args.model).stem,
                source=args.model,
                capture=args.capture,
                pipeline=args.passes,
                emit=args.emit,
                target=args.target,
                mode=args.mode,
                out_dir=out,
                progress=progress,
            )
    finally:
        progress.close()
    if not args.quiet:
        nbytes = sum(result.module.weights[s].type.nbytes for s in result.module.weights)
        nops = sum(len(f.ops) for f in result.module.funcs)
        total = sum(result.timings.values())
        print(
            f"compiled {args.model} -> {out}/  ({nops} ops, {len(result.module.weights)} weights, "
            f"{format_bytes(nbytes)}{'' if result.with_weights else ' not stored'}; {total:.2f} s)"
        )
        files = [WIR_FILE] + ([STORE_FILE, MANIFEST_FILE] if result.with_weights else [])
        if args.emit == "routed":
            files += [PLAN_FILE, REPORT_FILE]
            totals = result.module.attrs["plan.totals"]
            if totals["structures"] < totals["layers"]:
                print(
                    f"  {totals['layers']} layers in {totals['structures']} distinct structures: identical layers "
                    "reuse one plan's routes"
                )
            print(
                f"  plan on {args.target} ({args.mode}): {totals['layers']} layers, {totals['cycles']:,.0f} cycles "
                f"({totals['seconds'] * 1e3:.4g} ms), utilization {totals['utilization']:.1%}, peak "
                f"{totals['peak_bytes_per_pe']:,} bytes/PE, {totals['max_colors']} colors"
            )
        print("  " + "  ".join(f"{out}/{f}" for f in files))
    return 0


def cmd_compile_training(args) -> int:
    """``compile --train``: the joint graph planned for weight-streaming training, and the training store."""
    if args.mode != "stream" or args.emit != "routed" or args.capture != "export" or args.passes:
        raise UsageError(
            "--train plans the whole training step in stream mode from AOTAutograd's joint graph: "
            "--mode pipeline, --emit, --capture fx and --passes do not apply"
        )
    optimizer = optimizer_from_args(args)  # a bad setting is refused before any work
    out = Path(args.output) if args.output else Path("build") / Path(args.model).stem
    check_output_dir(out, KIND_MODEL, MODEL_FILES, force=args.force)
    progress = Reporter(args.quiet)
    try:
        progress(f"loading {args.model}")
        model, inputs = load_model(args)
        with forced(out) if args.force else nullcontext():
            result = compile_training(
                model,
                inputs,
                optimizer,
                micro_batches=args.grad_accum,
                clip_norm=args.clip_grad_norm,
                precision=args.precision,
                name=Path(args.model).stem,
                source=args.model,
                target=args.target,
                out_dir=out,
                progress=progress,
                with_weights=not args.no_weights,
            )
    finally:
        progress.close()
    if not args.quiet:
        tot = result.module.attrs["plan.totals"]
        nparams = sum(1 for k in result.kinds.values() if k == "parameter")
        streamed = " streamed as bf16 from fp32 masters" if args.precision == "bf16" else ""
        print(
            f"compiled {args.model} for training -> {out}/  ({sum(len(f.ops) for f in result.module.funcs)} ops, "
            f"{nparams} parameters{streamed}, {describe_optimizer(optimizer)}; {sum(result.timings.values()):.2f} s)"
        )
        print(
            f"  plan on {args.target}: {tot['layers']} layers; step {tot['step_seconds'] * 1e3:.4g} ms "
            f"(forward {tot['forward_seconds'] * 1e3:.4g}, backward {tot['backward_seconds'] * 1e3:.4g}, optimizer "
            f"exposed {tot['optimizer_exposed_seconds'] * 1e3:.4g}), {rate_text(tot['samples_per_s'])} samples/s; "
            f"gradients out {format_bytes(tot['gradient_bytes_streamed'])}"
        )
        if tot["structures"] < tot["layers"]:
            print(
                f"  {tot['layers']} layers in {tot['structures']} distinct structures: identical layers reuse one "
                "plan's routes"
            )
        files = [WIR_FILE, PLAN_FILE, REPORT_FILE, TRAIN_FILE]
        files += [INPUTS_FILE, TRAIN_STORE_DIR + "/"] if result.with_weights else []
        print(
            "  " + "  ".join(f"{out}/{f}" for f in files) + ("" if result.with_weights else "  (no weights: no store)")
        )
    return 0


# -- opt --------------------------------------------------------------------------------------


def add_opt(sub) -> None:
    p = sub.add_parser("opt", help="run passes on a WIR file")
    p.add_argument("input", help="a .wir file ('-' for stdin)")
    p.add_argument(
        "--passes",
        metavar="PIPELINE",
        help="e.g. canonicalize,cse,dce or fold{max-elements=16}; default: the reproducer's pipeline "
        "if the file is one, else none (parse, verify, print)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the result here (default: stdout); an existing file only if it is a WIR module",
    )
    p.add_argument("--force", action="store_true", help="replace the -o file whatever it holds")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass (stderr)")
    p.add_argument(
        "--print-ir-after",
        metavar="NAME",
        action="append",
        default=[],
        help="print the IR after the named pass (repeatable, or comma-separated)",
    )
    p.add_argument("--print-ir-after-change", action="store_true", help="print the IR after passes that changed it")
    p.add_argument("--time-passes", action="store_true", help="print a table of pass times and statistics")
    p.add_argument("--no-verify", action="store_true", help="do not run the verifier after each pass")
    p.add_argument(
        "--reproducer-dir",
        metavar="DIR",
        default=TEMP_DIR,
        help="where a failing pass writes repro.wir (default: a new temporary folder, named in the message)",
    )
    p.set_defaults(func=cmd_opt)


def cmd_opt(args) -> int:
    if args.output:
        check_output_file(args.output, is_wir_file, "a WIR module", force=args.force)
    if args.input == "-":
        text = sys.stdin.read()
        module = parse(text, "<stdin>")
    else:
        path = Path(args.input)
        if not path.is_file():
            raise UsageError(f"input file '{path}' does not exist")
        text = path.read_text(errors="replace")
        module = parse_file(path)
    pipeline = args.passes if args.passes is not None else (read_reproducer_pipeline(text) or "")
    after = {n.strip() for item in args.print_ir_after for n in item.split(",") if n.strip()}
    pm = PassManager(
        pipeline,
        verify_each=not args.no_verify,
        print_ir_after_all=args.print_ir_after_all,
        print_ir_after=after,
        print_ir_after_change=args.print_ir_after_change,
        time_passes=args.time_passes,
        verifier=verify_module,
        reproducer_dir=args.reproducer_dir,
    )
    out = print_module(pm.run(module))
    if args.output:
        write_atomic(args.output, out)
    else:
        sys.stdout.write(out)
    return 0


def is_wir_file(p: Path) -> bool:
    """A WIR module (what `opt -o` writes): its first line that is not blank or a comment opens a module."""
    with open(p, "rb") as f:
        head = f.read(1 << 16).decode("utf-8", errors="replace")
    lines = (ln.strip() for ln in head.split("\n"))
    return next((ln for ln in lines if ln and not ln.startswith("//")), "").startswith("module @")


# -- check ------------------------------------------------------------------------------------


def add_check(sub) -> None:
    p = sub.add_parser("check", help="validate only: capture a model and report op coverage")
    model_args(p)
    p.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from wafercc.frontend.coverage import coverage_report  # torch

    model, inputs = load_model(args)
    report = coverage_report(model, inputs, capture=args.capture, source=args.model)
    print(report.text())
    return 0 if report.ok else 2
