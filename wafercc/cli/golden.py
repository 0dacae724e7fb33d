"""``wafercc golden record`` and ``wafercc golden check``: goldens of model files, recorded from eager PyTorch.

Exit codes (docs/golden.md):
0 all passed (a changed plan with unchanged numbers passes), 1 any drift, eager change or failure to compile or run,
2 a usage error (bad path or --dir, a meta-device model named explicitly, a damaged golden, a missing golden with
--strict), 3 some models have no golden and nothing else failed.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path

from runtime.artifacts import KIND_GOLDEN, check_output_dir, forced
from wafercc import golden
from wafercc.cli.training import check_train_args, optimizer_from_args, train_args
from wafercc.errors import UsageError
from wafercc.target import parse_target

DEFAULT_DIR = "goldens"


def add_commands(sub) -> None:
    p = sub.add_parser("golden", help="record goldens from eager PyTorch and check the compiler against them")
    p.set_defaults(func=lambda _args: _usage(p))
    actions = p.add_subparsers(parser_class=type(p), metavar="ACTION")
    add_record(actions)
    add_check(actions)


def _usage(p) -> int:
    p.print_help(sys.stderr)
    return 2


def _common(p, *, record: bool) -> None:
    p.add_argument(
        "--dir",
        default=DEFAULT_DIR,
        metavar="DIR",
        help="the goldens' directory, one subdirectory per model (default: goldens)",
    )
    default = "wse2" if record else None
    p.add_argument(
        "--target",
        default=default,
        metavar="TARGET",
        help="as for compile (default: wse2)" if record else "override the recorded target",
    )
    p.add_argument(
        "--mode",
        choices=("stream", "pipeline"),
        default="stream" if record else None,
        help="as for compile" if record else "override the recorded mode",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32" if record else None,
        help="the runtime's storage precision (default fp32; 16-bit uses that dtype's tolerance)"
        if record
        else "override the recorded precision",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")


def add_record(actions) -> None:
    p = actions.add_parser("record", help="record (or re-record) the goldens of model files")
    p.add_argument("paths", nargs="+", metavar="MODEL", help="model files, or directories of them")
    _common(p, record=True)
    p.add_argument("--entry", metavar="MODEL[:INPUTS]", help="names of the model and example-input attributes")
    p.add_argument("--capture", choices=("export", "fx"), default="export", help="as for compile")
    p.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="seeded random inputs of the example inputs' shapes and dtypes (default: the example inputs)",
    )
    p.add_argument("--rtol", type=float, metavar="R", help="relative tolerance of float outputs (default: by dtype)")
    p.add_argument("--atol", type=float, metavar="A", help="absolute tolerance, not scaled (default: by dtype)")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace whatever is at --dir/<model name> (default: only an earlier golden, or an empty folder)",
    )
    train_args(p)
    p.add_argument(
        "--steps", type=int, metavar="N", help="with --train: the training steps the golden records (default 3)"
    )
    p.set_defaults(func=cmd_record)


def add_check(actions) -> None:
    p = actions.add_parser(
        "check",
        help="recompile and rerun models and compare with their goldens",
        epilog="exit codes: 0 all passed (a plan change with unchanged numbers passes); 1 any drift, "
        "eager change, or failure to compile or run; 2 usage error (bad path or --dir, a "
        "damaged golden, a missing golden with --strict); 3 some models have no golden",
    )
    p.add_argument(
        "paths", nargs="*", metavar="MODEL", help="model files, or directories of them (default: every golden in --dir)"
    )
    _common(p, record=False)
    p.add_argument(
        "--update", action="store_true", help="re-record every golden that does not pass (and record missing ones)"
    )
    p.add_argument("--strict", action="store_true", help="a model without a golden is a usage error (exit 2)")
    p.add_argument("--no-bisect", action="store_true", help="do not bisect a drift to the first op that moved")
    p.set_defaults(func=cmd_check)


def cmd_record(args) -> int:
    _check_numbers(args)
    train = _train_options(args)
    files = _files(args)
    if args.entry and len(files) != 1:
        raise UsageError("--entry names the attributes of one model file; give exactly one")
    options = golden.Options(
        target=args.target,
        mode=args.mode,
        precision=args.precision,
        capture=args.capture,
        seed=args.seed,
        rtol=args.rtol,
        atol=args.atol,
    )
    directory = Path(args.dir)
    with ExitStack() as stack:
        for path, _ in files:  # before any model runs: a golden replaces only a golden
            dest = directory / path.stem
            check_output_dir(dest, KIND_GOLDEN, golden.GOLDEN_FILES, force=args.force)
            if args.force:
                stack.enter_context(forced(dest))
        results = _each(
            files,
            "recording",
            args.quiet,
            lambda path, explicit: golden.record_file(
                path, directory, options, entry=args.entry, explicit=explicit, train=train
            ),
        )
    return _finish(results, "golden record")


def cmd_check(args) -> int:
    directory = Path(args.dir)
    if not directory.is_dir():
        raise UsageError(f"--dir '{directory}' is not a directory of goldens")
    overrides = {"target": args.target, "mode": args.mode, "precision": args.precision}
    if args.target:
        parse_target(args.target)
    run_bisect = not args.no_bisect

    def one(path: Path, explicit: bool):
        if path.is_dir():  # a golden named by its directory: no model files were given
            r = golden.check_golden(path, run_bisect=run_bisect, **overrides)
            path = golden.root_of(directory) / r.model
        else:
            r = golden.check_file(path, directory, explicit=explicit, run_bisect=run_bisect, **overrides)
        if args.update and r.status not in (golden.Status.PASS, golden.Status.SKIPPED):
            r = golden.update_file(path, directory, r, **overrides)
        return r

    if args.paths:
        files = _files(args)
    else:
        files = [(directory / n, True) for n in golden.golden_names(directory)]
        if not files:
            raise UsageError(f"--dir '{directory}' holds no goldens (record some with `wafercc golden record`)")
    results = _each(files, "checking", args.quiet, one)
    return _finish(results, "golden check", strict=args.strict)


def _train_options(args):
    """``record --train``: the training golden's settings (None without --train); inference-only flags refused."""
    check_train_args(args)
    if not args.train:
        if args.steps is not None:
            raise UsageError("--steps is a training option: add --train")
        return None
    given = [f for f in ("seed", "rtol", "atol") if getattr(args, f) is not None]
    given += [f for f, d in (("mode", "stream"), ("precision", "fp32"), ("capture", "export")) if getattr(args, f) != d]
    if given:
        raise UsageError(
            f"--{given[0]} does not apply to a training golden (it trains on the example inputs, in stream mode, "
            "fp32, under the training tolerance policy)"
        )
    steps = 3 if args.steps is None else args.steps
    if steps < 1:
        raise UsageError(f"--steps must be at least 1, got {steps}")
    return golden.TrainOptions(optimizer_from_args(args), steps, args.grad_accum, args.clip_grad_norm, args.target)


