"""The WIR contract of a training module (docs/wir.md, "Training modules"), shared by the frontend that writes
it, the mapping that plans it and the runtime that runs it.

A training module's ``@forward`` returns (loss, gradients..., buffer updates...). Two function attributes say
what each result is: ``train.roles`` (one of ``ROLES`` per result) and ``train.targets`` (``none`` for the
loss, else the weight symbol the gradient or the buffer's new value belongs to)::

    func @forward(%x: tensor<6x12xf32>, %y: tensor<6xi64>) -> (tensor<f32>, tensor<32x12xf32>, ...)
        attributes {train.roles = ["loss", "grad", ...], train.targets = [none, @fc1.weight, ...]}
"""

from __future__ import annotations

from .core import Func, Module, SymbolRef
from .errors import VerifyError

ROLES_ATTR = "train.roles"
TARGETS_ATTR = "train.targets"
ROLES = ("loss", "grad", "update")


def is_training(module: Module) -> bool:
    """Whether the module is a training module (its @forward names its results' roles)."""
    return any(f.name == "forward" and ROLES_ATTR in f.attrs for f in module.funcs)


def result_roles(func: Func) -> list[tuple[str, str | None]]:
    """(role, weight symbol or None) for each result of a training function, checked: one loss first, a
    gradient per parameter symbol at most once, every target a declared weight."""
    roles, targets = func.attrs.get(ROLES_ATTR), func.attrs.get(TARGETS_ATTR)
    where = f"@{func.name}"
    if not isinstance(roles, list) or not isinstance(targets, list) or len(roles) != len(targets):
        raise VerifyError(
            f"{where}: {ROLES_ATTR} and {TARGETS_ATTR} must be lists of one entry per result", rule="train-roles"
        )
    if len(roles) != len(func.declared_result_types()):
        raise VerifyError(f"{where}: {len(roles)} training roles for {len(func.returns)} results", rule="train-roles")
    out = []
    for i, (r, t) in enumerate(zip(roles, targets)):
        if r not in ROLES or (i == 0) != (r == "loss"):
            raise VerifyError(
                f"{where}: result {i} has role {r!r}; the first result is the loss, then grad/update",
                rule="train-roles",
            )
        if (t is None) != (r == "loss") or (t is not None and not isinstance(t, SymbolRef)):
            raise VerifyError(f"{where}: result {i} ({r}) has target {t!r}", rule="train-roles")
        out.append((r, t.name if t is not None else None))
    return out


def check_training(module: Module) -> None:
    """A training module's roles are well formed and every target is a declared weight (VerifyError)."""
    func = module.func()
    for i, (role, target) in enumerate(result_roles(func)):
        if target is not None and target not in module.weights:
            raise VerifyError(
                f"@forward: result {i} ({role}) is for @{target}, not a declared weight", rule="train-roles"
            )
