"""Neural-network ops: matrix products, convolution, normalization, pooling, embedding."""

from __future__ import annotations

import math

from wafercc.ir import DType, TensorType

from .registry import AttrSpec, ShapeError, defop, out_numel
from .rules import broadcast, require_float

F = "nn"


def _same_dtype(*ts: TensorType) -> None:
    if len({t.dtype for t in ts}) != 1:
        raise ShapeError("operands must have one dtype, got " + ", ".join(str(t) for t in ts))


def _mm(ts, a):
    x, w = ts[0], ts[1]
    if x.rank != 2 or w.rank != 2 or x.shape[1] != w.shape[0]:
        raise ShapeError(f"mm needs [M, K] x [K, N], got {x} and {w}")
    _same_dtype(x, w)
    return [TensorType((x.shape[0], w.shape[1]), x.dtype)]


def _mm_flops(op):
    m, k = op.operands[-2].type.shape[-2:]
    return 2 * out_numel(op) * k


defop("mm", "a b", _mm, flops=_mm_flops, family=F, doc="matrix product [M, K] x [K, N] -> [M, N]", torch=("aten.mm",))


def _bmm(ts, a):
    x, w = ts
    if x.rank != 3 or w.rank != 3 or x.shape[0] != w.shape[0] or x.shape[2] != w.shape[1]:
        raise ShapeError(f"bmm needs [B, M, K] x [B, K, N], got {x} and {w}")
    _same_dtype(x, w)
    return [TensorType((x.shape[0], x.shape[1], w.shape[2]), x.dtype)]


defop(
    "bmm",
    "a b",
    _bmm,
    flops=_mm_flops,
    family=F,
    doc="batched matrix product [B, M, K] x [B, K, N] -> [B, M, N]",
    torch=("aten.bmm",),
)


def _addmm(ts, a):
    (out,) = _mm(ts[1:], a)
    _same_dtype(ts[0], out)
    if broadcast(ts[0].shape, out.shape) != out.shape:
        raise ShapeError(f"bias {ts[0]} does not broadcast to {out}")
    return [out]


defop(
    "addmm",
    "bias a b",
    _addmm,
    attrs={"beta": AttrSpec("float", 1), "alpha": AttrSpec("float", 1)},
    flops=_mm_flops,
    family=F,
    doc="beta * bias + alpha * (a @ b); the bias broadcasts to [M, N]",
    torch=("aten.addmm",),
)

# -- convolution ------------------------------------------------------------------------------


def _conv(ts, a):
    x, w = ts[0], ts[1]
    nsp = x.rank - 2
    if nsp < 1 or w.rank != x.rank:
        raise ShapeError(f"convolution needs a batched input [N, C, ...] and a weight of its rank, got {x} and {w}")
    _same_dtype(x, w)
    g = a["groups"]
    stride, pad, dil, opad = (_spatial(a[k], nsp, k) for k in ("stride", "padding", "dilation", "output_padding"))
    if g < 1 or min(stride) < 1 or min(dil) < 1 or min(pad) < 0 or min(opad) < 0:
        raise ShapeError(
            f"groups, stride and dilation must be >= 1 and padding and output_padding >= 0, got groups = {g}, "
            f"stride = {stride}, dilation = {dil}, padding = {pad}, output_padding = {opad}"
        )
    if a["transposed"]:
        cin, cout = w.shape[0], w.shape[1] * g
    else:
        cin, cout = w.shape[1] * g, w.shape[0]
    if x.shape[1] != cin or cout % g:
        raise ShapeError(f"input channels {x.shape[1]} do not fit weight {w} with groups = {g}")
    if len(ts) > 2 and ts[2].shape != (cout,):
        raise ShapeError(f"bias must be [{cout}], got {ts[2]}")
    out = [x.shape[0], cout]
    for i in range(nsp):
        n, k = x.shape[2 + i], w.shape[2 + i]
        if a["transposed"]:
            size = (n - 1) * stride[i] - 2 * pad[i] + dil[i] * (k - 1) + opad[i] + 1
        else:
            size = (n + 2 * pad[i] - dil[i] * (k - 1) - 1) // stride[i] + 1
        if size <= 0:
            raise ShapeError(f"spatial dim {i} of {x} is too small for kernel {k} (output size {size})")
        out.append(size)
    return [TensorType(tuple(out), x.dtype)]


def _spatial(v: list[int], n: int, name: str) -> list[int]:
    if len(v) == 1:
        return v * n
    if len(v) != n:
        raise ShapeError(f"{name} has {len(v)} entries for {n} spatial dims")
    return v


