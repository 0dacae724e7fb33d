"""Goldens: a model's outputs recorded from eager PyTorch, checked against every later compiler build.

    from wafercc import golden
    r = golden.record_file("examples/mlp.py", Path("goldens"), golden.Options(target="wse2"))
    r = golden.check_file("examples/mlp.py", Path("goldens"))        # GoldenResult: .status, .outputs, .bisect
    print(golden.format_result(r))

A golden is recorded from eager PyTorch, never from wafercc alone: recording refuses a model whose runtime
outputs do not match eager. A check never writes; re-recording is explicit (``record`` again, or
``check --update``). docs/golden.md describes the files, the statuses and the exit codes.

Importing this package does not import torch; measuring a model does.
"""

from wafercc.golden.files import FORMAT, GOLDEN_FILES, golden_names, sanitize
from wafercc.golden.models import check_file, check_golden, model_files, record_file, root_of, update_file
from wafercc.golden.record import record
from wafercc.golden.report import counts, format_result, print_summary
from wafercc.golden.result import FAILURES, GoldenResult, OutputResult, Status, exit_code
from wafercc.golden.run import Options, Subject
from wafercc.golden.train import TrainOptions, check, record_training
from wafercc.ir import WaferError

__all__ = [
    "FAILURES",
    "FORMAT",
    "GOLDEN_FILES",
    "GoldenResult",
    "Options",
    "OutputResult",
    "Status",
    "Subject",
    "TrainOptions",
    "WaferError",
    "check",
    "check_file",
    "check_golden",
    "counts",
    "exit_code",
    "format_result",
    "golden_names",
    "model_files",
    "print_summary",
    "record",
    "record_file",
    "record_training",
    "root_of",
    "sanitize",
    "update_file",
]
