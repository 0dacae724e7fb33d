"""Every WIR op against its torch.ops.aten call: dtype and shape exactly, values to fp32 tolerance
(rtol 1e-5, atol 1e-6) or exactly for integers and bools. Looser tolerances are given per case in
cases*.py, each with its reason."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from runtime import KERNELS, Interpreter
from tests.runtime.aten_ref import REF, aten_run
from tests.runtime.cases import ACTIVATIONS, BINARY, CONVERT, REDUCE, UNARY
from tests.runtime.cases_more import MORE
from tests.runtime.cases_nn import CREATE, HALF, NN, SHAPE
from wafercc.ir import DType, Func, Module, Op, TensorType, Value
from wafercc.ops import OPS, infer_types, verify

ALL_CASES = UNARY + ACTIVATIONS + CONVERT + BINARY + REDUCE + NN + SHAPE + CREATE + HALF + MORE
_DTYPE_OF = {np.dtype(ml_dtypes.bfloat16) if d is DType.bf16 else np.dtype(d.numpy_name): d for d in DType}


def one_op_module(name: str, inputs: list[np.ndarray], attrs: dict) -> Module:
    """``func @forward(%a0, %a1, ...) { %r... = name %a0, %a1, ... {attrs} }``, verified by the op table."""
    args = [Value(f"a{i}", TensorType(x.shape, _DTYPE_OF[x.dtype])) for i, x in enumerate(inputs)]
    types = infer_types(name, [a.type for a in args], attrs)
    op = Op(name, args, types, attrs, result_names=[f"r{i}" for i in range(len(types))])
    m = Module("sweep", funcs=[Func("forward", args, [op], list(op.results))])
    return verify(m)


def _assert_same(got: np.ndarray, want: np.ndarray, tol) -> None:
    assert got.dtype == want.dtype, f"dtype {got.dtype} != torch's {want.dtype}"
    assert got.shape == want.shape, f"shape {got.shape} != torch's {want.shape}"
    if got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want)
        return
    rtol, atol = tol or (1e-5, 1e-6)
    g, w = got.astype(np.float64), want.astype(np.float64)
    if tol is None and got.dtype != np.float32 and got.dtype != np.float64:
        # f16/bf16 elementwise results round the same f32 value once in both libraries: exact.
        rtol, atol = 0, 0
    np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("name, inputs, attrs, tol", ALL_CASES)
def test_op_matches_aten(name, inputs, attrs, tol):
    m = one_op_module(name, inputs, attrs)
    got = Interpreter(m).run(inputs).outputs
    want = aten_run(m, inputs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        _assert_same(g, w, tol)


def test_every_op_has_a_sweep_case():
    covered = {p.values[0] for p in ALL_CASES}
    assert sorted(set(OPS) - covered - {"weight.get"}) == []


def test_every_op_has_a_kernel_and_no_kernel_is_unknown():
    assert sorted(set(OPS) - set(KERNELS) - {"weight.get"}) == []
    assert sorted(set(KERNELS) - set(OPS)) == []
    assert "weight.get" not in KERNELS  # the interpreter runs it: it reads the store


def test_every_op_has_an_aten_reference():
    assert sorted(set(OPS) - set(REF) - {"weight.get"}) == []


@pytest.mark.parametrize(
    "name, attrs",
    [("div", {"rounding_mode": "trunc"}), ("div", {"rounding_mode": "floor"}), ("remainder", {}), ("fmod", {})],
)
def test_integer_division_by_zero_raises_like_torch(name, attrs):
    from runtime import RuntimeExecutionError

    inputs = [np.array([5, -5]), np.array([2, 0])]
    with pytest.raises(RuntimeExecutionError, match=f"'{name}' .*ZeroDivisionError: integer division by zero"):
        Interpreter(one_op_module(name, inputs, attrs)).run(inputs)


def test_upsample_nearest2d_honours_a_scale_factor():
    import torch

    x = np.arange(2 * 4 * 5, dtype=np.float32).reshape(1, 2, 4, 5)
    want = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=(1.7, 2.3), mode="nearest").numpy()
    m = one_op_module("upsample_nearest2d", [x], {"output_size": list(want.shape[2:])})
    m.func().ops[0].attrs["scales"] = [1.7, 2.3]  # not in the op table yet (see the kernel)
    np.testing.assert_array_equal(Interpreter(m).run([x]).outputs[0], want)


def test_as_strided_scatter_checks_its_writes_are_distinct_before_writing():
    """The kernel relies on each position being written once (numpy would let the last write win): an op that
    reached it unverified with overlapping strides is refused, not run."""
    from types import SimpleNamespace

    from runtime.kernels.shape import _as_strided_scatter

    op = SimpleNamespace(name="as_strided_scatter", attrs={"size": [2, 2], "stride": [1, 1], "offset": 0})
    with pytest.raises(ValueError, match=r"size \[2, 2\] and stride \[1, 1\] writes some element twice"):
        _as_strided_scatter(op, np.zeros((3, 4), np.float32), np.ones((2, 2), np.float32))
    op.attrs["stride"] = [1, 4]
    out = _as_strided_scatter(op, np.zeros((3, 4), np.float32), np.arange(4, dtype=np.float32).reshape(2, 2))
    assert out.reshape(-1).tolist()[:6] == [0, 2, 0, 0, 1, 3]
