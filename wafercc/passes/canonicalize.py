"""canonicalize: local rewrites that remove no-op data movement and trivial arithmetic.

    %a = view %x {shape = [2, 3]} : tensor<2x3xf32>          (x : tensor<6xf32>)
    %b = view %a {shape = [3, 2]} : tensor<3x2xf32>
    %c = permute %b {dims = [1, 0]} : tensor<2x3xf32>
    %d = permute %c {dims = [1, 0]} : tensor<3x2xf32>
    %e = mul %d, %one : tensor<3x2xf32>                       (one : a constant 1)
    return %e
  becomes
    %b = view %x {shape = [3, 2]} : tensor<3x2xf32>
    return %b

Requires: a verified module. Guarantees: a verified module that computes bit-for-bit the same results
(a rewrite is only made where its law is exact: ``x + 0.0`` stays, since it turns -0.0 into +0.0), the same
function signatures and returned types, and no op left dead by a rewrite (ops that were dead in the input
are ``dce``'s business). The patterns run to a fixpoint in one worklist walk (``rewrite.apply_patterns``).

The op table has no dropout-like op (nothing that is the identity at inference), so there is no pattern
for one.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from wafercc.ir import DType, Module, Op
from wafercc.ops import OPS

from .rewrite import Pattern, Rewriter, apply_patterns, producer

# Ops that only reinterpret the row-major element order: any chain of them is one `view`.
RESHAPES = ("view", "squeeze", "unsqueeze")


def _replace(op: Op, rw: Rewriter, i: int = 0) -> bool:
    """Replace op by its i-th operand, if that keeps the type (a rewrite never changes a type)."""
    if op.operands[i].type != op.result.type:
        return False
    rw.replace_op(op, [op.operands[i]])
    return True


# -- movement ---------------------------------------------------------------------------------
def same_type_identity(op: Op, rw: Rewriter) -> bool:
    # Only listed for ops where an unchanged type means no element moved or changed (a same-shape
    # slice is x[0:n:1]); never for permute, flip or pad, which can move elements within one shape.
    return _replace(op, rw)


def reshape_chain(op: Op, rw: Rewriter) -> bool:
    inner = producer(op.operands[0], RESHAPES)
    if inner is None:
        return False
    x = inner.operands[0]
    if x.type == op.result.type:
        rw.replace_op(op, [x])
    elif op.name == "view":
        rw.set_operand(op, 0, x)
    else:
        # The new view takes the name of the op it replaces: that op is erased, and readers keep their bearings.
        shape = list(op.result.type.shape)
        new = Op("view", [x], [op.result.type], {"shape": shape}, op.loc, [op.result.name])
        rw.insert_before(op, new)
        rw.replace_op(op, new.results)
    return True


def permute_identity(op: Op, rw: Rewriter) -> bool:
    if op.attrs["dims"] != list(range(len(op.attrs["dims"]))):
        return False
    rw.replace_op(op, [op.operands[0]])
    return True


def permute_of_permute(op: Op, rw: Rewriter) -> bool:
    inner = producer(op.operands[0], "permute")
    if inner is None:
        return False
    p, q = inner.attrs["dims"], op.attrs["dims"]
    op.attrs = {**op.attrs, "dims": [p[i] for i in q]}
    rw.set_operand(op, 0, inner.operands[0])
    return True


def expand_of_expand(op: Op, rw: Rewriter) -> bool:
    inner = producer(op.operands[0], "expand")
    if inner is None:
        return False
    rw.set_operand(op, 0, inner.operands[0])
    return True


def cat_single(op: Op, rw: Rewriter) -> bool:
    return len(op.operands) == 1 and _replace(op, rw)


def flip_size_one(op: Op, rw: Rewriter) -> bool:
    shape = op.operands[0].type.shape
    return all(shape[d] <= 1 for d in op.attrs["dims"]) and _replace(op, rw)


def pad_zero(op: Op, rw: Rewriter) -> bool:
    # Only all-zero padding: [1, -1] keeps the shape but shifts the elements.
    return not any(op.attrs["pad"]) and _replace(op, rw)


def clamp_unbounded(op: Op, rw: Rewriter) -> bool:
    return op.attrs.get("min") is None and op.attrs.get("max") is None and _replace(op, rw)


# -- casts ------------------------------------------------------------------------------------
_D = DType
# dtype -> the dtypes that hold each of its values exactly (bf16 keeps 8 significant bits: ints up to 256;
# f16 keeps 11: up to 2048; f32 keeps 24; f64 keeps 53).
EXACT_INTO: dict[DType, frozenset[DType]] = {
    _D.bool: frozenset(DType),
    _D.u8: frozenset({_D.u8, _D.i16, _D.i32, _D.i64, _D.f16, _D.bf16, _D.f32, _D.f64}),
    _D.i8: frozenset({_D.i8, _D.i16, _D.i32, _D.i64, _D.f16, _D.bf16, _D.f32, _D.f64}),
    _D.i16: frozenset({_D.i16, _D.i32, _D.i64, _D.f32, _D.f64}),
    _D.i32: frozenset({_D.i32, _D.i64, _D.f64}),
    _D.i64: frozenset({_D.i64}),
    _D.f16: frozenset({_D.f16, _D.f32, _D.f64}),
    _D.bf16: frozenset({_D.bf16, _D.f32, _D.f64}),
    _D.f32: frozenset({_D.f32, _D.f64}),
    _D.f64: frozenset({_D.f64}),
}


def convert_of_exact_convert(op: Op, rw: Rewriter) -> bool:
    inner = producer(op.operands[0], "convert")
    if inner is None:
        return False
    x = inner.operands[0]
    if inner.result.type.dtype not in EXACT_INTO[x.type.dtype]:
        return False
    if x.type == op.result.type:
        rw.replace_op(op, [x])
    else:
        rw.set_operand(op, 0, x)
    return True


# -- arithmetic with a constant ---------------------------------------------------------------
def splat(op: Op | None) -> int | float | bool | None:
    """The one value every element of a `constant` or `full` op holds, or None."""
    if op is None:
        return None
    if op.name == "full":
        return op.attrs["value"]
    if op.name != "constant":
        return None
    flat = list(_flatten(op.attrs["value"]))
    if not flat or not all(isinstance(v, (int, float)) for v in flat):
        return None
    first = flat[0]
    return first if all(_identical(first, v) for v in flat[1:]) else None


def _flatten(v):
    if isinstance(v, list):
        for x in v:
            yield from _flatten(x)
    else:
        yield v


def _identical(a, b) -> bool:
    # -0.0 == 0.0 in Python, but not as far as x + c is concerned.
    return a == b and math.copysign(1, a) == math.copysign(1, b)


def _is(v, want: float, *, negative_zero: bool | None = None) -> bool:
    if not isinstance(v, (int, float)) or v != want:
        return False
    return negative_zero is None or (math.copysign(1, v) < 0) == negative_zero


def _const_operand(op: Op, i: int):
    return splat(op.operands[i].owner)


def mul_one(op: Op, rw: Rewriter) -> bool:
    for keep, other in ((0, 1), (1, 0)):
        if _is(_const_operand(op, other), 1) and _replace(op, rw, keep):
            return True
    return False


def div_one(op: Op, rw: Rewriter) -> bool:
    return _is(_const_operand(op, 1), 1) and _replace(op, rw, 0)


def _zero_is_neutral(op: Op, v, negative: bool) -> bool:
    # Integers have one zero. For floats, x + (-0.0) and x - (+0.0) are exact for every x, but
    # -0.0 + 0.0 = +0.0, so x + 0.0 is not x.
    if not op.result.type.dtype.is_float:
        return _is(v, 0)
    return isinstance(v, float) and _is(v, 0, negative_zero=negative)


def add_zero(op: Op, rw: Rewriter) -> bool:
    for keep, other in ((0, 1), (1, 0)):
        if _zero_is_neutral(op, _const_operand(op, other), negative=True) and _replace(op, rw, keep):
            return True
    return False


def sub_zero(op: Op, rw: Rewriter) -> bool:
    return _zero_is_neutral(op, _const_operand(op, 1), negative=False) and _replace(op, rw, 0)


# (op name, pattern): each line states the law it applies.
TABLE: list[tuple[str, Pattern]] = [
    ("clone", same_type_identity),  # clone(x) -> x
    ("detach", same_type_identity),  # detach(x) -> x (no autograd in WIR)
    ("view", same_type_identity),  # view(x : s, s) -> x
    ("squeeze", same_type_identity),  # squeeze of no size-1 dim -> x
    ("expand", same_type_identity),  # expand(x : s, s) -> x
    ("slice", same_type_identity),  # x[0:n:1] along a dim of size n -> x
    ("repeat", same_type_identity),  # repeat(x, [1, ..., 1]) -> x
    ("convert", same_type_identity),  # convert(x : T, T) -> x
    ("view", reshape_chain),  # view(reshape(x)) -> view(x), or x if that is x's shape
    ("squeeze", reshape_chain),  # squeeze(reshape(x)) -> view(x), or x
    ("unsqueeze", reshape_chain),  # unsqueeze(reshape(x)) -> view(x), or x
    ("permute", permute_identity),  # permute(x, [0, 1, ..., n-1]) -> x
    ("permute", permute_of_permute),  # permute(permute(x, p), q) -> permute(x, [p[i] for i in q])
    ("expand", expand_of_expand),  # expand(expand(x, s1), s2) -> expand(x, s2)
    ("convert", convert_of_exact_convert),  # convert(convert(x : A, B), C) -> convert(x, C) if B holds A exactly
    ("cat", cat_single),  # cat([x]) -> x
    ("flip", flip_size_one),  # flip along dims of size <= 1 -> x
    ("pad", pad_zero),  # pad(x, [0, ..., 0]) -> x
    ("clamp", clamp_unbounded),  # clamp(x, none, none) -> x
    ("mul", mul_one),  # x * 1 -> x, 1 * x -> x (when the result type is x's: no broadcast, no promotion)
    ("div", div_one),  # x / 1 -> x (same type condition)
    ("add", add_zero),  # x + 0 -> x for integers; x + (-0.0) -> x for floats
    ("sub", sub_zero),  # x - 0 -> x (x - (+0.0) for floats)
]


def pattern_table(table: list[tuple[str, Pattern]] = TABLE) -> dict[str, list[Pattern]]:
    out: dict[str, list[Pattern]] = {}
    for name, pattern in table:
        out.setdefault(name, []).append(pattern)
    return out


def check_table(table: list[tuple[str, Pattern]] = TABLE) -> None:
    """Every pattern names an op that exists (a typo would silently never fire)."""
    unknown = sorted({name for name, _ in table if name not in OPS})
    assert not unknown, f"canonicalize patterns for unknown ops: {unknown}"


@dataclass(frozen=True)
class Canonicalize:
    name = "canonicalize"

    def run(self, module: Module, stats: Counter | None = None) -> Module:
        patterns = pattern_table()
        for f in module.funcs:
            apply_patterns(f, patterns, stats)
        return module
