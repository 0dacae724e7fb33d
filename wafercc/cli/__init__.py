"""The ``wafercc`` command line. Thin: parse arguments, call the library, print.

One module per command group, each with an ``add_commands(sub)`` that declares its arguments and one
``cmd_*`` action per command:

    compile.py   compile, opt, check
    run.py       run, verify
    report.py    report, viz
    golden.py    golden record, golden check
    train.py     train

Every user mistake (bad model file, unsupported op, malformed WIR, bad options) is a WaferError; messages
carry no "error: " prefix — ``main`` adds it, prints to stderr, and exits with the error's ``exit_code``
(2). Nothing is written when a command fails.
"""

from __future__ import annotations

import argparse
import sys

from wafercc.cli import compile, golden, report, run, train
from wafercc.ir import WaferError

COMMAND_GROUPS = (compile, run, report, golden, train)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args) or 0
    except WaferError as e:
        print(e.render(), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:  # the shapes were checked before allocation; this is what no check foresaw
        print(
            "error: wafercc ran out of memory: the model's tensors do not fit in this machine's memory; try "
            "smaller shapes",
            file=sys.stderr,
        )
        return 2
    except SystemExit as e:  # not ours (argparse exits before func): the user's model code exited mid-command
        code = "" if e.code is None else repr(e.code)
        print(
            f"error: the model's code called sys.exit({code}) while wafercc ran it: nothing was done (a model "
            "must return, not exit)",
            file=sys.stderr,
        )
        return 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: exit 2 like every user error
        self.print_usage(sys.stderr)
        print(f"{message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="wafercc", description="Compile PyTorch models for wafer-scale dataflow hardware.")
    sub = p.add_subparsers(parser_class=_Parser, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return p
