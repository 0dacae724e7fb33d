"""Data-movement kernels: views, permutations, slicing, concatenation, gathers, padding, sorting.

Most results are numpy views of their operand (no copy); that is safe because no kernel writes into
its arguments. Attributes arrive normalized (non-negative dims, clamped slices, views without -1).
"""

from __future__ import annotations

import numpy as np

from wafercc.ops.shape import strided_positions_distinct

from .base import attr, cast, finish, kernel, out_dtype, up


@kernel("view")
def _view(op, x):
    return x.reshape(attr(op, "shape"))


@kernel("permute")
def _permute(op, x):
    return x.transpose(attr(op, "dims"))


@kernel("expand")
def _expand(op, x):
    return np.broadcast_to(x, attr(op, "shape"))


@kernel("slice")
def _slice(op, x):
    d = attr(op, "dim")
    key = (slice(None),) * d + (slice(attr(op, "start"), attr(op, "end"), attr(op, "step")),)
    return x[key]


@kernel("select")
def _select(op, x):
    return np.asarray(x[(slice(None),) * attr(op, "dim") + (attr(op, "index"),)])


@kernel("unsqueeze")
def _unsqueeze(op, x):
    return np.expand_dims(x, attr(op, "dim"))


@kernel("squeeze")
def _squeeze(op, x):
    dims = attr(op, "dims") or range(x.ndim)
    return x.squeeze(tuple(d for d in dims if x.shape[d] == 1))


@kernel("cat")
def _cat(op, *xs):
    dt = out_dtype(op)
    return np.concatenate([cast(x, dt) for x in xs], axis=attr(op, "dim"))


@kernel("split")
def _split(op, x):
    d = attr(op, "dim")
    return tuple(np.split(x, np.cumsum(attr(op, "sizes"))[:-1], axis=d))


@kernel("gather")
def _gather(op, x, index):
    d = attr(op, "dim")
    # torch lets the index be smaller than x outside dim; take_along_axis wants equal sizes there.
    x = x[tuple(slice(None) if i == d else slice(0, n) for i, n in enumerate(index.shape))]
    return np.take_along_axis(x, index, axis=d)


@kernel("index_select")
def _index_select(op, x, index):
    return np.take(x, index.reshape(-1), axis=attr(op, "dim"))


@kernel("index")
def _index(op, x, *indices):
    # numpy's rule matches torch's: adjacent index dims stay in place, separated ones go first.
    key = [slice(None)] * x.ndim
    for d, i in zip(attr(op, "dims"), indices):
        key[d] = i
    return np.asarray(x[tuple(key)])


@kernel("flip")
def _flip(op, x):
    return np.flip(x, axis=tuple(attr(op, "dims")))


@kernel("pad")
def _pad(op, x):
    pad = attr(op, "pad")
    crop = [slice(None)] * x.ndim
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        d = x.ndim - 1 - i
        before, after = pad[2 * i], pad[2 * i + 1]
        # Negative padding crops; crop first, then pad what is positive.
        crop[d] = slice(max(0, -before), x.shape[d] - max(0, -after))
        widths[d] = (max(0, before), max(0, after))
    y = x[tuple(crop)]
    if not any(map(any, widths)):
        return y
    return np.pad(y, widths, constant_values=cast(np.asarray(attr(op, "value")), x.dtype))


def _descending_order(v: np.ndarray, axis: int) -> np.ndarray:
    """Stable descending argsort: ties keep their original order, NaN first (torch treats NaN as largest)."""
    flipped = np.flip(v, axis=axis)
    order = np.argsort(flipped, axis=axis, kind="stable")
    return v.shape[axis] - 1 - np.flip(order, axis=axis)


