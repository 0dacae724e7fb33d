"""The ATen → WIR table: one converter per core-ATen overload.

A converter takes the import context and the node's arguments (tensors already mapped to WIR values,
everything else as torch gave it) and returns the WIR value(s) for the node. Converters normalize
arguments into the op table's one form: non-negative dims, clamped slices, no -1 in shapes, scalars as
typed 0-d constants, ATen's ``alpha`` folded into a ``mul``.
"""

from __future__ import annotations

import operator

import torch
import torch.fx

from wafercc.errors import UnsupportedOpError
from wafercc.ir import DType, Value
from wafercc.ops.nn import GRID_INTERPOLATION, GRID_PADDING
from wafercc.ops.shape import strided_positions_distinct

from .context import TORCH_DTYPES, Ctx, ImportBug, scalar_dtype

aten = torch.ops.aten

CONVERTERS: dict = {}
# Nodes that carry no computation in an inference graph.
IGNORED = {aten._assert_tensor_metadata.default}


def conv(*targets):
    def register(fn):
        for t in targets:
            CONVERTERS[t] = fn
        return fn

    return register


def _dim(d: int, rank: int) -> int:
    return d % rank if rank else 0


def _dims(dims, rank: int) -> list[int]:
    if dims is None:
        return []
    if isinstance(dims, int):
        dims = [dims]
    return sorted(_dim(d, rank) for d in dims)


# -- elementwise ------------------------------------------------------------------------------

_UNARY = [
    "neg",
    "abs",
    "sign",
    "floor",
    "ceil",
    "trunc",
    "relu",
    "bitwise_not",
    "exp",
    "exp2",
    "expm1",
    "log",
    "log2",
    "log10",
    "log1p",
    "sqrt",
    "rsqrt",
    "reciprocal",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "erf",
    "sigmoid",
    "silu",
    "hardsigmoid",
    "hardswish",
    "mish",
    "isnan",
    "isinf",
    "logical_not",
    "acosh",
    "asinh",
    "atanh",
    "lgamma",
    "digamma",
    "signbit",
]


def _unary(name):
    return lambda ctx, x: ctx.emit1(name, [x])


for _n in _UNARY:
    CONVERTERS[getattr(aten, _n).default] = _unary(_n)


@conv(aten.round.default)
def _round(ctx, x):
    return ctx.emit1("round", [x])


@conv(aten.clone.default, aten.alias.default, aten.lift_fresh_copy.default, aten.detach.default)
def _identity(ctx, x, **_):
    # A functional graph never mutates, so a copy or alias is the value itself.
    return x


@conv(aten._to_copy.default)
def _to_copy(ctx, x, dtype=None, **_):
    if dtype is None or TORCH_DTYPES[dtype] == x.type.dtype:
        return x
    return ctx.emit1("convert", [x], {"dtype": TORCH_DTYPES[dtype]})


@conv(aten.gelu.default)
def _gelu(ctx, x, approximate="none"):
    return ctx.emit1("gelu", [x], {"approximate": approximate} if approximate != "none" else {})


@conv(aten.leaky_relu.default)
def _leaky_relu(ctx, x, negative_slope=0.01):
    return ctx.emit1("leaky_relu", [x], {"negative_slope": float(negative_slope)})


@conv(aten.elu.default)
def _elu(ctx, x, alpha=1.0, scale=1.0, input_scale=1.0):
    return ctx.emit1("elu", [x], {"alpha": float(alpha), "scale": float(scale), "input_scale": float(input_scale)})


@conv(aten.softplus.default)
def _softplus(ctx, x, beta=1.0, threshold=20.0):
    return ctx.emit1("softplus", [x], {"beta": float(beta), "threshold": float(threshold)})


@conv(aten.hardtanh.default)
def _hardtanh(ctx, x, min_val=-1.0, max_val=1.0):
    return ctx.emit1("clamp", [x], {"min": min_val, "max": max_val})


@conv(aten.clamp.default)
def _clamp(ctx, x, min=None, max=None):
    return ctx.emit1("clamp", [x], {"min": min, "max": max})


def _binary(name):
    def convert(ctx: Ctx, a, b, alpha=1):
        if not isinstance(a, Value):  # scalar first (pow.Scalar): type it by the tensor operand
            a = ctx.constant(a, scalar_dtype(a, b.type.dtype))
        b = ctx.scalar_operand(b, a)
        if alpha != 1:  # add/sub: a + alpha * b
            b = ctx.emit1("mul", [b, ctx.scalar_operand(alpha, b)])
        return ctx.emit1(name, [a, b])

    return convert


for _n, _wir in [
    ("add", "add"),
    ("sub", "sub"),
    ("mul", "mul"),
    ("remainder", "remainder"),
    ("fmod", "fmod"),
    ("maximum", "maximum"),
    ("minimum", "minimum"),
    ("atan2", "atan2"),
    ("eq", "eq"),
    ("ne", "ne"),
    ("lt", "lt"),
    ("le", "le"),
    ("gt", "gt"),
    ("ge", "ge"),
    ("bitwise_and", "bitwise_and"),
    ("bitwise_or", "bitwise_or"),
    ("bitwise_xor", "bitwise_xor"),
    ("logical_and", "logical_and"),
    ("logical_or", "logical_or"),
    ("logical_xor", "logical_xor"),
]:
    packet = getattr(aten, _n)
    for _ov in ("Tensor", "Scalar", "default"):
        if _ov in packet.overloads():
            CONVERTERS[getattr(packet, _ov)] = _binary(_wir)
for _ov in ("Tensor_Tensor", "Tensor_Scalar", "Scalar"):
    CONVERTERS[getattr(aten.pow, _ov)] = _binary("pow")


