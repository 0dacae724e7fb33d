"""What an ATen converter works with: the torch -> WIR dtype table and ``Ctx``, through which a converter
emits WIR ops (each result type from the op table's rule) and makes constants."""

from __future__ import annotations

import math
import re

import torch
import torch.fx

from wafercc.ir import DType, Func, Loc, Op, TensorType, Value
from wafercc.ops import ShapeError, infer_types

TORCH_DTYPES = {
    torch.float64: DType.f64,
    torch.float32: DType.f32,
    torch.float16: DType.f16,
    torch.bfloat16: DType.bf16,
    torch.int64: DType.i64,
    torch.int32: DType.i32,
    torch.int16: DType.i16,
    torch.int8: DType.i8,
    torch.uint8: DType.u8,
    torch.bool: DType.bool,
}


class ImportBug(AssertionError):
    """wafercc's op table disagrees with torch about a result type: a bug in wafercc, not the user's."""


def tensor_type(t) -> TensorType:
    return TensorType(tuple(int(s) for s in t.shape), TORCH_DTYPES[t.dtype])


class Ctx:
    """What a converter sees: emit ops, make constants, look at the node being converted."""

    def __init__(self, func: Func, used_names: set[str]):
        self.func = func
        self.used = used_names
        self.node: torch.fx.Node | None = None
        self.loc: Loc | None = None
        self._const_cache: dict[tuple, Value] = {}

    # -- naming ----------------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        base = sanitize(base) or "v"
        name, i = base, 0
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    # -- emission --------------------------------------------------------------------------------
    def emit(
        self, name: str, operands: list[Value], attrs: dict | None = None, *, hint: str | None = None
    ) -> list[Value]:
        attrs = {k: v for k, v in (attrs or {}).items()}
        try:
            types = infer_types(name, [v.type for v in operands], attrs)
        except ShapeError as e:
            raise ImportBug(f"'{name}' rejected operands from {self._where()}: {e}") from None
        base = hint or (self.node.name if self.node is not None else name)
        names = [self.fresh(base if len(types) == 1 else f"{base}.{i}") for i in range(len(types))]
        op = Op(name, operands, types, attrs, self.loc, names)
        self.func.ops.append(op)
        return op.results

    def emit1(self, name: str, operands: list[Value], attrs: dict | None = None, **kw) -> Value:
        return self.emit(name, operands, attrs, **kw)[0]

    def constant(self, value, dtype: DType) -> Value:
        """A 0-d constant, shared by every use of the same value and dtype in the function."""
        if isinstance(value, float) and math.isnan(value):
            key = ("nan", dtype)
        else:
            key = (type(value).__name__, value, dtype)
        v = self._const_cache.get(key)
        if v is None:
            if dtype.is_float:
                value = float(value)
            elif dtype.is_bool:
                value = bool(value)
            else:
                value = int(value)
            saved = self.loc
            self.loc = None  # a shared constant belongs to no single line
            v = self.emit1("constant", [], {"value": value, "dtype": dtype}, hint="cst")
            self.loc = saved
            self._const_cache[key] = v
        return v

    def scalar_operand(self, x, like: Value) -> Value:
        """A Python number as an operand beside tensor ``like``, with torch's wrapped-number dtype rule."""
        if isinstance(x, Value):
            return x
        return self.constant(x, scalar_dtype(x, like.type.dtype))

    def meta_type(self, index: int | None = None) -> TensorType:
        val = self.node.meta["val"]
        if index is not None:
            val = val[index]
        return tensor_type(val)

    def _where(self) -> str:
        n = self.node
        return f"node '{n.name}' ({n.target})" + (f" at {self.loc}" if self.loc else "") if n is not None else "?"


def scalar_dtype(x, tensor_dtype: DType) -> DType:
    """The dtype torch gives a Python scalar combined with a tensor of ``tensor_dtype``."""
    cat = 0 if isinstance(x, bool) else 1 if isinstance(x, int) else 2
    tcat = 0 if tensor_dtype.is_bool else 1 if tensor_dtype.is_int else 2
    if cat <= tcat:
        return tensor_dtype
    return DType.f32 if cat == 2 else DType.i64


NAME_RE = re.compile(r"[^A-Za-z0-9_.$]")


def sanitize(name: str) -> str:
    return NAME_RE.sub("_", name)