def _conv_flops(op):
    w = op.operands[1].type
    if op.attrs.get("transposed"):
        # Each input element scatters into Cout/groups * prod(k) outputs.
        return 2 * op.operands[0].type.numel * w.shape[1] * math.prod(w.shape[2:])
    return 2 * out_numel(op) * w.shape[1] * math.prod(w.shape[2:])


defop(
    "convolution",
    "input weight bias?",
    _conv,
    attrs={
        "stride": AttrSpec("ints", [1]),
        "padding": AttrSpec("ints", [0]),
        "dilation": AttrSpec("ints", [1]),
        "transposed": AttrSpec("bool", False),
        "output_padding": AttrSpec("ints", [0]),
        "groups": AttrSpec("int", 1),
    },
    flops=_conv_flops,
    family=F,
    doc="N-d cross-correlation (or its transpose) with zero padding, as aten.convolution",
    torch=("aten.convolution",),
)

# -- normalization ----------------------------------------------------------------------------


def _layer_norm(ts, a):
    x = ts[0]
    require_float(x, "layer_norm")
    ns = tuple(a["normalized_shape"])
    k = len(ns)
    if k == 0 or x.shape[x.rank - k :] != ns:
        raise ShapeError(f"normalized_shape {list(ns)} is not the trailing shape of {x}")
    for t in ts[1:]:
        if t.shape != ns:
            raise ShapeError(f"weight/bias {t} must have shape {list(ns)}")
    stat = x.with_shape(x.shape[: x.rank - k] + (1,) * k)
    return [x, stat, stat]


defop(
    "layer_norm",
    "input weight? bias?",
    _layer_norm,
    attrs={"normalized_shape": "ints", "eps": AttrSpec("float", 1e-5)},
    flops=lambda op: 8 * out_numel(op),
    family=F,
    num_results=3,
    doc="(x - mean) * rstd * weight + bias over the trailing normalized_shape; results: out, mean, rstd",
    torch=("aten.native_layer_norm",),
)


def _batch_norm(ts, a):
    x = ts[0]
    require_float(x, "batch_norm")
    if x.rank < 2:
        raise ShapeError(f"batch_norm needs [N, C, ...], got {x}")
    c = x.shape[1]
    for t in ts[1:]:
        if t.shape != (c,):
            raise ShapeError(f"statistics and affine parameters must be [{c}], got {t}")
    return [x]


defop(
    "batch_norm",
    "input running_mean running_var weight? bias?",
    _batch_norm,
    attrs={"eps": AttrSpec("float", 1e-5)},
    flops=lambda op: 4 * out_numel(op),
    family=F,
    doc="inference batch norm: (x - running_mean) / sqrt(running_var + eps) * weight + bias over dim 1",
    torch=("aten._native_batch_norm_legit_no_training",),
)


def _group_norm(ts, a):
    x = ts[0]
    require_float(x, "group_norm")
    g = a["groups"]
    if g < 1 or x.rank < 2 or x.shape[1] % g:
        raise ShapeError(f"group_norm needs [N, C, ...] with C divisible by groups = {g}, got {x}")
    for t in ts[1:]:
        if t.shape != (x.shape[1],):
            raise ShapeError(f"weight/bias must be [{x.shape[1]}], got {t}")
    stat = x.with_shape((x.shape[0], g))
    return [x, stat, stat]


defop(
    "group_norm",
    "input weight? bias?",
    _group_norm,
    attrs={"groups": "int", "eps": AttrSpec("float", 1e-5)},
    flops=lambda op: 8 * out_numel(op),
    family=F,
    num_results=3,
    doc="normalize over each group of C/groups channels (and all spatial dims); results: out, mean, rstd",
    torch=("aten.native_group_norm",),
)

# -- pooling ----------------------------------------------------------------------------------