@conv(aten.div.Tensor, aten.div.Scalar, aten.div.Tensor_mode, aten.div.Scalar_mode)
def _div(ctx, a, b, rounding_mode=None):
    b = ctx.scalar_operand(b, a)
    return ctx.emit1("div", [a, b], {"rounding_mode": rounding_mode} if rounding_mode else {})


@conv(aten.where.self)
def _where(ctx, cond, a, b):
    if not isinstance(a, Value):
        a = ctx.scalar_operand(a, b)
    b = ctx.scalar_operand(b, a)
    return ctx.emit1("where", [cond, a, b])


# -- run-time assertions ----------------------------------------------------------------------


@conv(aten._assert_async.default, aten._assert_async.msg)
def _assert_async(ctx, cond, msg=""):
    ctx.emit1("check", [cond], {"message": str(msg)} if msg else {})


@conv(aten._assert_scalar.default)
def _assert_scalar(ctx, cond, msg=""):
    # Shapes are static, so the condition reached the importer as a Python value. One that holds costs
    # nothing; one that fails still fails when the model runs, as it would in torch, not at compile time.
    if not cond:
        _false_check(ctx, str(msg) or "assertion failed")


@conv(aten.sym_constrain_range.default, aten.sym_constrain_range_for_size.default)
def _constrain_range(ctx, size, min=None, max=None):
    lo = 0 if min is None and ctx.node.target is aten.sym_constrain_range_for_size.default else min
    if (lo is not None and size < lo) or (max is not None and size > max):
        _false_check(ctx, f"{size} is outside the range [{lo}, {max}] the model constrains it to")


def _false_check(ctx, message: str):
    ctx.emit1("check", [ctx.constant(False, DType.bool)], {"message": message})


# -- reductions -------------------------------------------------------------------------------


def _reduction(name, has_dtype=True):
    def convert(ctx, x, dim=None, keepdim=False, dtype=None):
        attrs = {"dims": _dims(dim, x.type.rank), "keepdim": keepdim}
        if has_dtype and dtype is not None:
            attrs["dtype"] = TORCH_DTYPES[dtype]
        return ctx.emit1(name, [x], attrs)

    return convert


CONVERTERS[aten.sum.dim_IntList] = _reduction("sum")
CONVERTERS[aten.mean.dim] = _reduction("mean")
CONVERTERS[aten.amax.default] = _reduction("amax", False)
CONVERTERS[aten.amin.default] = _reduction("amin", False)
for _n in ("any", "all"):
    for _ov in ("dim", "dims", "default"):
        if _ov in getattr(aten, _n).overloads():
            CONVERTERS[getattr(getattr(aten, _n), _ov)] = _reduction(_n, False)


@conv(aten.sum.default, aten.mean.default)
def _reduce_all(ctx, x, dtype=None):
    name = "sum" if ctx.node.target is aten.sum.default else "mean"
    return ctx.emit1(name, [x], {"dims": [], **({"dtype": TORCH_DTYPES[dtype]} if dtype else {})})


@conv(aten.prod.dim_int, aten.prod.default)
def _prod(ctx, x, dim=None, keepdim=False, dtype=None):
    attrs = {"dims": _dims(dim, x.type.rank), "keepdim": keepdim}
    if dtype is not None:
        attrs["dtype"] = TORCH_DTYPES[dtype]
    return ctx.emit1("prod", [x], attrs)


@conv(aten.var.correction)
def _var(ctx, x, dim=None, correction=None, keepdim=False):
    c = 1 if correction is None else correction
    return ctx.emit1("var", [x], {"dims": _dims(dim, x.type.rank), "keepdim": keepdim, "correction": c})


@conv(aten.argmax.default, aten.argmin.default)
def _arg(ctx, x, dim=None, keepdim=False):
    name = "argmax" if ctx.node.target is aten.argmax.default else "argmin"
    return ctx.emit1(name, [x], {"dim": None if dim is None else _dim(dim, x.type.rank), "keepdim": keepdim})


@conv(aten.max.dim, aten.min.dim)
def _minmax_dim(ctx, x, dim, keepdim=False):
    name = "max_dim" if ctx.node.target is aten.max.dim else "min_dim"
    return ctx.emit(name, [x], {"dim": _dim(dim, x.type.rank), "keepdim": keepdim})


@conv(aten.cumsum.default, aten.cumprod.default)
def _scan(ctx, x, dim, dtype=None):
    name = "cumsum" if ctx.node.target is aten.cumsum.default else "cumprod"
    attrs = {"dim": _dim(dim, x.type.rank)}
    if dtype is not None:
        attrs["dtype"] = TORCH_DTYPES[dtype]
    return ctx.emit1(name, [x], attrs)


@conv(aten._softmax.default, aten._log_softmax.default)
def _softmax(ctx, x, dim, half_to_float=False):
    name = "softmax" if ctx.node.target is aten._softmax.default else "log_softmax"
    y = ctx.emit1(name, [x], {"dim": _dim(dim, x.type.rank)})
    if half_to_float and y.type.dtype != DType.f32:
        y = ctx.emit1("convert", [y], {"dtype": DType.f32})
    return y


# -- nn ---------------------------------------------------------------------------------------


@conv(aten.mm.default)
def _mm(ctx, a, b):
    return ctx.emit1("mm", [a, b])


@conv(aten.bmm.default)
def _bmm(ctx, a, b):
    return ctx.emit1("bmm", [a, b])


@conv(aten.addmm.default)
def _addmm(ctx, bias, a, b, beta=1, alpha=1):
    attrs = {}
    if beta != 1:
        attrs["beta"] = beta
    if alpha != 1:
        attrs["alpha"] = alpha
    return ctx.emit1("addmm", [bias, a, b], attrs)


