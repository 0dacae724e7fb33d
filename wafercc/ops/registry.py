"""The op table: every WIR op kind is declared once, here or in a family file beside it.

An ``OpDef`` says what an op is: its operands (trailing ``?`` = optional, ``*`` = variadic), its
attributes with kinds and defaults, its result-type rule, its FLOP count, and one line of semantics
for the docs. The verifier, the docs generator, the frontend and the completeness tests all read this
table; nothing else decides what an op is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from wafercc.ir import DType, Module, Op, SymbolRef, TensorType, VerifyError
from wafercc.ir import verify as _verify_generic
from wafercc.ir.verifier import fail

InferFn = Callable[[list[TensorType], dict], list[TensorType]]
FlopFn = Callable[[Op], int]

_NO_DEFAULT = object()


class ShapeError(Exception):
    """Raised by a result-type rule when operands and attributes do not fit together."""


@dataclass(frozen=True)
class AttrSpec:
    kind: str  # int, float, bool, str, dtype, ints, scalar, symbol, any; "?"-suffix: may be none
    default: object = _NO_DEFAULT

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT


@dataclass(frozen=True)
class OpDef:
    name: str
    operands: tuple[str, ...]
    attrs: dict[str, AttrSpec]
    infer: InferFn
    flops: FlopFn
    family: str
    doc: str
    num_results: int | None = 1  # None: decided by the rule (split_with_sizes)
    torch: tuple[str, ...] = field(default=())  # ATen overloads that map onto this op (for docs)
    effect: bool = False  # running it does something besides its results (dce keeps it though unused)

    @property
    def min_operands(self) -> int:
        return sum(1 for o in self.operands if not o.endswith(("?", "*")))

    @property
    def max_operands(self) -> int | None:
        return None if any(o.endswith("*") for o in self.operands) else len(self.operands)

    def attr(self, op: Op, name: str):
        """The attribute's value on ``op``, or its declared default."""
        if name in op.attrs:
            return op.attrs[name]
        return self.attrs[name].default


OPS: dict[str, OpDef] = {}

# Attributes any op may carry whatever its kind, because a pass outside the op's own semantics put them
# there (MLIR's discardable attributes): ``plan.layer = @L3_fc1`` from the mapping passes.
DISCARDABLE = "plan."


def defop(
    name: str,
    operands: str,
    infer: InferFn,
    *,
    attrs: dict[str, AttrSpec | str] | None = None,
    flops: FlopFn | None = None,
    family: str,
    doc: str,
    num_results: int | None = 1,
    torch: tuple[str, ...] = (),
    effect: bool = False,
) -> OpDef:
    """Declare an op. ``operands`` is a space-separated list such as ``"input weight bias?"``."""
    if name in OPS:
        raise AssertionError(f"op '{name}' declared twice")
    specs = {k: (v if isinstance(v, AttrSpec) else AttrSpec(v)) for k, v in (attrs or {}).items()}
    d = OpDef(
        name=name,
        operands=tuple(operands.split()),
        attrs=specs,
        infer=infer,
        flops=flops or zero_flops,
        family=family,
        doc=doc,
        num_results=num_results,
        torch=torch,
        effect=effect,
    )
    OPS[name] = d
    return d


def zero_flops(op: Op) -> int:
    return 0


def out_numel(op: Op) -> int:
    return op.results[0].type.numel


def op_bytes(op: Op) -> int:
    """Bytes an op reads and writes, counting each distinct operand once."""
    seen = {id(v): v.type.nbytes for v in op.operands}
    return sum(seen.values()) + sum(r.type.nbytes for r in op.results)


# -- verification -----------------------------------------------------------------------------

_KIND_CHECK: dict[str, Callable[[object], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "scalar": lambda v: isinstance(v, (int, float, bool)),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "dtype": lambda v: isinstance(v, DType),
    "ints": lambda v: isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v),
    "symbol": lambda v: isinstance(v, SymbolRef),
    "any": lambda v: True,
}


