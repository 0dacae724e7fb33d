"""The ``wafercc`` command line. Thin: parse arguments, call the library, print.

Every user mistake (bad model file, unsupported op, malformed WIR, bad options) is a WaferError: the
message goes to stderr and the exit code is 2. Nothing is written when a command fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from wafercc.ir import WaferError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args) or 0
    except WaferError as e:
        print(str(e) if str(e).startswith("error") or "error:" in str(e).split("\n")[0] else f"error: {e}",
              file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: exit 2 like every user error
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="wafercc", description="Compile PyTorch models for wafer-scale dataflow hardware.")
    sub = p.add_subparsers(parser_class=_Parser, metavar="COMMAND")
    from wafercc import commands, commands_golden, commands_plan, commands_runtime

    commands.add_compile(sub)
    commands.add_opt(sub)
    commands.add_check(sub)
    commands_runtime.add_commands(sub)  # run, verify
    commands_plan.add_commands(sub)  # report, viz
    commands_golden.add_commands(sub)  # golden record, golden check
    return p


class Reporter:
    """Progress on stderr: a spinner on a terminal; plain lines elsewhere, only for slow stages."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.start = time.perf_counter()
        self.last: tuple[str, float] | None = None
        self.status = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console

            self.status = Console(stderr=True).status("wafercc")
            self.status.start()

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        if self.status is not None:
            self.status.update(message + " ...")
        elif self.last is not None and now - self.last[1] > 1.0:
            print(f"wafercc: {self.last[0]} took {now - self.last[1]:.1f} s", file=sys.stderr)
        self.last = (message, now)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


def path_arg(s: str) -> Path:
    return Path(s)


if __name__ == "__main__":
    sys.exit(main())