def _pool_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    eff = d * (k - 1) + 1
    if ceil_mode:
        out = -(-(n + 2 * p - eff) // s) + 1
        if (out - 1) * s >= n + p:  # the last window would start in the right padding only
            out -= 1
    else:
        out = (n + 2 * p - eff) // s + 1
    return out


def _pool(ts, a, nsp: int, dilation: bool = True):
    """The pooled type of x = ts[0] over its last ``nsp`` dims ([N, C, *spatial] or [C, *spatial])."""
    x = ts[0]
    if x.rank not in (nsp + 1, nsp + 2):
        raise ShapeError(f"{nsp}-d pooling needs [N, C, {nsp} spatial dims] or [C, {nsp} spatial dims], got {x}")
    k = _spatial(a["kernel_size"], nsp, "kernel_size")
    s = _spatial(a["stride"] or k, nsp, "stride")
    p = _spatial(a["padding"], nsp, "padding")
    d = _spatial(a["dilation"], nsp, "dilation") if dilation else [1] * nsp
    if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ShapeError(
            "kernel_size, stride and dilation must be >= 1 and padding >= 0, got "
            f"kernel_size = {k}, stride = {s}, dilation = {d}, padding = {p}"
        )
    for i in range(nsp):
        if p[i] * 2 > k[i]:
            raise ShapeError(f"padding {p[i]} is more than half the kernel {k[i]}")
    sizes = tuple(_pool_size(x.shape[i - nsp], k[i], s[i], p[i], d[i], a["ceil_mode"]) for i in range(nsp))
    if min(sizes) <= 0:
        raise ShapeError(f"input {x} is too small for kernel {k}")
    return x.with_shape(x.shape[:-nsp] + sizes)


def _pool2d(ts, a, dilation=True):
    return _pool(ts, a, 2, dilation)


_POOL = {
    "kernel_size": "ints",
    "stride": AttrSpec("ints", []),
    "padding": AttrSpec("ints", [0]),
    "ceil_mode": AttrSpec("bool", False),
}


def _pool_flops(op):
    return out_numel(op) * math.prod(op.attrs["kernel_size"]) * (4 // len(op.attrs["kernel_size"]))


def _pool3d_flops(op):
    k = op.attrs["kernel_size"]
    return out_numel(op) * (k[0] ** 3 if len(k) == 1 else math.prod(k))


def _max_pool2d(ts, a):
    out = _pool2d(ts, a)
    return [out, out.with_dtype(DType.i64)]


defop(
    "max_pool2d",
    "x",
    _max_pool2d,
    attrs={**_POOL, "dilation": AttrSpec("ints", [1])},
    flops=_pool_flops,
    family=F,
    num_results=2,
    doc="2-d max pooling (padding counts as -inf); results: values and flat H*W indices of the maxima",
    torch=("aten.max_pool2d_with_indices",),
)
defop(
    "avg_pool2d",
    "x",
    lambda ts, a: [_pool2d(ts, a, dilation=False)],
    attrs={**_POOL, "count_include_pad": AttrSpec("bool", True), "divisor_override": AttrSpec("int?", None)},
    flops=_pool_flops,
    family=F,
    doc="2-d average pooling, as aten.avg_pool2d",
    torch=("aten.avg_pool2d",),
)


def _max_pool3d(ts, a):
    out = _pool(ts, a, 3)
    return [out, out.with_dtype(DType.i64)]


defop(
    "max_pool3d",
    "x",
    _max_pool3d,
    attrs={**_POOL, "dilation": AttrSpec("ints", [1])},
    flops=_pool3d_flops,
    family=F,
    num_results=2,
    doc="3-d max pooling (padding counts as -inf); results: values and flat D*H*W indices of the maxima",
    torch=("aten.max_pool3d_with_indices",),
)


def _avg_pool3d(ts, a):
    out = _pool(ts, a, 3, dilation=False)
    k = _spatial(a["kernel_size"], 3, "kernel_size")
    if any(n < kk for n, kk in zip(ts[0].shape[-3:], k)):  # ATen's avg_pool3d check, padding not counted
        raise ShapeError(f"input {ts[0]} is smaller than the kernel {k}")
    return [out]


defop(
    "avg_pool3d",
    "x",
    _avg_pool3d,
    attrs={**_POOL, "count_include_pad": AttrSpec("bool", True), "divisor_override": AttrSpec("int?", None)},
    flops=_pool3d_flops,
    family=F,
    doc="3-d average pooling, as aten.avg_pool3d (divisor: the window's size within input + padding, or its "
    "in-bounds size without count_include_pad, or divisor_override)",
    torch=("aten.avg_pool3d",),
)


def _adaptive(ts, a):
    x = ts[0]
    size = a["output_size"]
    if not size:
        raise ShapeError("output_size must name at least one spatial size")
    if min(size) <= 0:
        raise ShapeError(f"output_size {size} must have sizes >= 1")
    if x.rank not in (len(size) + 1, len(size) + 2):
        raise ShapeError(f"adaptive pooling to {size} needs a [N, C, spatial] input, got {x}")
    return [x.with_shape(x.shape[: x.rank - len(size)] + tuple(size))]


defop(
    "adaptive_avg_pool2d",
    "x",
    _adaptive,
    attrs={"output_size": "ints"},
    flops=lambda op: op.operands[0].type.numel,
    family=F,
    doc="average over the adaptive windows [floor(i*H/h), ceil((i+1)*H/h))",
    torch=("aten._adaptive_avg_pool2d",),
)


def _adaptive3d(ts, a):
    if len(a["output_size"]) != 3:
        raise ShapeError(f"adaptive_avg_pool3d needs a 3-entry output_size, got {a['output_size']}")
    return _adaptive(ts, a)


defop(
    "adaptive_avg_pool3d",
    "x",
    _adaptive3d,
    attrs={"output_size": "ints"},
    flops=lambda op: op.operands[0].type.numel,
    family=F,
    doc="average over the adaptive windows [floor(i*D/d), ceil((i+1)*D/d)) along each of the 3 spatial dims",
    torch=("aten._adaptive_avg_pool3d",),
)


def _upsample(ts, a):
    x = ts[0]
    if x.rank != 4 or len(a["output_size"]) != 2:
        raise ShapeError(
            "upsample_nearest2d needs [N, C, H, W] and a 2-entry output_size, "
            f"got {x} and output_size {a['output_size']}"
        )
    return [x.with_shape(x.shape[:2] + tuple(a["output_size"]))]


defop(
    "upsample_nearest2d",
    "x",
    _upsample,
    attrs={"output_size": "ints", "scales": AttrSpec("any", None)},
    family=F,
    doc="nearest-neighbour resize: source index floor(i / scale), scale = scales[d] if given (torch uses the "
    "user's scale factor), else out / in",
    torch=("aten.upsample_nearest2d",),
)


def _embedding(ts, a):
    w, idx = ts
    if w.rank != 2 or not idx.dtype.is_int:
        raise ShapeError(f"embedding needs a [V, D] table and integer indices, got {w} and {idx}")
    return [w.with_shape(idx.shape + (w.shape[1],))]


defop(
    "embedding",
    "weight indices",
    _embedding,
    attrs={"padding_idx": AttrSpec("int", -1)},
    family=F,
    doc="rows of weight picked by indices: result[..., :] = weight[indices[...], :]",
    torch=("aten.embedding",),
)


def _upsample_bilinear(ts, a):
    x = ts[0]
    if x.rank != 4 or len(a["output_size"]) != 2 or min(a["output_size"]) < 0:
        raise ShapeError(
            "upsample_bilinear2d needs [N, C, H, W] and a 2-entry output_size of sizes >= 0, "
            f"got {x} and output_size {a['output_size']}"
        )
    return [x.with_shape(x.shape[:2] + tuple(a["output_size"]))]


defop(
    "upsample_bilinear2d",
    "x",
    _upsample_bilinear,
    attrs={"output_size": "ints", "align_corners": AttrSpec("bool", False), "scales": AttrSpec("any", None)},
    flops=lambda op: 8 * out_numel(op),
    family=F,
    doc="bilinear resize; source coordinate i * (in - 1) / (out - 1) with align_corners, else "
    "max((i + 0.5) / scale - 0.5, 0), scale = scales[d] if given, else out / in",
    torch=("aten.upsample_bilinear2d",),
)


GRID_INTERPOLATION = ("bilinear", "nearest", "bicubic")  # aten's interpolation_mode 0, 1, 2
GRID_PADDING = ("zeros", "border", "reflection")  # aten's padding_mode 0, 1, 2


def _grid_sampler_2d(ts, a):
    x, grid = ts
    require_float(x, "grid_sampler_2d")
    if x.rank != 4 or grid.rank != 4 or grid.shape[3] != 2 or grid.shape[0] != x.shape[0]:
        raise ShapeError(f"grid_sampler_2d needs input [N, C, H, W] and grid [N, H_out, W_out, 2], got {x} and {grid}")
    _same_dtype(x, grid)
    if a["interpolation"] not in GRID_INTERPOLATION:
        raise ShapeError(f"interpolation must be one of {', '.join(GRID_INTERPOLATION)}, got {a['interpolation']!r}")
    if a["padding_mode"] not in GRID_PADDING:
        raise ShapeError(f"padding_mode must be one of {', '.join(GRID_PADDING)}, got {a['padding_mode']!r}")
    return [x.with_shape(x.shape[:2] + grid.shape[1:3])]


defop(
    "grid_sampler_2d",
    "x grid",
    _grid_sampler_2d,
    attrs={
        "interpolation": AttrSpec("str", "bilinear"),
        "padding_mode": AttrSpec("str", "zeros"),
        "align_corners": AttrSpec("bool", False),
    },
    flops=lambda op: 32 * out_numel(op),
    family=F,
    doc="sample x at grid's (x, y) points in [-1, 1] (F.grid_sample): source coordinate (g + 1) / 2 * (size - 1) "
    "with align_corners, else ((g + 1) * size - 1) / 2; interpolation bilinear, nearest (half to even) or "
    "bicubic (A = -0.75); points outside read zeros, the border, or the input reflected at its edges",
    torch=("aten.grid_sampler_2d",),
)
