"""Properties of the default pipeline on random straight-line modules, and of the tables the passes trust.

For every module built from a few elementwise and view ops: the pipeline's output verifies, keeps the
signature, computes bit-for-bit the same numbers (run through the reference runtime's kernels), and is a
fixpoint: running the pipeline again prints the same text.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wafercc.ir import DType, Func, Module, Op, TensorType, parse, print_module
from wafercc.ops import ShapeError, infer_types, verify
from wafercc.passes import DEFAULT_PIPELINE, run_pipeline
from wafercc.passes.canonicalize import EXACT_INTO, check_table
from wafercc.passes.fold import numpy_dtype
from wafercc.passes.rewrite import apply_patterns

F32 = DType.f32
UNARY = ["neg", "relu", "clone", "detach", "exp", "abs"]
BINARY = ["add", "sub", "mul", "div"]
# What one step of a random module does ("binary" twice: values meeting values is where cse finds work).
STEPS = ["unary", "binary", "binary", "scalar", "view", "permute", "unsqueeze", "squeeze", "convert", "const_expr"]
# Scalars chosen to hit the identities (1, 0, -0.0) and to make foldable constant expressions.
SCALARS = [0.0, -0.0, 1.0, 2.0, 0.5, 1]


class Builder:
    """Appends ops to one function, computing each result type with the op table."""

    def __init__(self, arg_shapes: list[tuple[int, ...]]):
        args = [TensorType(s, F32) for s in arg_shapes]
        self.func = Func("forward", [self._value(f"a{i}", t) for i, t in enumerate(args)])
        self.pool = list(self.func.args)

    @staticmethod
    def _value(name, t):
        from wafercc.ir import Value

        return Value(name, t)

    def add(self, name: str, operands: list, attrs: dict) -> bool:
        try:
            types = infer_types(name, [v.type for v in operands], attrs)
        except ShapeError:
            return False
        op = Op(name, operands, types, attrs, result_names=[f"v{len(self.func.ops)}"])
        self.func.ops.append(op)
        self.pool.append(op.result)
        return True

    def constant(self, value) -> Op:
        dtype = DType.i64 if isinstance(value, int) else F32
        self.add("constant", [], {"dtype": dtype, "value": value})
        return self.pool[-1]


@st.composite
def modules(draw) -> Module:
    shapes = draw(st.lists(st.sampled_from([(2, 3), (6,), (3, 2), (1, 6)]), min_size=1, max_size=2))
    b = Builder(shapes)

    def pick():
        return b.pool[draw(st.integers(0, len(b.pool) - 1))]

    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(STEPS))
        x = pick()
        if kind == "unary":
            b.add(draw(st.sampled_from(UNARY)), [x], {})
        elif kind == "binary":
            b.add(draw(st.sampled_from(BINARY)), [x, pick()], {})
        elif kind == "scalar":
            c = b.constant(draw(st.sampled_from(SCALARS)))
            pair = [x, c] if draw(st.booleans()) else [c, x]
            b.add(draw(st.sampled_from(BINARY)), pair, {})
        elif kind == "view":
            shape = draw(st.sampled_from([[x.type.numel], [1, x.type.numel], list(reversed(x.type.shape))]))
            b.add("view", [x], {"shape": shape})
        elif kind == "permute":
            b.add("permute", [x], {"dims": draw(st.permutations(range(x.type.rank)))})
        elif kind == "unsqueeze":
            b.add("unsqueeze", [x], {"dim": draw(st.integers(0, x.type.rank))})
        elif kind == "squeeze":
            b.add("squeeze", [x], {})
        elif kind == "convert":
            b.add("convert", [x], {"dtype": draw(st.sampled_from([DType.f64, DType.f16, DType.f32]))})
        else:
            c1, c2 = b.constant(draw(st.sampled_from(SCALARS))), b.constant(draw(st.sampled_from(SCALARS)))
            b.add(draw(st.sampled_from(BINARY)), [c1, c2], {})
    results = [b.pool[-1]] + draw(st.lists(st.sampled_from(b.pool), max_size=2))
    b.func.returns = results
    b.func.result_types = [v.type for v in results]
    return verify(Module("random", funcs=[b.func]))


def execute(module: Module, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """A minimal interpreter over the runtime's kernels: enough for straight-line test modules."""
    from runtime.kernels import KERNELS

    f = module.funcs[0]
    env = dict(zip(f.args, inputs))
    with np.errstate(all="ignore"):
        for op in f.ops:
            out = KERNELS[op.name](op, *(env[v] for v in op.operands))
            env.update(zip(op.results, (np.asarray(a) for a in (out if isinstance(out, (list, tuple)) else [out]))))
    return [env[v] for v in f.returns]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values and dtypes, with -0.0 different from +0.0 and any NaN equal to any NaN (WIR text spells
    every NaN `nan`, so a folded NaN loses its sign bit; IEEE arithmetic gives that bit no meaning)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind != "f":
        return np.array_equal(a, b)
    numbers = ~np.isnan(a)
    return np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a[numbers]), np.signbit(b[numbers]))


