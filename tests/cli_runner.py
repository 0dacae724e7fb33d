"""``run_cli(*args)``: the ``wafercc`` command run in this process, as a subprocess would report it.

A subprocess pays a fresh interpreter and the torch import (2-4 s) for every call; tests that only look at
exit codes and output run the same ``wafercc.cli.main`` here, from the repository root, with warnings off
(as ``PYTHONWARNINGS=ignore`` does for the subprocess). Tests of process-level behaviour (kills, signals,
import isolation, the console script) keep their subprocesses.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import warnings
from pathlib import Path

from wafercc.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd: str | os.PathLike = ROOT) -> subprocess.CompletedProcess:
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                code = main(argv)
            except SystemExit as e:  # argparse's usage errors
                code = e.code if isinstance(e.code, int) else 2
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(["wafercc", *argv], code, out.getvalue(), err.getvalue())
