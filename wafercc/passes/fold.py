"""fold: evaluate small constant computations at compile time.

    %a = constant {dtype = f32, value = 2.0} : tensor<f32>
    %b = full {dtype = f32, shape = [2], value = 3.0} : tensor<2xf32>
    %c = mul %b, %a : tensor<2xf32>
    %d = add %x, %c : tensor<2xf32>
  becomes
    %c = constant {dtype = f32, value = [6.0, 6.0]} : tensor<2xf32>
    %d = add %x, %c : tensor<2xf32>

An op is folded when all its operands are `constant` ops (or it is a `full` / `arange`) and its results
hold at most ``max_elements`` elements in all. It is evaluated by the numpy reference runtime's kernel for
it, the living definition of what the op computes, so folding cannot disagree with execution. Ops without
a kernel (or no runtime at all) are left alone.

With ``canonicalize`` (the default) the canonicalization patterns run in the same worklist: a constant
that folding creates may be a 1 in ``x * 1``, and removing that may expose a ``view(view(x))``; doing both
in one walk is what makes ``canonicalize,fold,cse,dce`` a fixpoint (MLIR's canonicalizer interleaves op
folders and patterns for the same reason).

Requires: a verified module. Guarantees: a verified module with the same results (bit for bit, except that
a folded NaN loses its sign bit: WIR text spells every NaN `nan`), the same function signatures, and no op
left dead by folding (the constants a folded op consumed go when it was their last use).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from runtime.kernels import KERNELS
from wafercc.ir import DType, Module, Op
from wafercc.ops import infer_types

from .canonicalize import pattern_table
from .rewrite import Rewriter, apply_patterns

Kernel = Callable[..., object]

# Ops that make a tensor from attributes alone; anything else needs constant operands to fold.
_SOURCES = ("full", "arange")
_NEVER = ("constant", "weight.get")  # already a constant; a weight's data is not in the module


def numpy_dtype(d: DType) -> np.dtype:
    if d is DType.bf16:
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(d.numpy_name)


def to_array(op: Op) -> np.ndarray:
    """The value of a `constant` op as an array of its type."""
    return np.array(op.attrs["value"], dtype=numpy_dtype(op.attrs["dtype"]))


def to_attr(a: np.ndarray):
    """An array as a constant's `value`: a Python scalar (0-d) or nested lists, exact for every float dtype."""
    if a.dtype.kind == "f" or a.dtype == numpy_dtype(DType.bf16):
        a = a.astype(np.float64)  # every f16/bf16/f32 value is an f64; tolist() then gives Python floats
    return a.tolist()


def foldable(op: Op, max_elements: int) -> bool:
    if op.name in _NEVER:
        return False
    if not op.operands and op.name not in _SOURCES:
        return False
    if any(v.owner is None or v.owner.name != "constant" for v in op.operands):
        return False
    return sum(r.type.numel for r in op.results) <= max_elements


def evaluate(op: Op, kernel: Kernel) -> list[np.ndarray]:
    """Run the kernel and check that it returned what the op's types say (a mismatch is a runtime bug)."""
    # IEEE results (1/0 = inf, 0/0 = nan) are what the op computes; numpy's warnings about them are noise.
    with np.errstate(all="ignore"):
        out = kernel(op, *(to_array(v.owner) for v in op.operands))
    arrays = [np.asarray(a) for a in (out if isinstance(out, (list, tuple)) else [out])]
    if len(arrays) != len(op.results):
        raise RuntimeError(f"runtime kernel for '{op.name}' returned {len(arrays)} arrays for {op.where()}")
    for a, r in zip(arrays, op.results):
        want = numpy_dtype(r.type.dtype)
        if a.shape != r.type.shape or a.dtype != want:
            raise RuntimeError(
                f"runtime kernel for '{op.name}' returned {a.dtype}{list(a.shape)} for {op.where()}, "
                f"whose type is {r.type}"
            )
    return arrays


def make_folder(kernels: Mapping[str, Kernel], max_elements: int):
    def fold_constant(op: Op, rw: Rewriter) -> bool:
        kernel = kernels.get(op.name)
        # An op none of whose results is used is dce's to remove, not ours to evaluate.
        if kernel is None or rw.is_dead(op) or not foldable(op, max_elements):
            return False
        new: dict[int, Op] = {}
        for i, (r, a) in enumerate(zip(op.results, evaluate(op, kernel))):
            if not rw.has_uses(r):
                continue  # a constant nobody reads would be dead on arrival
            attrs = {"dtype": r.type.dtype, "value": to_attr(a)}
            # Nested lists cannot spell every empty shape (a 0x3 tensor prints as []): leave those be.
            if infer_types("constant", [], attrs) != [r.type]:
                return False
            # The folded op's result names are reused: it is erased, and names stay stable for the reader.
            new[i] = Op("constant", [], [r.type], attrs, op.loc, [r.name])
        for i, c in new.items():
            rw.insert_before(op, c)
            rw.replace_all_uses(op.results[i], c.result)  # the last one leaves op dead, which erases it
        return True

    return fold_constant


@dataclass(frozen=True)
class Fold:
    name = "fold"
    max_elements: int = 64
    canonicalize: bool = True

    def run(self, module: Module, stats: Counter | None = None) -> Module:
        kernels = KERNELS
        patterns = pattern_table() if self.canonicalize else {}
        folder = make_folder(kernels, self.max_elements)
        for f in module.funcs:
            apply_patterns(f, patterns, stats, any_op=[folder])
        return module