def check_op(op: Op, module: Module | None = None) -> None:
    """Op-specific rules: known kind, operand count, attribute kinds, result types."""
    d = OPS.get(op.name)
    if d is None:
        raise fail(op, "known-op", f"unknown op '{op.name}'")
    _check_operand_count(op, d)
    _check_attrs(op, d)
    _check_result_types(op, d, _resolved_attrs(op, d, module))


def _check_operand_count(op: Op, d: OpDef) -> None:
    n = len(op.operands)
    if n >= d.min_operands and (d.max_operands is None or n <= d.max_operands):
        return
    if d.max_operands == d.min_operands:
        want = f"{d.min_operands}"
    elif d.max_operands is not None:
        want = f"{d.min_operands} to {d.max_operands}"
    else:
        want = f"at least {d.min_operands}"
    raise fail(op, "operand-count", f"takes {want} operand(s) ({' '.join(d.operands)}), got {n}")


def _check_attrs(op: Op, d: OpDef) -> None:
    for key, spec in d.attrs.items():
        if key not in op.attrs:
            if spec.required:
                raise fail(op, "attr-required", f"missing required attribute '{key}' ({spec.kind})")
            continue
        v = op.attrs[key]
        if v is None and spec.kind.endswith("?"):
            continue
        if not _KIND_CHECK[spec.kind.rstrip("?")](v):
            raise fail(op, "attr-kind", f"attribute '{key}' must be {spec.kind}, got {v!r}")
    for key in op.attrs:
        if key not in d.attrs and not key.startswith(DISCARDABLE):
            raise fail(op, "attr-known", f"unknown attribute '{key}' (known: {', '.join(d.attrs) or 'none'})")


def _resolved_attrs(op: Op, d: OpDef, module: Module | None) -> dict:
    """The op's attributes with defaults filled in and weight symbols resolved to their types."""
    attrs = {k: d.attr(op, k) for k in d.attrs}
    for k, spec in d.attrs.items():
        if spec.kind == "symbol":
            if module is None or attrs[k].name not in module.weights:
                raise fail(op, "symbol-defined", f"attribute '{k}' references unknown weight {attrs[k]}")
            attrs[k] = module.weights[attrs[k].name]
    return attrs


def _check_result_types(op: Op, d: OpDef, attrs: dict) -> None:
    try:
        expected = d.infer([v.type for v in op.operands], attrs)
    except ShapeError as e:
        raise fail(op, "operand-types", str(e)) from None
    except (ArithmeticError, IndexError, ValueError, TypeError) as e:
        # A rule that crashes on strange operands must still give the user a verifier error, not a traceback.
        raise fail(
            op, "operand-types", f"operands and attributes do not fit the op ({type(e).__name__}: {e})"
        ) from None
    actual = [r.type for r in op.results]
    if len(expected) != len(actual):
        raise fail(op, "result-count", f"has {len(actual)} result(s), the op defines {len(expected)}")
    for i, (want, got) in enumerate(zip(expected, actual)):
        if want != got:
            which = f"result #{i}" if len(actual) > 1 else "result"
            raise fail(op, "result-type", f"{which} has type {got}, but the operands give {want}")


def verify(m: Module) -> Module:
    """Full verification: the generic IR rules plus every op's own rules. Returns ``m``."""
    _verify_generic(m, check_op)
    return m


def infer_types(name: str, operand_types: list[TensorType], attrs: dict) -> list[TensorType]:
    """Result types of op ``name``, with defaults filled in; raises ShapeError or KeyError."""
    d = OPS[name]
    full = {k: attrs.get(k, spec.default) for k, spec in d.attrs.items()}
    for k, spec in d.attrs.items():
        if spec.required and k not in attrs:
            raise ShapeError(f"'{name}' needs attribute '{k}'")
    return d.infer(operand_types, full)


def flops(op: Op) -> int:
    return OPS[op.name].flops(op)


__all__ = [
    "AttrSpec",
    "OPS",
    "OpDef",
    "ShapeError",
    "VerifyError",
    "check_op",
    "defop",
    "flops",
    "infer_types",
    "op_bytes",
    "out_numel",
    "verify",
    "zero_flops",
]