def _order(x: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    v = up(x)
    if descending:
        return _descending_order(v, axis)
    return np.argsort(v, axis=axis, kind="stable")  # NaN sorts last, as in torch


@kernel("sort")
def _sort(op, x):
    if x.ndim == 0:
        return x, np.zeros((), np.int64)
    d = attr(op, "dim")
    idx = _order(x, d, attr(op, "descending"))
    return np.take_along_axis(x, idx, axis=d), idx


@kernel("topk")
def _topk(op, x):
    k = attr(op, "k")
    if x.ndim == 0:
        return x, np.zeros((), np.int64)
    d = attr(op, "dim")
    idx = _order(x, d, attr(op, "largest"))
    idx = idx[(slice(None),) * d + (slice(0, k),)]
    return np.take_along_axis(x, idx, axis=d), idx


@kernel("triu")
def _triu(op, x):
    return np.triu(x, attr(op, "diagonal"))


@kernel("tril")
def _tril(op, x):
    return np.tril(x, attr(op, "diagonal"))


@kernel("repeat")
def _repeat(op, x):
    return np.tile(x, attr(op, "repeats"))


# -- writes into a copy ------------------------------------------------------------------------------


def _scatter_key(index: np.ndarray, d: int) -> tuple:
    """The full index of each element of ``index`` in x: index's own coordinates, with dim d from its values."""
    grid = list(np.indices(index.shape, sparse=True))
    grid[d] = index
    return tuple(grid)


_UFUNC = {"sum": np.add, "prod": np.multiply, "amax": np.fmax, "amin": np.fmin}
_IDENTITY = {"sum": 0, "mean": 0, "prod": 1, "amax": -np.inf, "amin": np.inf}


@kernel("scatter")
def _scatter(op, x, index, src):
    d, reduce, include = attr(op, "dim"), attr(op, "reduce"), attr(op, "include_self")
    if x.ndim == 0:
        x, index, src = x.reshape(1), index.reshape(1), src.reshape(1)
    _check_bounds(index, x.shape[d])
    src = src[tuple(slice(0, n) for n in index.shape)]  # torch reads only the index's extent of src
    key = _scatter_key(index, d)
    v = up(x)
    out = np.array(v, copy=True)
    s = cast(src, out.dtype)
    if reduce == "none":
        out[key] = s
        return cast(out, x.dtype).reshape(op.results[0].type.shape)
    if not include:
        out[key] = (
            _IDENTITY[reduce]
            if out.dtype.kind == "f" or reduce in ("sum", "mean", "prod")
            else (np.iinfo(out.dtype).min if reduce == "amax" else np.iinfo(out.dtype).max)
        )
    if reduce == "mean":
        np.add.at(out, key, s)
        count = np.full(out.shape, 1 if include else 0, np.int64)
        np.add.at(count, key, 1)
        touched = np.zeros(out.shape, bool)
        touched[key] = True
        count = np.maximum(count, 1)
        div = out / count if out.dtype.kind == "f" else np.floor_divide(out, count)
        out = np.where(touched, div, v)
    else:
        fn = _UFUNC[reduce]
        if reduce in ("amax", "amin") and out.dtype.kind == "f":
            fn = np.maximum if reduce == "amax" else np.minimum  # NaN propagates, as torch's scatter_reduce
        fn.at(out, key, s)
    return finish(op, out.reshape(op.results[0].type.shape))


def _check_bounds(index: np.ndarray, n: int) -> None:
    if index.size and (index.min() < -n or index.max() >= n):
        raise IndexError(
            f"index {int(index.max() if index.max() >= n else index.min())} is out of bounds for a dim of size {n}"
        )
    if index.size and index.min() < 0:
        raise IndexError(f"index {int(index.min())} is negative (torch's scatter does not wrap)")


@kernel("index_put")
def _index_put(op, x, values, *indices):
    # dims are positions in ATen's index list (numpy's key): a k-d bool mask there covers k dims of x.
    key: list = [slice(None)] * (max(attr(op, "dims")) + 1)
    for d, i in zip(attr(op, "dims"), indices):
        key[d] = i
    out = _copy_of(x)
    v = cast(values, x.dtype)
    if attr(op, "accumulate"):
        k = tuple(key)
        target = out[k]
        np.add.at(out, k, np.broadcast_to(v, target.shape))
    else:
        out[tuple(key)] = v
    return out


def _copy_of(x: np.ndarray) -> np.ndarray:
    """A writable copy of x; of an all-zero-bits x (the zeros an embedding's backward accumulates into, 154 MB
    for GPT-2's vocabulary) a calloc'd one, whose pages cost nothing until written: the scan reads x once, the
    copy would read it and write every page."""
    if x.size >= 1 << 20 and x.dtype.kind in "fiub" and x.dtype.itemsize in (1, 2, 4, 8):
        bits = x.view(np.dtype(f"u{x.dtype.itemsize}")) if x.dtype.kind != "b" else x
        if not bits.any():
            return np.zeros(x.shape, x.dtype)
    return np.array(x, copy=True)


@kernel("slice_scatter")
def _slice_scatter(op, x, src):
    d = attr(op, "dim")
    out = np.array(x, copy=True)
    out[(slice(None),) * d + (slice(attr(op, "start"), attr(op, "end"), attr(op, "step")),)] = cast(src, x.dtype)
    return out


@kernel("masked_scatter")
def _masked_scatter(op, x, mask, source):
    m = np.broadcast_to(mask, x.shape)
    n = int(np.count_nonzero(m))
    if n > source.size:
        raise ValueError(f"masked_scatter: the mask selects {n} elements, the source has {source.size}")
    out = np.array(x, copy=True)
    out[m] = cast(source.reshape(-1)[:n], x.dtype)
    return out


@kernel("diagonal")
def _diagonal(op, x):
    return np.diagonal(x, attr(op, "offset"), attr(op, "dim1"), attr(op, "dim2"))


@kernel("as_strided_scatter")
def _as_strided_scatter(op, x, src):
    size, stride = attr(op, "size"), attr(op, "stride")
    if not strided_positions_distinct(size, stride):  # two writes to one element: which one wins is not defined
        raise ValueError(f"as_strided_scatter with size {size} and stride {stride} writes some element twice")
    out = np.array(x, order="C")  # a copy
    if all(size):
        flat = out.reshape(-1)[attr(op, "offset") :]
        view = np.lib.stride_tricks.as_strided(flat, shape=size, strides=[s * flat.itemsize for s in stride])
        view[...] = src
    return out


@kernel("as_strided")
def _as_strided(op, x):
    flat = np.ascontiguousarray(x).reshape(-1)
    size, stride = attr(op, "size"), attr(op, "stride")
    item = flat.itemsize
    base = flat[attr(op, "offset") :]
    if not all(size):
        return np.zeros(size, x.dtype)
    return np.lib.stride_tricks.as_strided(base, shape=size, strides=[s * item for s in stride], writeable=False)
