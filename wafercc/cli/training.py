"""The training flags shared by ``compile --train`` and ``verify --train``, and the optimizer they describe."""

from __future__ import annotations

from runtime.optim import AdamW, SGD
from wafercc.errors import UsageError

OPTIMIZERS = ("sgd", "adamw")
_SGD_ONLY = ("momentum", "nesterov", "dampening")
_ADAMW_ONLY = ("betas", "eps")


def train_args(p) -> None:
    g = p.add_argument_group("training (with --train)")
    g.add_argument(
        "--train",
        action="store_true",
        help="compile for training: the model's forward returns a scalar loss; plan forward, backward and "
        "optimizer (docs/training.md)",
    )
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="the optimizer MemoryX runs (default sgd)")
    g.add_argument("--lr", type=float, default=1e-3, metavar="LR", help="learning rate (default 1e-3)")
    g.add_argument("--momentum", type=float, metavar="M", help="SGD momentum (default 0)")
    g.add_argument("--dampening", type=float, metavar="D", help="SGD dampening (default 0)")
    g.add_argument("--nesterov", action="store_true", help="SGD with Nesterov momentum")
    g.add_argument(
        "--weight-decay", type=float, metavar="WD", help="weight decay (torch's defaults: SGD 0, AdamW 0.01)"
    )
    g.add_argument("--betas", metavar="B1,B2", help="AdamW betas (default 0.9,0.999)")
    g.add_argument("--eps", type=float, metavar="EPS", help="AdamW epsilon (default 1e-8)")
    g.add_argument(
        "--grad-accum", type=int, default=1, metavar="K", help="accumulate gradients over K micro-batches per step"
    )
    g.add_argument("--clip-grad-norm", type=float, metavar="X", help="clip the gradients to global 2-norm X")


def check_train_args(args) -> None:
    """Training flags without --train, or another optimizer's flags, are usage errors (exit 2)."""
    given = [
        name
        for name in ("momentum", "dampening", "weight_decay", "betas", "eps", "clip_grad_norm")
        if getattr(args, name) is not None
    ]
    given += [n for n in ("nesterov",) if getattr(args, n)]
    given += [n for n, d in (("grad_accum", 1), ("lr", 1e-3), ("optimizer", "sgd")) if getattr(args, n) != d]
    if not args.train:
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} is a training option: add --train")
        return
    other = _ADAMW_ONLY if args.optimizer == "sgd" else _SGD_ONLY
    wrong = [n for n in other if n in given]
    if wrong:
        raise UsageError(f"--{wrong[0]} is not an option of {args.optimizer} (--optimizer)")
    if args.grad_accum < 1:
        raise UsageError(f"--grad-accum must be at least 1, got {args.grad_accum}")
    if args.clip_grad_norm is not None and not args.clip_grad_norm > 0:
        raise UsageError(f"--clip-grad-norm must be a number > 0, got {args.clip_grad_norm}")


def optimizer_from_args(args):
    """The runtime.optim optimizer the flags describe (its own checks raise OptimizerConfigError, exit 2)."""
    kw = {"lr": args.lr}
    if args.weight_decay is not None:
        kw["weight_decay"] = args.weight_decay
    if args.optimizer == "sgd":
        for name in ("momentum", "dampening"):
            if getattr(args, name) is not None:
                kw[name] = getattr(args, name)
        return SGD(nesterov=args.nesterov, **kw)
    if args.betas is not None:
        kw["betas"] = _betas(args.betas)
    if args.eps is not None:
        kw["eps"] = args.eps
    return AdamW(**kw)


def _betas(text: str) -> tuple[float, float]:
    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--betas takes two numbers, B1,B2 (like 0.9,0.999), got {text!r}") from None
    return b1, b2


def describe_optimizer(opt) -> str:
    if isinstance(opt, SGD):
        extra = [f"momentum {opt.momentum:g}"] if opt.momentum else []
        extra += ["nesterov"] if opt.nesterov else []
    else:
        extra = [f"betas {opt.betas[0]:g},{opt.betas[1]:g}", f"eps {opt.eps:g}"]
    extra += [f"weight decay {opt.weight_decay:g}"] if opt.weight_decay else []
    return f"{opt.kind} lr {opt.lr:g}" + "".join(", " + e for e in extra)


def training_summary(out_dir) -> str:
    """``wafercc report``'s training section (the phases) of a compiled directory; "" for an inference plan."""
    import json
    from pathlib import Path

    from runtime.artifacts import PLAN_FILE
    from wafercc.mapping.training import phase_summary

    summary = phase_summary(json.loads((Path(out_dir) / PLAN_FILE).read_text()))
    return "\n" + summary if summary else ""
