"""Data movement: views, permutations, slicing, concatenation, gathers, padding, sorting.

Attributes are normalized by whoever builds the op (the frontend does it from ATen's arguments):
dims are non-negative, slice bounds are clamped into range, ``view`` has no -1. The verifier insists,
so every consumer of WIR (passes, runtime, mapping) sees one form.
"""

from __future__ import annotations

import math

from wafercc.ir import DType, TensorType, result_dtype

from .registry import AttrSpec, ShapeError, defop, out_numel
from .rules import broadcast

F = "shape"


def _nonneg_dim(d: int, rank: int, what: str = "dim") -> int:
    if rank == 0:
        raise ShapeError("needs a tensor of rank >= 1, got a 0-d tensor")
    if not 0 <= d < rank:
        raise ShapeError(f"{what} {d} must be in [0, {rank}) for rank {rank}")
    return d


def _view(ts, a):
    t = ts[0]
    shape = tuple(a["shape"])
    if any(s < 0 for s in shape):
        raise ShapeError(f"view shape {list(shape)} must be fully specified (no -1)")
    if math.prod(shape) != t.numel:
        raise ShapeError(f"cannot view {t} ({t.numel} elements) as {list(shape)}")
    return [t.with_shape(shape)]


defop(
    "view",
    "x",
    _view,
    attrs={"shape": "ints"},
    family=F,
    doc="the same elements, row-major, in a new shape",
    torch=("aten.view", "aten._unsafe_view", "aten.reshape"),
)


def _permute(ts, a):
    t, dims = ts[0], a["dims"]
    if sorted(dims) != list(range(t.rank)):
        raise ShapeError(f"dims {dims} are not a permutation of the {t.rank} dims of {t}")
    return [t.with_shape(tuple(t.shape[d] for d in dims))]


defop(
    "permute",
    "x",
    _permute,
    attrs={"dims": "ints"},
    family=F,
    doc="result dim i is input dim dims[i]",
    torch=("aten.permute",),
)


def _expand(ts, a):
    t, shape = ts[0], list(a["shape"])
    lead = len(shape) - t.rank
    if lead < 0:
        raise ShapeError(f"cannot expand {t} to fewer dims {shape}")
    for i, s in enumerate(t.shape):
        want = shape[lead + i]
        if want != s and s != 1:
            raise ShapeError(f"cannot expand dim {i} of size {s} to {want}")
    if any(s < 0 for s in shape):
        raise ShapeError(f"expand shape {shape} must be fully specified (no -1)")
    return [t.with_shape(tuple(shape))]


defop(
    "expand",
    "x",
    _expand,
    attrs={"shape": "ints"},
    family=F,
    doc="broadcast size-1 dims (and new leading dims) to shape",
    torch=("aten.expand",),
)


