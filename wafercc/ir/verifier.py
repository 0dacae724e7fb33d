"""The generic verifier: rules that hold for every WIR module whatever its ops mean.

- every value is defined once (SSA), and defined before any use (dominance: a function body is one block);
- every symbol an op references names a module weight, with the type the op states;
- a function returns values of the types it declares;
- value names are unique within a function.

Op-specific rules (result types from operands and attributes, attribute kinds) come from a hook, so
this module knows no op kinds: ``wafercc.ops.verify`` passes the op table's checker in.
"""

from __future__ import annotations

from typing import Callable

from .core import Func, Module, Op, SymbolRef
from .errors import VerifyError

OpChecker = Callable[[Op, Module], None]


def fail(op: Op | None, rule: str, message: str) -> VerifyError:
    where = op.where() if op is not None else "module"
    return VerifyError(f"{where}: {message} [{rule}]", op=op, rule=rule)


def verify(m: Module, check_op: OpChecker | None = None) -> None:
    """Raise VerifyError on the first broken rule; it points at the op's line in ``m.source`` when the
    module was parsed from text."""
    try:
        _verify_module(m, check_op)
    except VerifyError as e:
        raise e.locate(m.source) from None


def _verify_module(m: Module, check_op: OpChecker | None) -> None:
    seen_funcs = set()
    for f in m.funcs:
        if f.name in seen_funcs:
            raise VerifyError(f"function @{f.name} is defined twice [unique-symbol]", rule="unique-symbol")
        seen_funcs.add(f.name)
        _verify_func(m, f, check_op)


def _verify_func(m: Module, f: Func, check_op: OpChecker | None) -> None:
    defined: set[int] = set()
    names: dict[str, object] = {}
    for a in f.args:
        if a.name in names:
            raise VerifyError(
                f"@{f.name}: argument %{a.name} is defined twice [ssa-single-definition]",
                rule="ssa-single-definition",
            )
        names[a.name] = a
        defined.add(id(a))
    for op in f.ops:
        for v in op.operands:
            if id(v) not in defined:
                raise fail(op, "ssa-dominance", f"operand %{v.name} is used before it is defined")
        for r in op.results:
            if r.name in names:
                raise fail(op, "ssa-single-definition", f"%{r.name} is defined more than once")
            names[r.name] = r
            defined.add(id(r))
        _check_symbols(m, op)
        if check_op is not None:
            check_op(op, m)
    for v in f.returns:
        if id(v) not in defined:
            raise VerifyError(
                f"@{f.name}: returned value %{v.name} is not defined [ssa-dominance]", rule="ssa-dominance"
            )
    declared = f.declared_result_types()
    actual = [v.type for v in f.returns]
    if declared != actual:
        raise VerifyError(
            f"@{f.name}: declared result types ({', '.join(map(str, declared))}) but returns "
            f"({', '.join(map(str, actual))}) [return-types]",
            rule="return-types",
        )


def _check_symbols(m: Module, op: Op) -> None:
    for key, a in op.attrs.items():
        if isinstance(a, SymbolRef):
            w = m.weights.get(a.name)
            if w is None:
                if key != "symbol" and a.name in m.layers:
                    continue  # a plan attribute naming a layer declaration
                what = "layer" if key.startswith("plan.") else "weight"
                raise fail(op, "symbol-defined", f"attribute '{key}' references unknown {what} {a}")
            if key == "symbol" and op.results and op.results[0].type != w.type:
                raise fail(
                    op,
                    "symbol-type",
                    f"result type {op.results[0].type} does not match weight {a} : {w.type}",
                )