def sample_inputs(f: Func) -> list[np.ndarray]:
    specials = np.array([-0.0, 0.0, 1.5, -2.0, np.inf, 7.0, -np.inf, np.nan, 1e-3, 3.0, -0.5, 65504.0])
    return [np.resize(specials, a.type.shape).astype(np.float32) for a in f.args]


@settings(max_examples=150, deadline=None)
@given(modules())
def test_default_pipeline_keeps_meaning_and_is_a_fixpoint(module: Module) -> None:
    before = parse(print_module(module))
    signature = ([a.type for a in before.funcs[0].args], before.funcs[0].declared_result_types())
    out = run_pipeline(module, DEFAULT_PIPELINE)  # verifies the input and after every pass
    verify(out)
    f = out.funcs[0]
    assert ([a.type for a in f.args], f.declared_result_types()) == signature
    text = print_module(out)
    assert print_module(run_pipeline(parse(text), DEFAULT_PIPELINE)) == text
    inputs = sample_inputs(before.funcs[0])
    for want, got in zip(execute(before, inputs), execute(parse(text), inputs)):
        assert same_bits(want, got), f"{want!r} != {got!r}\n{print_module(before)}\n{text}"


# -- the tables the passes trust ------------------------------------------------------------------
def _samples(d: DType) -> np.ndarray:
    """Values of dtype d that probe its range and precision (every value, for the 1- and 2-byte types)."""
    nd = numpy_dtype(d)
    if d.is_bool:
        return np.array([False, True])
    if d.is_float and nd.itemsize == 2:
        every = np.arange(2**16, dtype=np.uint16).view(nd)
        return every[np.isfinite(every.astype(np.float32))]
    if d.is_float:
        info = np.finfo(nd)
        return np.array([info.max, -info.max, info.tiny, info.smallest_subnormal, math.pi, -0.0, 1 + info.eps], nd)
    info = np.iinfo(nd)
    if nd.itemsize <= 2:
        return np.arange(info.min, info.max + 1).astype(nd)
    return np.array([info.min, info.max, 2**24 + 1, -(2**24) - 1, 2**31 - 1], dtype=np.int64).astype(nd)


def _numbers(a: np.ndarray) -> list:
    """Python numbers compare exactly across int and float (2**53 + 1 != float(2**53 + 1))."""
    return (a.astype(np.float64) if a.dtype.kind not in "biu" else a).tolist()


@pytest.mark.parametrize("src, dst", list(itertools.product(DType, DType)), ids=lambda d: d.value)
def test_exact_cast_table_is_true(src: DType, dst: DType) -> None:
    """B is in EXACT_INTO[A] exactly when casting to B keeps every sampled value of A (and its sign)."""
    values = _samples(src)
    with np.errstate(all="ignore"):
        cast = values.astype(numpy_dtype(dst))
    exact = all(a == b and math.copysign(1, a) == math.copysign(1, b) for a, b in zip(_numbers(values), _numbers(cast)))
    assert exact == (dst in EXACT_INTO[src])


def test_canonicalize_patterns_name_real_ops() -> None:
    check_table()


def test_non_converging_patterns_are_caught() -> None:
    def flip_flop(op: Op, rw) -> bool:
        op.attrs = {"dims": list(reversed(op.attrs["dims"]))}
        return True

    m = parse("""module @m {
  func @f(%x: tensor<2x2xf32>) -> (tensor<2x2xf32>) {
    %a = permute %x {dims = [1, 0]} : tensor<2x2xf32>
    return %a
  }
}
""")
    with pytest.raises(RuntimeError, match="do not converge .*flip_flop"):
        apply_patterns(m.funcs[0], {"permute": [flip_flop]}, Counter())
