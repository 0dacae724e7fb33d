"""Tensor types and dtypes of WIR.

A WIR type is always a ranked tensor with a static shape: ``tensor<8x784xf32>``; a 0-d tensor is
``tensor<f32>``. Dtype names follow MLIR where one exists (``f32``, ``i64``) and say ``bool`` for
booleans because that is what a PyTorch user reads.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum


class DType(Enum):
    """Element types. The value is the WIR spelling."""

    f64 = "f64"
    f32 = "f32"
    f16 = "f16"
    bf16 = "bf16"
    i64 = "i64"
    i32 = "i32"
    i16 = "i16"
    i8 = "i8"
    u8 = "u8"
    bool = "bool"

    def __repr__(self) -> str:
        return f"DType.{self.value}"

    @property
    def itemsize(self) -> int:
        return _ITEMSIZE[self]

    @property
    def is_float(self) -> bool:
        return self in _FLOATS

    @property
    def is_int(self) -> bool:
        return self in _INTS

    @property
    def is_bool(self) -> bool:
        return self is DType.bool

    @property
    def numpy_name(self) -> str:
        """The numpy dtype name (``bfloat16`` comes from ml_dtypes)."""
        return _NUMPY_NAME[self]

    @staticmethod
    def wir_name(numpy_name: str) -> str:
        """The WIR spelling of a numpy dtype name (``float32`` -> ``f32``); other names unchanged."""
        return next((d.value for d, n in _NUMPY_NAME.items() if n == numpy_name), numpy_name)


_ITEMSIZE = {
    DType.f64: 8,
    DType.f32: 4,
    DType.f16: 2,
    DType.bf16: 2,
    DType.i64: 8,
    DType.i32: 4,
    DType.i16: 2,
    DType.i8: 1,
    DType.u8: 1,
    DType.bool: 1,
}
_FLOATS = frozenset({DType.f64, DType.f32, DType.f16, DType.bf16})
_INTS = frozenset({DType.i64, DType.i32, DType.i16, DType.i8, DType.u8})
_NUMPY_NAME = {
    DType.f64: "float64",
    DType.f32: "float32",
    DType.f16: "float16",
    DType.bf16: "bfloat16",
    DType.i64: "int64",
    DType.i32: "int32",
    DType.i16: "int16",
    DType.i8: "int8",
    DType.u8: "uint8",
    DType.bool: "bool",
}

# Category order for type promotion, as torch defines it: bool < integer < floating.
_CATEGORY = {d: (0 if d.is_bool else 1 if d.is_int else 2) for d in DType}
# Within a category, the wider type wins; f16 and bf16 together promote to f32 (torch's rule).
_RANK = {
    DType.bool: 0,
    DType.u8: 1,
    DType.i8: 1,
    DType.i16: 2,
    DType.i32: 3,
    DType.i64: 4,
    DType.f16: 1,
    DType.bf16: 1,
    DType.f32: 2,
    DType.f64: 3,
}


def promote(a: DType, b: DType) -> DType:
    """The dtype of a binary op between two dimensioned tensors of dtypes ``a`` and ``b``."""
    if a is b:
        return a
    ca, cb = _CATEGORY[a], _CATEGORY[b]
    if ca != cb:
        return a if ca > cb else b
    if {a, b} == {DType.f16, DType.bf16}:
        return DType.f32
    if {a, b} == {DType.u8, DType.i8}:
        return DType.i16
    return a if _RANK[a] > _RANK[b] else b


def result_dtype(types: list["TensorType"]) -> DType:
    """torch.result_type over tensor operands: dimensioned tensors decide within a category;
    0-d tensors only matter when they are of a higher category (torch's rule for ``x * 2.0``)."""
    dimmed = [t.dtype for t in types if t.rank > 0]
    zero = [t.dtype for t in types if t.rank == 0]
    out: DType | None = None
    for d in dimmed:
        out = d if out is None else promote(out, d)
    zero_out: DType | None = None
    for d in zero:
        zero_out = d if zero_out is None else promote(zero_out, d)
    if out is None:
        assert zero_out is not None, "result_dtype of no operands"
        return zero_out
    if zero_out is not None and _CATEGORY[zero_out] > _CATEGORY[out]:
        # A float 0-d tensor with an integer tensor gives the 0-d tensor's dtype.
        return zero_out
    return out


@dataclass(frozen=True, slots=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: DType

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def with_shape(self, shape: tuple[int, ...] | list[int]) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(self.shape, dtype)

    def __str__(self) -> str:
        dims = "".join(f"{d}x" for d in self.shape)
        return f"tensor<{dims}{self.dtype.value}>"


_TYPE_RE = re.compile(r"tensor<((?:\d+x)*)([a-z0-9]+)>\Z")
_TYPE_CACHE: dict[str, TensorType] = {}


def parse_type(text: str) -> TensorType:
    """Parse ``tensor<2x3xf32>``. Raises ValueError on a malformed type."""
    cached = _TYPE_CACHE.get(text)
    if cached is not None:
        return cached
    m = _TYPE_RE.match(text)
    if m is None:
        raise ValueError(f"malformed tensor type '{text}'")
    try:
        dtype = DType(m.group(2))
    except ValueError:
        known = ", ".join(d.value for d in DType)
        raise ValueError(f"unknown dtype '{m.group(2)}' in '{text}' (known: {known})") from None
    dims = tuple(int(d) for d in m.group(1).split("x") if d)
    t = TensorType(dims, dtype)
    if len(_TYPE_CACHE) < 65536:
        _TYPE_CACHE[text] = t
    return t