@conv(aten.convolution.default)
def _convolution(ctx, x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    attrs = {"stride": list(stride), "padding": list(padding), "dilation": list(dilation), "groups": groups}
    if transposed:
        attrs["transposed"] = True
        attrs["output_padding"] = list(output_padding)
    return ctx.emit1("convolution", [x, w] + ([bias] if bias is not None else []), attrs)


def _optional_trailing(*vals):
    """Optional trailing operands are given by count; a missing one before a present one is materialized."""
    vals = list(vals)
    while vals and vals[-1] is None:
        vals.pop()
    return vals


@conv(aten.native_layer_norm.default)
def _layer_norm(ctx, x, normalized_shape, weight, bias, eps):
    if weight is None and bias is not None:
        weight = ctx.emit1("full", [], {"shape": list(normalized_shape), "value": 1.0, "dtype": x.type.dtype})
    ops = [x] + _optional_trailing(weight, bias)
    return ctx.emit("layer_norm", ops, {"normalized_shape": list(normalized_shape), "eps": float(eps)})


@conv(aten._native_batch_norm_legit_no_training.default)
def _batch_norm(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
    if weight is None and bias is not None:
        weight = ctx.emit1("full", [], {"shape": [x.type.shape[1]], "value": 1.0, "dtype": x.type.dtype})
    ops = [x, running_mean, running_var] + _optional_trailing(weight, bias)
    out = ctx.emit1("batch_norm", ops, {"eps": float(eps)})
    return [out, *_saved_stats_in_inference(ctx, x)]


def _saved_stats_in_inference(ctx, x) -> list:
    """ATen's saved mean and rstd (results 1 and 2) of batch norm in inference: empty [0] tensors, made
    only if the model reads them (a model returning them gets the same empty tensors as eager)."""
    used = {u.args[1] for u in ctx.node.users if u.target is operator.getitem} if ctx.node is not None else set()

    def empty():
        return ctx.emit1("full", [], {"shape": [0], "value": 0.0, "dtype": x.type.dtype})

    return [empty() if i in used else None for i in (1, 2)]


@conv(aten.native_batch_norm.default)
def _native_batch_norm(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
    # torch.fx capture of batch norm in eval mode: the same computation as the export path's op.
    if training or running_mean is None:
        raise ImportBug("batch norm in training mode reached the importer; capture calls model.eval()")
    return _batch_norm(ctx, x, weight, bias, running_mean, running_var, momentum, eps)


@conv(aten.native_group_norm.default)
def _group_norm(ctx, x, weight, bias, n, c, hw, group, eps):
    if weight is None and bias is not None:
        weight = ctx.emit1("full", [], {"shape": [c], "value": 1.0, "dtype": x.type.dtype})
    ops = [x] + _optional_trailing(weight, bias)
    return ctx.emit("group_norm", ops, {"groups": group, "eps": float(eps)})


@conv(aten.max_pool2d_with_indices.default, aten.max_pool3d_with_indices.default)
def _max_pool(ctx, x, kernel_size, stride=(), padding=(0,), dilation=(1,), ceil_mode=False):
    attrs = {
        "kernel_size": list(kernel_size),
        "stride": list(stride) or list(kernel_size),
        "padding": list(padding),
        "dilation": list(dilation),
        "ceil_mode": ceil_mode,
    }
    return ctx.emit(_pool_kind(ctx, "max_pool"), [x], attrs)


def _pool_kind(ctx, stem: str) -> str:
    """'max_pool2d' or 'max_pool3d' (avg_pool...): by the ATen op being converted."""
    return stem + ("3d" if "3d" in str(ctx.node.target) else "2d")


@conv(aten.avg_pool2d.default, aten.avg_pool3d.default)
def _avg_pool(
    ctx, x, kernel_size, stride=(), padding=(0,), ceil_mode=False, count_include_pad=True, divisor_override=None
):
    attrs = {
        "kernel_size": list(kernel_size),
        "stride": list(stride) or list(kernel_size),
        "padding": list(padding),
        "ceil_mode": ceil_mode,
        "count_include_pad": count_include_pad,
        "divisor_override": divisor_override,
    }
    return ctx.emit1(_pool_kind(ctx, "avg_pool"), [x], attrs)


@conv(aten._adaptive_avg_pool2d.default)
def _adaptive_avg_pool2d(ctx, x, output_size):
    return ctx.emit1("adaptive_avg_pool2d", [x], {"output_size": list(output_size)})


@conv(aten._adaptive_avg_pool3d.default)
def _adaptive_avg_pool3d(ctx, x, output_size):
    return ctx.emit1("adaptive_avg_pool3d", [x], {"output_size": list(output_size)})


@conv(aten.grid_sampler_2d.default)
def _grid_sampler_2d(ctx, x, grid, interpolation_mode, padding_mode, align_corners):
    attrs = {
        "interpolation": GRID_INTERPOLATION[interpolation_mode],
        "padding_mode": GRID_PADDING[padding_mode],
        "align_corners": bool(align_corners),
    }
    return ctx.emit1("grid_sampler_2d", [x, grid], attrs)


@conv(aten.upsample_nearest2d.vec, aten.upsample_nearest2d.default)
def _upsample_nearest2d(ctx, x, output_size=None, scale_factors=None, *rest):
    size = list(ctx.meta_type().shape[2:])  # torch resolved scale factors to a size
    attrs = {"output_size": size}
    if scale_factors:  # torch picks source pixels by the user's factor, which can differ from out / in
        attrs["scales"] = [float(f) for f in scale_factors]
    return ctx.emit1("upsample_nearest2d", [x], attrs)


@conv(aten.embedding.default)
def _embedding(ctx, weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    return ctx.emit1("embedding", [weight, indices], {"padding_idx": padding_idx} if padding_idx != -1 else {})


# -- shape ------------------------------------------------------------------------------------


@conv(aten.view.default, aten._unsafe_view.default, aten.reshape.default)
def _view(ctx, x, size):
    shape = list(ctx.meta_type().shape)  # torch resolved any -1
    if tuple(shape) == x.type.shape:
        return x
    return ctx.emit1("view", [x], {"shape": shape})


@conv(aten.permute.default)
def _permute(ctx, x, dims):
    return ctx.emit1("permute", [x], {"dims": [_dim(d, x.type.rank) for d in dims]})


@conv(aten.expand.default)
def _expand(ctx, x, size, implicit=False):
    return ctx.emit1("expand", [x], {"shape": list(ctx.meta_type().shape)})


@conv(aten.slice.Tensor)
def _slice(ctx, x, dim=0, start=None, end=None, step=1):
    d = _dim(dim, x.type.rank)
    n = x.type.shape[d]
    start, end, _ = slice(start, end).indices(n)
    end = max(start, end)
    return ctx.emit1("slice", [x], {"dim": d, "start": start, "end": end, "step": step})


@conv(aten.select.int)
def _select(ctx, x, dim, index):
    d = _dim(dim, x.type.rank)
    return ctx.emit1("select", [x], {"dim": d, "index": index % x.type.shape[d]})


@conv(aten.unsqueeze.default)
def _unsqueeze(ctx, x, dim):
    return ctx.emit1("unsqueeze", [x], {"dim": dim % (x.type.rank + 1)})


@conv(aten.squeeze.dims, aten.squeeze.dim, aten.squeeze.default)
def _squeeze(ctx, x, dim=None):
    if dim is not None and not isinstance(dim, int) and len(dim) == 0:
        return x  # squeeze(x, ()) squeezes nothing; WIR's empty dims would mean every dim
    dims = _dims(dim, x.type.rank)
    if x.type.rank == 0:
        return x
    return ctx.emit1("squeeze", [x], {"dims": dims})


@conv(aten.cat.default)
def _cat(ctx, xs, dim=0):
    # torch's legacy rule: a 1-D operand with no elements is skipped (whatever its place in the list; a fresh
    # transformers DynamicCache concatenates onto one), and the dim is taken against the operands that remain.
    # The skipped operands still take part in dtype promotion, so the result type is torch's.
    want = ctx.meta_type()
    kept = [v for v in xs if not (v.type.rank == 1 and v.type.shape[0] == 0)] or list(xs[:1])
    y = kept[0] if len(kept) == 1 else ctx.emit1("cat", kept, {"dim": _dim(dim, kept[0].type.rank)})
    return y if y.type.dtype == want.dtype else ctx.emit1("convert", [y], {"dtype": want.dtype})


@conv(aten.split_with_sizes.default)
def _split_with_sizes(ctx, x, sizes, dim=0):
    return ctx.emit("split", [x], {"dim": _dim(dim, x.type.rank), "sizes": list(sizes)})


@conv(aten.split.Tensor)
def _split(ctx, x, split_size, dim=0):
    d = _dim(dim, x.type.rank)
    n = x.type.shape[d]
    sizes = [min(split_size, n - i) for i in range(0, n, split_size)] or [0]
    return ctx.emit("split", [x], {"dim": d, "sizes": sizes})


@conv(aten.gather.default)
def _gather(ctx, x, dim, index, sparse_grad=False):
    return ctx.emit1("gather", [x, index], {"dim": _dim(dim, x.type.rank)})


@conv(aten.index_select.default)
def _index_select(ctx, x, dim, index):
    if x.type.rank == 0:  # a 0-d tensor indexes as its 1-element vector, and the result is 0-d again
        row = ctx.emit1("index_select", [_as_vector(ctx, x), index], {"dim": 0})
        return ctx.emit1("view", [row], {"shape": list(ctx.meta_type().shape)})
    return ctx.emit1("index_select", [x, index], {"dim": _dim(dim, x.type.rank)})


def _as_vector(ctx, x):
    return ctx.emit1("view", [x], {"shape": [1]})


@conv(aten.index.Tensor)
def _index(ctx, x, indices):
    dims = [i for i, v in enumerate(indices) if v is not None]
    return ctx.emit1("index", [x] + [indices[i] for i in dims], {"dims": dims})


@conv(aten.flip.default)
def _flip(ctx, x, dims):
    return ctx.emit1("flip", [x], {"dims": _dims(dims, x.type.rank)})


@conv(aten.constant_pad_nd.default)
def _pad(ctx, x, pad, value=0):
    return ctx.emit1("pad", [x], {"pad": list(pad), "value": value})


@conv(aten.topk.default)
def _topk(ctx, x, k, dim=-1, largest=True, sorted=True):
    return ctx.emit("topk", [x], {"k": k, "dim": _dim(dim, x.type.rank), "largest": largest, "sorted": sorted})


@conv(aten.sort.default, aten.sort.stable)
def _sort(ctx, x, dim=-1, descending=False, stable=False):
    if isinstance(dim, bool):  # sort.stable(self, *, stable, dim, descending) arrives by keyword; guard positional
        dim = -1
    return ctx.emit("sort", [x], {"dim": _dim(dim, x.type.rank), "descending": descending, "stable": bool(stable)})


@conv(aten.triu.default, aten.tril.default)
def _tri(ctx, x, diagonal=0):
    name = "triu" if ctx.node.target is aten.triu.default else "tril"
    return ctx.emit1(name, [x], {"diagonal": diagonal})


@conv(aten.repeat.default)
def _repeat(ctx, x, repeats):
    return ctx.emit1("repeat", [x], {"repeats": list(repeats)})


# -- creation ---------------------------------------------------------------------------------


def _fill(ctx, value):
    t = ctx.meta_type()
    if t.dtype.is_float:
        value = float(value)
    elif t.dtype.is_bool:
        value = bool(value)
    else:
        value = int(value)
    return ctx.emit1("full", [], {"shape": list(t.shape), "value": value, "dtype": t.dtype})


@conv(
    aten.full.default,
    aten.full_like.default,
    aten.zeros.default,
    aten.ones.default,
    aten.zeros_like.default,
    aten.ones_like.default,
    aten.empty.memory_format,
    aten.empty_like.default,
    aten.new_zeros.default,
    aten.new_ones.default,
    aten.new_full.default,
    aten.new_empty.default,
    aten.empty_strided.default,
    aten.empty_permuted.default,
)
def _full(ctx, *args, **kwargs):
    t = ctx.node.target
    if t in (aten.full.default, aten.full_like.default):
        value = args[1]
    elif t is aten.new_full.default:
        value = args[2]
    elif t in (aten.ones.default, aten.ones_like.default, aten.new_ones.default):
        value = 1
    else:  # zeros, and empty (whose contents torch leaves undefined: zeros is one valid choice)
        value = 0
    return _fill(ctx, value)


@conv(aten.scalar_tensor.default)
def _scalar_tensor(ctx, s, **_):
    return ctx.constant(s, ctx.meta_type().dtype)


@conv(aten.arange.default, aten.arange.start, aten.arange.start_step)
def _arange(ctx, *args, **kwargs):
    nums = [a for a in args if isinstance(a, (int, float))]
    if len(nums) == 1:
        start, end, step = 0, nums[0], 1
    elif len(nums) == 2:
        (start, end), step = nums, 1
    else:
        start, end, step = nums[:3]
    dtype = ctx.meta_type().dtype
    return ctx.emit1("arange", [], {"start": start, "end": end, "step": step, "dtype": dtype})


# -- decompositions: ATen ops that are a few WIR ops ---------------------------------------------------


@conv(aten.clamp.Tensor)
def _clamp_tensor(ctx, x, min=None, max=None):
    # maximum then minimum, each NaN-propagating and promoting as torch.clamp(Tensor, Tensor, Tensor) does.
    y = x
    if min is not None:
        y = ctx.emit1("maximum", [y, ctx.scalar_operand(min, y)])
    if max is not None:
        y = ctx.emit1("minimum", [y, ctx.scalar_operand(max, y)])
    t = ctx.meta_type()
    if y.type.dtype != t.dtype:
        y = ctx.emit1("convert", [y], {"dtype": t.dtype})
    return y


@conv(aten.copy.default)
def _copy(ctx, x, src, non_blocking=False):
    # The functional copy_: src broadcast to x's shape, in x's dtype.
    y = src
    if y.type.dtype != x.type.dtype:
        y = ctx.emit1("convert", [y], {"dtype": x.type.dtype})
    if y.type.shape != x.type.shape:
        y = ctx.emit1("expand", [y], {"shape": list(x.type.shape)})
    return y


@conv(aten.var_mean.correction)
def _var_mean(ctx, x, dim=None, correction=None, keepdim=False):
    dims = _dims(dim, x.type.rank)
    c = 1 if correction is None else correction
    var = ctx.emit1("var", [x], {"dims": dims, "keepdim": keepdim, "correction": c})
    return [var, ctx.emit1("mean", [x], {"dims": dims, "keepdim": keepdim})]


@conv(aten.linalg_vector_norm.default)
def _vector_norm(ctx, x, ord=2, dim=None, keepdim=False, dtype=None):
    if dtype is not None and TORCH_DTYPES[dtype] != x.type.dtype:
        x = ctx.emit1("convert", [x], {"dtype": TORCH_DTYPES[dtype]})
    dims = _dims(dim, x.type.rank)
    return _norm(ctx, x, float(ord), dims, keepdim)


def _norm(ctx, x, p: float, dims: list[int], keepdim: bool):
    """(sum |x|^p)^(1/p) over dims; p = inf / -inf: max / min of |x|; p = 0: the count of nonzeros."""
    red = {"dims": dims, "keepdim": keepdim}
    if x.type.numel == 0 and p not in (float("inf"), float("-inf")):
        return ctx.emit1("sum", [ctx.emit1("abs", [x])], red)  # an empty norm is 0
    a = ctx.emit1("abs", [x])
    if p == float("inf"):
        return ctx.emit1("amax", [a], red)
    if p == float("-inf"):
        return ctx.emit1("amin", [a], red)
    if p == 0:
        nz = ctx.emit1("ne", [a, ctx.constant(0.0, a.type.dtype)])
        return ctx.emit1("sum", [nz], {**red, "dtype": x.type.dtype})
    if p == 1:
        return ctx.emit1("sum", [a], red)
    if p == 2:
        return ctx.emit1("sqrt", [ctx.emit1("sum", [ctx.emit1("mul", [a, a])], red)])
    s = ctx.emit1("sum", [ctx.emit1("pow", [a, ctx.constant(p, a.type.dtype)])], red)
    return ctx.emit1("pow", [s, ctx.constant(1.0 / p, a.type.dtype)])


@conv(aten._native_batch_norm_legit_functional.default)
def _batch_norm_training(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
    """Training-mode batch norm: normalize by the batch's own statistics; the results are out, the batch
    mean, 1 / sqrt(biased var + eps), and the running statistics updated with momentum (unbiased var)."""
    if not training:
        return _batch_norm(ctx, x, weight, bias, running_mean, running_var, momentum, eps) + [running_mean, running_var]
    mean, rstd, out = _batch_stats_and_normalize(ctx, x, weight, bias, eps)
    c = [x.type.shape[1]]
    flat_mean = ctx.emit1("view", [mean], {"shape": c})
    flat_rstd = ctx.emit1("view", [rstd], {"shape": c})
    new_mean = new_var = None
    if running_mean is not None:
        n = x.type.numel // max(c[0], 1)
        var_u = ctx.emit1("var", [x], {"dims": _channel_dims(x), "correction": 1})
        new_mean = _lerp(ctx, running_mean, flat_mean, momentum)
        new_var = _lerp(ctx, running_var, var_u if n > 1 else var_u, momentum)
    return [out, flat_mean, flat_rstd, new_mean, new_var]


@conv(aten._native_batch_norm_legit.no_stats)
def _batch_norm_no_stats(ctx, x, weight, bias, training, momentum, eps):
    mean, rstd, out = _batch_stats_and_normalize(ctx, x, weight, bias, eps)
    c = [x.type.shape[1]]
    return [out, ctx.emit1("view", [mean], {"shape": c}), ctx.emit1("view", [rstd], {"shape": c})]


def _channel_dims(x) -> list[int]:
    return [0] + list(range(2, x.type.rank))


def _batch_stats_and_normalize(ctx, x, weight, bias, eps):
    dims = _channel_dims(x)
    mean = ctx.emit1("mean", [x], {"dims": dims, "keepdim": True})
    var = ctx.emit1("var", [x], {"dims": dims, "keepdim": True, "correction": 0})
    rstd = ctx.emit1("rsqrt", [ctx.emit1("add", [var, ctx.constant(float(eps), x.type.dtype)])])
    out = ctx.emit1("mul", [ctx.emit1("sub", [x, mean]), rstd])
    shape = [1, x.type.shape[1]] + [1] * (x.type.rank - 2)
    if weight is not None:
        out = ctx.emit1("mul", [out, ctx.emit1("view", [weight], {"shape": shape})])
    if bias is not None:
        out = ctx.emit1("add", [out, ctx.emit1("view", [bias], {"shape": shape})])
    return mean, rstd, out


def _lerp(ctx, old, new, momentum):
    """(1 - momentum) * old + momentum * new, as torch updates running statistics."""
    keep = ctx.emit1("mul", [old, ctx.constant(1.0 - float(momentum), old.type.dtype)])
    return ctx.emit1("add", [keep, ctx.emit1("mul", [new, ctx.constant(float(momentum), old.type.dtype)])])


@conv(aten._cdist_forward.default)
def _cdist(ctx, x1, x2, p, compute_mode=None):
    r1, r2 = x1.type.shape[-2], x2.type.shape[-2]
    mode = 0 if compute_mode is None else compute_mode
    if p == 2 and (mode == 1 or (mode == 0 and (r1 > 25 or r2 > 25))):
        return _cdist_mm(ctx, x1, x2)
    a = ctx.emit1("unsqueeze", [x1], {"dim": x1.type.rank - 1})  # [..., r1, 1, m]
    b = ctx.emit1("unsqueeze", [x2], {"dim": x2.type.rank - 2})  # [..., 1, r2, m]
    diff = ctx.emit1("sub", [a, b])
    return _norm(ctx, diff, float(p), [diff.type.rank - 1], False)


def _cdist_mm(ctx, x1, x2):
    """torch's matrix-product Euclidean distance (what it uses for p = 2 past 25 rows), step for step:
    sqrt(clamp_min([-2 x1, |x1|^2, 1] @ [x2, 1, |x2|^2]^T, 0))."""

    def padded(x, norm_first: bool, scale):
        sq = ctx.emit1(
            "sum", [ctx.emit1("pow", [x, ctx.constant(2, DType.i64)])], {"dims": [x.type.rank - 1], "keepdim": True}
        )
        ones = ctx.emit1("full", [], {"shape": list(sq.type.shape), "value": 1.0, "dtype": x.type.dtype})
        head = ctx.emit1("mul", [x, ctx.constant(scale, x.type.dtype)]) if scale != 1 else x
        parts = [head, sq, ones] if norm_first else [head, ones, sq]
        return ctx.emit1("cat", parts, {"dim": x.type.rank - 1})

    a = padded(x1, True, -2.0)
    b = padded(x2, False, 1)
    perm = list(range(b.type.rank - 2)) + [b.type.rank - 1, b.type.rank - 2]
    bt = ctx.emit1("permute", [b], {"dims": perm})
    prod = _matmul(ctx, a, bt)
    return ctx.emit1("sqrt", [ctx.emit1("clamp", [prod], {"min": 0.0})])


def _matmul(ctx, a, b):
    if a.type.rank == 2:
        return ctx.emit1("mm", [a, b])
    batch = list(a.type.shape[:-2])
    n = 1
    for s in batch:
        n *= s
    a3 = ctx.emit1("view", [a], {"shape": [n] + list(a.type.shape[-2:])})
    b3 = ctx.emit1(
        "view",
        [ctx.emit1("expand", [b], {"shape": batch + list(b.type.shape[-2:])})],
        {"shape": [n] + list(b.type.shape[-2:])},
    )
    y = ctx.emit1("bmm", [a3, b3])
    return ctx.emit1("view", [y], {"shape": batch + [a.type.shape[-2], b.type.shape[-1]]})


@conv(aten._pdist_forward.default)
def _pdist(ctx, x, p=2.0):
    n = x.type.shape[0]
    i = [a for a in range(n) for b in range(a + 1, n)]
    j = [b for a in range(n) for b in range(a + 1, n)]
    if not i:
        return ctx.emit1("full", [], {"shape": [0], "value": 0.0, "dtype": x.type.dtype})
    rows_i = ctx.emit1("index_select", [x, _const_ints(ctx, i)], {"dim": 0})
    rows_j = ctx.emit1("index_select", [x, _const_ints(ctx, j)], {"dim": 0})
    return _norm(ctx, ctx.emit1("sub", [rows_i, rows_j]), float(p), [1], False)


def _const_ints(ctx, values: list[int]):
    saved, ctx.loc = ctx.loc, None
    v = ctx.emit1("constant", [], {"value": list(values), "dtype": DType.i64}, hint="idx")
    ctx.loc = saved
    return v


@conv(aten.polygamma.default)
def _polygamma(ctx, n, x):
    return ctx.emit1("polygamma", [x], {"n": int(n)})


# -- scatters and writes into a copy ------------------------------------------------------------------

_SCATTER_REDUCE = {
    "sum": "sum",
    "add": "sum",
    "prod": "prod",
    "multiply": "prod",
    "mean": "mean",
    "amax": "amax",
    "amin": "amin",
}


@conv(aten.scatter.src, aten.scatter.value, aten.scatter.reduce, aten.scatter.value_reduce)
def _scatter_op(ctx, x, dim, index, src, reduce=None):
    if not isinstance(src, Value):  # a scalar fills every indexed place
        src = ctx.emit1(
            "full", [], {"shape": list(index.type.shape), "value": _typed(src, x.type.dtype), "dtype": x.type.dtype}
        )
    attrs = {"dim": _dim(dim, x.type.rank)}
    if reduce is not None:
        attrs["reduce"] = _SCATTER_REDUCE[reduce]
    return ctx.emit1("scatter", [x, index, src], attrs)


@conv(aten.scatter_add.default)
def _scatter_add(ctx, x, dim, index, src):
    return ctx.emit1("scatter", [x, index, src], {"dim": _dim(dim, x.type.rank), "reduce": "sum"})


@conv(aten.scatter_reduce.two)
def _scatter_reduce(ctx, x, dim, index, src, reduce, include_self=True):
    attrs = {"dim": _dim(dim, x.type.rank), "reduce": _SCATTER_REDUCE[reduce], "include_self": bool(include_self)}
    return ctx.emit1("scatter", [x, index, src], attrs)


def _typed(v, dtype: DType):
    return float(v) if dtype.is_float else bool(v) if dtype.is_bool else int(v)


@conv(aten.index_put.default, aten.index_put.hacked_twin)
def _index_put(ctx, x, indices, values, accumulate=False):
    dims = [i for i, v in enumerate(indices) if v is not None]
    if not isinstance(values, Value):
        values = ctx.constant(values, x.type.dtype)
    attrs = {"dims": dims} | ({"accumulate": True} if accumulate else {})
    return ctx.emit1("index_put", [x, values] + [indices[i] for i in dims], attrs)


@conv(aten.slice_scatter.default)
def _slice_scatter(ctx, x, src, dim=0, start=None, end=None, step=1):
    d = _dim(dim, x.type.rank)
    start, end, _ = slice(start, end).indices(x.type.shape[d])
    return ctx.emit1("slice_scatter", [x, src], {"dim": d, "start": start, "end": max(start, end), "step": step})


@conv(aten.select_scatter.default)
def _select_scatter(ctx, x, src, dim, index):
    d = _dim(dim, x.type.rank)
    i = index % x.type.shape[d]
    row = ctx.emit1("unsqueeze", [src], {"dim": d})
    return ctx.emit1("slice_scatter", [x, row], {"dim": d, "start": i, "end": i + 1})


@conv(aten.masked_scatter.default)
def _masked_scatter(ctx, x, mask, source):
    if mask.type.shape != x.type.shape and len(mask.type.shape) > x.type.rank:
        raise ImportBug("masked_scatter with a mask larger than self reached the importer")
    return ctx.emit1("masked_scatter", [x, mask, source])


@conv(aten.diagonal.default)
def _diagonal(ctx, x, offset=0, dim1=0, dim2=1):
    return ctx.emit1(
        "diagonal", [x], {"offset": offset, "dim1": _dim(dim1, x.type.rank), "dim2": _dim(dim2, x.type.rank)}
    )


@conv(aten.as_strided.default)
def _as_strided(ctx, x, size, stride, storage_offset=None):
    src = ctx.node.args[0].meta.get("val") if isinstance(ctx.node.args[0], torch.fx.Node) else None
    if src is not None and not src.is_contiguous():
        # WIR values have no memory layout; torch reads this tensor's actual strides.
        raise UnsupportedOpError(
            f"aten.as_strided at {ctx.loc or '(no source location)'} reads a "
            "non-contiguous tensor, whose result depends on its memory layout, which WIR does "
            "not model",
            [("aten.as_strided of a non-contiguous tensor", str(ctx.loc))],
        )
    return ctx.emit1(
        "as_strided", [x], {"size": list(size), "stride": list(stride), "offset": int(storage_offset or 0)}
    )


@conv(aten.as_strided_scatter.default)
def _as_strided_scatter(ctx, x, src, size, stride, storage_offset=None):
    """as_strided's backward (Swin's window partition has one): a copy of x with the strided view replaced."""
    base = ctx.node.args[0].meta.get("val") if isinstance(ctx.node.args[0], torch.fx.Node) else None
    where = ctx.loc or "(no source location)"
    if base is not None and not base.is_contiguous():
        raise UnsupportedOpError(
            f"aten.as_strided_scatter at {where} writes into a non-contiguous tensor, whose result depends on its "
            "memory layout, which WIR does not model",
            [("aten.as_strided_scatter of a non-contiguous tensor", str(ctx.loc))],
        )
    if not strided_positions_distinct(size, stride):
        raise UnsupportedOpError(
            f"aten.as_strided_scatter at {where} writes some element twice (size {list(size)}, stride "
            f"{list(stride)}): which write wins is not defined",
            [("aten.as_strided_scatter with overlapping writes", str(ctx.loc))],
        )
    attrs = {"size": list(size), "stride": list(stride), "offset": int(storage_offset or 0)}
    return ctx.emit1("as_strided_scatter", [x, src], attrs)


# -- ops refused with a reason ---------------------------------------------------------------------
# Each is one clear error (listing every use with its source line), not a crash somewhere later.

REFUSED: dict = {}


def _refuse(names, why: str) -> None:
    for n in names:
        packet = getattr(aten, n, None)
        for ov in packet.overloads() if packet is not None else ():
            REFUSED[getattr(packet, ov)] = why


_refuse(
    [
        "nonzero",
        "nonzero_static",
        "masked_select",
        "unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "sym_size",
        "sym_numel",
        "sym_stride",
        "sym_storage_offset",
    ],
    "its output shape depends on the data; wafercc compiles static shapes",
)
_refuse(
    ["_local_scalar_dense", "item"],
    "it reads a tensor's value into Python (.item()), so what follows depends on the data",
)
_refuse(
    ["_fft_r2c", "_fft_c2r", "_fft_c2c", "view_as_complex", "view_as_real", "complex", "polar"],
    "it needs complex numbers, which wafercc does not support",
)
_refuse(
    [
        "rand",
        "randn",
        "randint",
        "randperm",
        "rand_like",
        "randn_like",
        "randint_like",
        "bernoulli",
        "normal",
        "uniform",
        "exponential",
        "geometric",
        "cauchy",
        "log_normal",
        "random",
        "multinomial",
        "poisson",
        "native_dropout",
        "normal_functional",
        "rrelu_with_noise",
        "rrelu_with_noise_functional",
    ],
    "it draws random numbers, which the runtime cannot reproduce as torch's generator does "
    "(call model.eval() to turn dropout off)",
)

# Python arithmetic in the graph only ever works on symbolic sizes: those a data-dependent op made.
for _f in ("ge", "le", "gt", "lt", "eq", "ne", "add", "sub", "mul", "floordiv", "mod", "truediv", "neg", "pow"):
    REFUSED[getattr(operator, _f)] = "arithmetic on a size that depends on the data"


@conv(aten.upsample_bilinear2d.vec, aten.upsample_bilinear2d.default)
def _upsample_bilinear2d(ctx, x, output_size, align_corners, *scales):
    attrs = {"output_size": list(ctx.meta_type().shape[2:]), "align_corners": bool(align_corners)}
    if ctx.node.target is aten.upsample_bilinear2d.vec:
        factors = scales[0] if scales else None
    else:
        factors = list(scales) if scales and any(s is not None for s in scales) else None
    if factors and not align_corners:  # torch maps coordinates by the user's factor, which can differ from out / in
        attrs["scales"] = [None if f is None else float(f) for f in factors]
    return ctx.emit1("upsample_bilinear2d", [x], attrs)


@conv(aten.addbmm.default)
def _addbmm(ctx, bias, b1, b2, beta=1, alpha=1):
    """beta * bias + alpha * sum_i b1[i] @ b2[i]: a batched product summed over the batch."""
    y = ctx.emit1("sum", [ctx.emit1("bmm", [b1, b2])], {"dims": [0]})
    if alpha != 1:
        y = ctx.emit1("mul", [y, ctx.scalar_operand(alpha, y)])
    if beta == 0:  # torch ignores the bias (NaN in it does not propagate)
        return (
            y
            if y.type.shape == tuple(ctx.meta_type().shape)
            else ctx.emit1("expand", [y], {"shape": list(ctx.meta_type().shape)})
        )
    b = bias if beta == 1 else ctx.emit1("mul", [bias, ctx.scalar_operand(beta, bias)])
    return ctx.emit1("add", [b, y])


@conv(aten.diagonal_scatter.default)
def _diagonal_scatter(ctx, x, src, offset=0, dim1=0, dim2=1):
    """index_put at the diagonal's coordinates; src's diagonal axis (its last) moves to where numpy's
    indexing puts the indexed dims: in place if dim1 and dim2 are adjacent, else first."""
    d1, d2 = _dim(dim1, x.type.rank), _dim(dim2, x.type.rank)
    n = src.type.shape[-1]
    if n == 0:
        return x
    i1 = _const_ints(ctx, [k + max(-offset, 0) for k in range(n)])
    i2 = _const_ints(ctx, [k + max(offset, 0) for k in range(n)])
    lo, hi = (d1, d2) if d1 < d2 else (d2, d1)
    idx = [i1, i2] if d1 < d2 else [i2, i1]
    r = src.type.rank
    where = lo if hi == lo + 1 else 0
    perm = list(range(r - 1))
    perm.insert(where, r - 1)
    vals = ctx.emit1("permute", [src], {"dims": perm}) if perm != list(range(r)) else src
    return ctx.emit1("index_put", [x, vals] + idx, {"dims": [lo, hi]})


@conv(aten.cummax.default, aten.cummin.default)
def _cum_extreme(ctx, x, dim):
    name = "cummax" if ctx.node.target is aten.cummax.default else "cummin"
    return ctx.emit(name, [x], {"dim": _dim(dim, x.type.rank)})


@conv(aten.max.default, aten.min.default)
def _max_all(ctx, x):
    return ctx.emit1("amax" if ctx.node.target is aten.max.default else "amin", [x], {"dims": []})


CONVERTERS[aten.max.other] = _binary("maximum")
CONVERTERS[aten.min.other] = _binary("minimum")

# prims ops that torch's reference implementations (the _refs OpInfo variants) leave in a graph.
_prims = torch.ops.prims
CONVERTERS[_prims.abs.default] = _unary("abs")
CONVERTERS[_prims.neg.default] = _unary("neg")
CONVERTERS[_prims.mul.default] = _binary("mul")


@conv(_prims.where.default)
def _prims_where(ctx, cond, a, b):
    return _where(ctx, cond, a, b)


@conv(_prims.fmax.default, _prims.fmin.default)
def _fmax(ctx, a, b):
    """fmax / fmin: the other operand where one is NaN, else maximum / minimum."""
    if not isinstance(a, Value):
        a = ctx.constant(a, scalar_dtype(a, b.type.dtype))
    b = ctx.scalar_operand(b, a)
    m = ctx.emit1("maximum" if ctx.node.target is _prims.fmax.default else "minimum", [a, b])
    if not m.type.dtype.is_float:
        return m
    m = ctx.emit1("where", [ctx.emit1("isnan", [b]), a, m])
    return ctx.emit1("where", [ctx.emit1("isnan", [a]), b, m])


for _n in ("uniform", "normal"):
    REFUSED[getattr(_prims, _n).default] = REFUSED[aten.rand.default]