def _slice(ts, a):
    t = ts[0]
    d = _nonneg_dim(a["dim"], t.rank)
    start, end, step = a["start"], a["end"], a["step"]
    if not (0 <= start <= end <= t.shape[d]) or step < 1:
        raise ShapeError(f"slice [{start}:{end}:{step}] must satisfy 0 <= start <= end <= {t.shape[d]}, step >= 1")
    shape = list(t.shape)
    shape[d] = -(-(end - start) // step)
    return [t.with_shape(tuple(shape))]


defop(
    "slice",
    "x",
    _slice,
    attrs={"dim": "int", "start": "int", "end": "int", "step": AttrSpec("int", 1)},
    family=F,
    doc="x[..., start:end:step, ...] along dim (bounds normalized into range)",
    torch=("aten.slice",),
)


def _select(ts, a):
    t = ts[0]
    d = _nonneg_dim(a["dim"], t.rank)
    if not 0 <= a["index"] < t.shape[d]:
        raise ShapeError(f"index {a['index']} is out of range for dim {d} of size {t.shape[d]}")
    return [t.with_shape(t.shape[:d] + t.shape[d + 1 :])]


defop(
    "select",
    "x",
    _select,
    attrs={"dim": "int", "index": "int"},
    family=F,
    doc="x[..., index, ...] along dim",
    torch=("aten.select",),
)


def _unsqueeze(ts, a):
    t = ts[0]
    d = a["dim"]
    if not 0 <= d <= t.rank:
        raise ShapeError(f"dim {d} must be in [0, {t.rank}]")
    return [t.with_shape(t.shape[:d] + (1,) + t.shape[d:])]


defop(
    "unsqueeze",
    "x",
    _unsqueeze,
    attrs={"dim": "int"},
    family=F,
    doc="insert a size-1 dim at dim",
    torch=("aten.unsqueeze",),
)


def _squeeze(ts, a):
    t = ts[0]
    dims = {_nonneg_dim(d, t.rank) for d in a["dims"]} if a["dims"] else set(range(t.rank))
    return [t.with_shape(tuple(s for i, s in enumerate(t.shape) if not (i in dims and s == 1)))]


defop(
    "squeeze",
    "x",
    _squeeze,
    attrs={"dims": AttrSpec("ints", [])},
    family=F,
    doc="drop the size-1 dims among dims (all size-1 dims if dims is empty)",
    torch=("aten.squeeze",),
)


def _cat(ts, a):
    if not ts:
        raise ShapeError("cat needs at least one operand")
    first = ts[0]
    d = _nonneg_dim(a["dim"], first.rank)
    total = 0
    for t in ts:
        if t.rank != first.rank or any(t.shape[i] != first.shape[i] for i in range(t.rank) if i != d):
            raise ShapeError(f"cannot concatenate {first} and {t} along dim {d}")
        total += t.shape[d]
    shape = list(first.shape)
    shape[d] = total
    return [TensorType(tuple(shape), result_dtype(ts))]


defop("cat", "xs*", _cat, attrs={"dim": "int"}, family=F, doc="concatenation along dim", torch=("aten.cat",))


def _split(ts, a):
    t = ts[0]
    d = _nonneg_dim(a["dim"], t.rank)
    if sum(a["sizes"]) != t.shape[d] or any(s < 0 for s in a["sizes"]):
        raise ShapeError(f"split sizes {a['sizes']} do not add up to dim {d} of {t}")
    return [t.with_shape(t.shape[:d] + (s,) + t.shape[d + 1 :]) for s in a["sizes"]]


defop(
    "split",
    "x",
    _split,
    attrs={"dim": "int", "sizes": "ints"},
    family=F,
    num_results=None,
    doc="consecutive pieces of the given sizes along dim",
    torch=("aten.split_with_sizes", "aten.split"),
)


def _gather(ts, a):
    t, idx = ts
    d = _nonneg_dim(a["dim"], t.rank)
    if idx.rank != t.rank or not idx.dtype.is_int:
        raise ShapeError(f"gather needs an integer index of rank {t.rank}, got {idx}")
    if any(idx.shape[i] > t.shape[i] for i in range(t.rank) if i != d):
        raise ShapeError(f"index {idx} is larger than {t} outside dim {d}")
    return [t.with_shape(idx.shape)]


defop(
    "gather",
    "x index",
    _gather,
    attrs={"dim": "int"},
    flops=out_numel,
    family=F,
    doc="result[i][j][k] = x[index[i][j][k]][j][k] (for dim 0; likewise for other dims)",
    torch=("aten.gather",),
)


def _index_select(ts, a):
    t, idx = ts
    d = _nonneg_dim(a["dim"], t.rank)
    if idx.rank > 1 or not idx.dtype.is_int:
        raise ShapeError(f"index_select needs a 1-d integer index, got {idx}")
    return [t.with_shape(t.shape[:d] + (idx.numel,) + t.shape[d + 1 :])]


defop(
    "index_select",
    "x index",
    _index_select,
    attrs={"dim": "int"},
    family=F,
    doc="the slices of x at the given indices along dim",
    torch=("aten.index_select",),
)


def _index(ts, a):
    t, idxs = ts[0], ts[1:]
    dims = a["dims"]
    if len(dims) != len(idxs) or not idxs:
        raise ShapeError(f"index has {len(idxs)} index operand(s) for dims {dims}")
    if dims != sorted(set(dims)) or any(not 0 <= d < t.rank for d in dims):
        raise ShapeError(f"dims {dims} must be increasing dims of {t}")
    for i in idxs:
        if not (i.dtype.is_int or i.dtype.is_bool):
            raise ShapeError(f"index operands must be integer tensors, got {i}")
        if i.dtype.is_bool:
            raise ShapeError("boolean mask indexing has a data-dependent shape and is not supported")
    bshape = broadcast(*(i.shape for i in idxs))
    rest = [s for i, s in enumerate(t.shape) if i not in dims]
    adjacent = dims == list(range(dims[0], dims[0] + len(dims)))
    if adjacent:
        before = [t.shape[i] for i in range(dims[0])]
        after = [t.shape[i] for i in range(dims[-1] + 1, t.rank)]
        shape = before + list(bshape) + after
    else:
        shape = list(bshape) + rest
    return [t.with_shape(tuple(shape))]


defop(
    "index",
    "x indices*",
    _index,
    attrs={"dims": "ints"},
    family=F,
    doc="advanced indexing x[..., i0, ..., i1, ...] with integer index tensors at dims (numpy rules)",
    torch=("aten.index.Tensor",),
)


def _flip(ts, a):
    for d in a["dims"]:
        _nonneg_dim(d, ts[0].rank)
    return [ts[0]]


defop(
    "flip",
    "x",
    _flip,
    attrs={"dims": "ints"},
    family=F,
    doc="reverse the order of elements along dims",
    torch=("aten.flip",),
)


def _pad(ts, a):
    t, pad = ts[0], a["pad"]
    if len(pad) % 2 or len(pad) // 2 > t.rank:
        raise ShapeError(f"pad {pad} must have an even length of at most {2 * t.rank}")
    shape = list(t.shape)
    for i in range(len(pad) // 2):
        d = t.rank - 1 - i
        shape[d] += pad[2 * i] + pad[2 * i + 1]
        if shape[d] < 0:
            raise ShapeError(f"pad {pad} removes more than dim {d} holds")
    return [t.with_shape(tuple(shape))]


defop(
    "pad",
    "x",
    _pad,
    attrs={"pad": "ints", "value": AttrSpec("scalar", 0)},
    family=F,
    doc="constant padding; pad = [last-dim before, last-dim after, next-dim before, ...]; negative crops",
    torch=("aten.constant_pad_nd",),
)


def _topk(ts, a):
    t = ts[0]
    d = _nonneg_dim(a["dim"], t.rank)
    if not 0 <= a["k"] <= (t.shape[d] if t.rank else 1):
        raise ShapeError(f"k = {a['k']} is out of range for dim {d} of {t}")
    shape = t.shape[:d] + (a["k"],) + t.shape[d + 1 :] if t.rank else ()
    return [t.with_shape(shape), t.with_shape(shape).with_dtype(DType.i64)]


defop(
    "topk",
    "x",
    _topk,
    attrs={"k": "int", "dim": "int", "largest": AttrSpec("bool", True), "sorted": AttrSpec("bool", True)},
    flops=lambda op: op.operands[0].type.numel,
    family=F,
    num_results=2,
    doc="the k largest (or smallest) values along dim and their indices",
    torch=("aten.topk",),
)


def _sort(ts, a):
    t = ts[0]
    _nonneg_dim(a["dim"], t.rank)
    return [t, t.with_dtype(DType.i64)]


defop(
    "sort",
    "x",
    _sort,
    attrs={"dim": "int", "descending": AttrSpec("bool", False), "stable": AttrSpec("bool", False)},
    flops=lambda op: op.operands[0].type.numel,
    family=F,
    num_results=2,
    doc="values sorted along dim and the permutation that sorts them (stable)",
    torch=("aten.sort",),
)


def _tri(ts, a):
    if ts[0].rank < 2:
        raise ShapeError(f"needs rank >= 2, got {ts[0]}")
    return [ts[0]]


defop(
    "triu",
    "x",
    _tri,
    attrs={"diagonal": AttrSpec("int", 0)},
    family=F,
    doc="zero the elements below the diagonal-th diagonal",
    torch=("aten.triu",),
)
defop(
    "tril",
    "x",
    _tri,
    attrs={"diagonal": AttrSpec("int", 0)},
    family=F,
    doc="zero the elements above the diagonal-th diagonal",
    torch=("aten.tril",),
)


def _repeat(ts, a):
    t, reps = ts[0], a["repeats"]
    if len(reps) < t.rank:
        raise ShapeError(f"repeats {reps} has fewer entries than the rank of {t}")
    shape = (1,) * (len(reps) - t.rank) + t.shape
    return [t.with_shape(tuple(s * r for s, r in zip(shape, reps)))]


defop(
    "repeat",
    "x",
    _repeat,
    attrs={"repeats": "ints"},
    family=F,
    doc="tile x repeats[i] times along dim i",
    torch=("aten.repeat",),
)


# -- writes into a copy: scatters, index_put, slice_scatter, masked_scatter ---------------------------

_REDUCES = ("none", "sum", "prod", "mean", "amax", "amin")


def _scatter(ts, a):
    x, idx, src = ts
    d = _nonneg_dim(a["dim"], max(x.rank, 1)) if x.rank else 0
    if a["reduce"] not in _REDUCES:
        raise ShapeError(f"reduce must be one of {', '.join(_REDUCES)}, got {a['reduce']!r}")
    if not idx.dtype.is_int or idx.rank != x.rank or src.rank != x.rank:
        raise ShapeError(f"scatter needs an integer index and a source of the rank of {x}, got {idx} and {src}")
    if any(idx.shape[i] > src.shape[i] or (i != d and idx.shape[i] > x.shape[i]) for i in range(x.rank)):
        raise ShapeError(f"index {idx} is larger than the source {src} or than {x} outside dim {d}")
    return [x]


defop(
    "scatter",
    "x index src",
    _scatter,
    attrs={"dim": "int", "reduce": AttrSpec("str", "none"), "include_self": AttrSpec("bool", True)},
    flops=lambda op: op.operands[1].type.numel,
    family=F,
    doc="a copy of x with x[index[i][j]][j] (for dim 0) set to src[i][j] (reduce = none) or combined with it "
    "by sum, prod, mean, amax or amin (include_self: whether x's own value takes part)",
    torch=("aten.scatter.src", "aten.scatter.value", "aten.scatter_add", "aten.scatter_reduce.two"),
)


def _index_put(ts, a):
    x, values, idxs = ts[0], ts[1], ts[2:]
    dims = a["dims"]
    if len(dims) != len(idxs) or not idxs or dims != sorted(set(dims)) or any(not 0 <= d < x.rank for d in dims):
        raise ShapeError(f"index_put needs one index per dim of increasing dims {dims} of {x}")
    for i in idxs:
        if not (i.dtype.is_int or i.dtype.is_bool):
            raise ShapeError(f"index operands must be integer or bool tensors, got {i}")
    if values.dtype != x.dtype:
        raise ShapeError(f"index_put values {values} must have the dtype of x, {x.dtype.value}")
    return [x]


defop(
    "index_put",
    "x values indices*",
    _index_put,
    attrs={"dims": "ints", "accumulate": AttrSpec("bool", False)},
    flops=lambda op: op.operands[1].type.numel,
    family=F,
    doc="a copy of x with x[key] = values, or += with accumulate; key is numpy's: index tensors at positions "
    "dims, full slices elsewhere; a k-d bool index is a mask over k dims",
    torch=("aten.index_put",),
)


def _slice_scatter(ts, a):
    x, src = ts
    (want,) = _slice([x], a)
    if src.shape != want.shape:
        raise ShapeError(f"source {src} does not fill the slice {want} of {x}")
    return [x]


defop(
    "slice_scatter",
    "x src",
    _slice_scatter,
    attrs={"dim": "int", "start": "int", "end": "int", "step": AttrSpec("int", 1)},
    family=F,
    doc="a copy of x with x[..., start:end:step, ...] along dim replaced by src",
    torch=("aten.slice_scatter", "aten.select_scatter"),
)


_STRIDED = {"size": "ints", "stride": "ints", "offset": AttrSpec("int", 0)}  # a strided view of the row-major elements


def _as_strided_scatter(ts, a):
    x, src = ts
    (want,) = _as_strided([x], a)
    if src.shape != want.shape or src.dtype != x.dtype:
        raise ShapeError(f"as_strided_scatter's source {src} does not fill the strided view {want} of {x}")
    if not strided_positions_distinct(a["size"], a["stride"]):
        raise ShapeError(
            f"as_strided_scatter with size {a['size']} and stride {a['stride']} writes some element twice "
            "(which write wins is not defined)"
        )
    return [x]


def strided_positions_distinct(size, stride) -> bool:
    """Whether a strided view names every element once: its dims of size > 1 by increasing stride, each stride
    past the span of the ones before (the layouts of views, transposes and windows; a rarer layout that is
    one-to-one in another way is reported as not)."""
    span = 0
    for n, st in sorted(((n, st) for n, st in zip(size, stride) if n > 1), key=lambda d: d[1]):
        if st <= span:
            return False
        span += (n - 1) * st
    return True


defop(
    "as_strided_scatter",
    "x src",
    _as_strided_scatter,
    attrs=_STRIDED,
    family=F,
    doc="a copy of x whose row-major elements offset + i * stride[0] + j * stride[1] + ... are src[i, j, ...]",
    torch=("aten.as_strided_scatter",),
)


def _masked_scatter(ts, a):
    x, mask, src = ts
    if mask.dtype is not DType.bool or broadcast(x.shape, mask.shape) != x.shape:
        raise ShapeError(f"masked_scatter needs a bool mask that broadcasts to {x}, got {mask}")
    return [x]


defop(
    "masked_scatter",
    "x mask source",
    _masked_scatter,
    family=F,
    doc="a copy of x whose elements where mask is true are, in row-major order, the first elements of source",
    torch=("aten.masked_scatter",),
)


# -- views with their own indexing --------------------------------------------------------------------


def _diagonal(ts, a):
    """x without dims dim1 and dim2, plus a last dim: the diagonal at offset"""
    t = ts[0]
    d1, d2, off = a["dim1"], a["dim2"], a["offset"]
    if t.rank < 2 or not (0 <= d1 < t.rank and 0 <= d2 < t.rank) or d1 == d2:
        raise ShapeError(f"diagonal needs two distinct dims of {t}, got {d1} and {d2}")
    n = max(0, min(t.shape[d1] + min(off, 0), t.shape[d2] - max(off, 0)))
    return [t.with_shape(tuple(s for i, s in enumerate(t.shape) if i not in (d1, d2)) + (n,))]


defop(
    "diagonal",
    "x",
    _diagonal,
    attrs={"offset": AttrSpec("int", 0), "dim1": AttrSpec("int", 0), "dim2": AttrSpec("int", 1)},
    family=F,
    doc="x[..., i, ..., i + offset, ...] over the dims dim1 and dim2, as a new last dim",
    torch=("aten.diagonal",),
)


def _as_strided(ts, a):
    t = ts[0]
    size, stride, off = a["size"], a["stride"], a["offset"]
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride) or off < 0:
        raise ShapeError(f"as_strided needs sizes and strides of one length, none negative, got {size}, {stride}")
    last = off + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else -1
    if last >= t.numel:
        raise ShapeError(f"as_strided reads element {last} of {t}, which has {t.numel} elements")
    return [t.with_shape(tuple(size))]


defop(
    "as_strided",
    "x",
    _as_strided,
    attrs=_STRIDED,
    family=F,
    doc="element [i, j, ...] is x's row-major element offset + i * stride[0] + j * stride[1] + ...",
    torch=("aten.as_strided",),
)
