"""Shared pieces of result-type rules: broadcasting, dim normalization, promotion."""

from __future__ import annotations

from wafercc.ir import DType, TensorType, result_dtype

from .registry import ShapeError


def norm_dim(d: int, rank: int, *, extra: int = 0) -> int:
    """A possibly negative dim as a non-negative one; ``extra`` allows one past the end (unsqueeze)."""
    n = rank + extra
    if not -max(n, 1) <= d < max(n, 1):
        raise ShapeError(f"dim {d} is out of range for rank {rank}")
    return d % n if n else 0


def norm_dims(dims: list[int] | None, rank: int) -> list[int]:
    """Reduction dims; an empty list or none means every dim (ATen's convention)."""
    if not dims:
        return list(range(rank))
    out = sorted({norm_dim(d, rank) for d in dims})
    if len(out) != len(dims):
        raise ShapeError(f"dims {dims} repeat a dim")
    return out


def broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        size = 1
        for s in shapes:
            j = i - (rank - len(s))
            if j < 0:
                continue
            d = s[j]
            if d == 1:
                continue
            if size not in (1, d):
                raise ShapeError("shapes " + ", ".join(str(list(s)) for s in shapes) + " do not broadcast")
            size = d
        out.append(size)
    return tuple(out)


def float_of(t: TensorType) -> DType:
    """The dtype of a floating-point function of ``t``: integers and bools become f32 (torch's default)."""
    return t.dtype if t.dtype.is_float else DType.f32


def same(ts, a):
    return [ts[0]]


def unary_float(ts, a):
    return [ts[0].with_dtype(float_of(ts[0]))]


def to_bool(ts, a):
    return [ts[0].with_dtype(DType.bool)]


def binary(ts, a):
    return [TensorType(broadcast(ts[0].shape, ts[1].shape), result_dtype(ts[:2]))]


def binary_float(ts, a):
    t = TensorType(broadcast(ts[0].shape, ts[1].shape), result_dtype(ts[:2]))
    return [t.with_dtype(float_of(t))]


def compare(ts, a):
    return [TensorType(broadcast(ts[0].shape, ts[1].shape), DType.bool)]


def require_float(t: TensorType, what: str) -> None:
    if not t.dtype.is_float:
        raise ShapeError(f"{what} needs a floating-point tensor, got {t}")


def reduced_shape(shape: tuple[int, ...], dims: list[int], keepdim: bool) -> tuple[int, ...]:
    if keepdim:
        return tuple(1 if i in dims else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in dims)