def _check_numbers(args) -> None:
    for flag in ("rtol", "atol"):
        v = getattr(args, flag)
        if v is not None and not v >= 0:
            raise UsageError(f"--{flag} must be a number >= 0, got {v}")

    parse_target(args.target)  # a bad target is a usage error before any model is loaded


def _files(args) -> list[tuple[Path, bool]]:
    files = golden.model_files(args.paths)
    if not files:
        raise UsageError(f"no model files (*.py) in {', '.join(args.paths)}")
    return files


def _each(files, verb: str, quiet: bool, action) -> list:
    """Run ``action`` on every file with a progress line each on stderr."""
    results = []
    for i, (path, explicit) in enumerate(files, 1):
        if not quiet:
            print(f"[{i}/{len(files)}] {verb} {path} ...", end="", file=sys.stderr, flush=True)
        start = time.perf_counter()
        r = action(path, explicit)
        if not quiet:
            print(f" {r.status.value} ({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)
        results.append(r)
    return results


def _finish(results: list, what: str, strict: bool = False) -> int:
    """Details of every golden that did not simply pass, then the summary table and the exit code."""
    for r in results:
        if r.status not in (golden.Status.PASS, golden.Status.RECORDED):
            print(golden.format_result(r) + "\n")
    golden.print_summary(results)
    code = golden.exit_code(results, strict=strict)
    missing = "; --strict: a model without a golden is an error" if strict and code == 2 else ""
    print(f"{what}: {golden.counts(results)} (exit {code}{missing})")
    return code
