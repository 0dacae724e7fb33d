"""What several commands share: the model-file arguments and loading, the runtime flags, small formatters."""

from __future__ import annotations

from runtime.interpreter import REDUCTION_ORDERS
from runtime.plan import PRECISIONS


def model_args(p) -> None:
    p.add_argument("model", help="a model file: defines `model` (or get_model()) and `example_inputs`")
    p.add_argument("--entry", metavar="MODEL[:INPUTS]", help="names of the model and example-input attributes")
    p.add_argument(
        "--capture",
        choices=("export", "fx"),
        default="export",
        help="torch.export + core-ATen decompositions (default), or torch.fx symbolic tracing",
    )


def load_model(args):
    """(model, example_inputs) of the command's model file (its training form with --train, if it has one)."""
    from wafercc.frontend import load_model_file  # torch

    return load_model_file(args.model, args.entry, train=getattr(args, "train", False))


def runtime_flags(p) -> None:
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="storage precision the runtime emulates: 16-bit values, fp32 accumulation (default fp32)",
    )
    p.add_argument(
        "--no-plan",
        action="store_true",
        help="run the graph-level computation instead of following the plan's tiles and routes",
    )
    p.add_argument(
        "--reduction-order",
        choices=REDUCTION_ORDERS,
        default="grouped",
        help="grouped (default): each layer's routed partial sums in one BLAS product; ring: added one "
        "column at a time in the order the reduce routes run (exact order, slower)",
    )


def seconds_text(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.3f} s"
