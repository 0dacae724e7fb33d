"""The reference for the runtime's numerics: every WIR op as the torch.ops.aten call it mirrors.

``aten_run(module, inputs, weights)`` evaluates a WIR function with torch (eager, CPU), op by op, so a test
can compare the runtime against PyTorch on any module: a one-op sweep case or a whole model graph.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import torch

from wafercc.ir import DType, Module

A = torch.ops.aten

TORCH_DTYPE = {
    DType.f64: torch.float64,
    DType.f32: torch.float32,
    DType.f16: torch.float16,
    DType.bf16: torch.bfloat16,
    DType.i64: torch.int64,
    DType.i32: torch.int32,
    DType.i16: torch.int16,
    DType.i8: torch.int8,
    DType.u8: torch.uint8,
    DType.bool: torch.bool,
}


def to_torch(a: np.ndarray) -> torch.Tensor:
    a = np.array(a, order="C")  # not ascontiguousarray: it turns a 0-d array into a 1-d one
    if a.dtype == ml_dtypes.bfloat16:  # torch.from_numpy does not know ml_dtypes
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _a(op, name, default=None):
    return op.attrs.get(name, default)


def _dims_or_none(op):
    return _a(op, "dims", []) or None


def _dtype_attr(op):
    d = _a(op, "dtype")
    return None if d is None else TORCH_DTYPE[d]


_UNARY = [
    "neg",
    "abs",
    "sign",
    "floor",
    "ceil",
    "trunc",
    "round",
    "relu",
    "bitwise_not",
    "clone",
    "detach",
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
]
_BINARY = [
    "add",
    "sub",
    "mul",
    "maximum",
    "minimum",
    "remainder",
    "fmod",
    "pow",
    "atan2",
    "bitwise_and",
    "bitwise_or",
    "bitwise_xor",
    "logical_and",
    "logical_or",
    "logical_xor",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
]


def _unary(f):
    return lambda op, x: f(x)


def _binary(f):
    return lambda op, a, b: f(a, b)


REF = {name: _unary(getattr(A, name)) for name in _UNARY}
REF.update({name: _binary(getattr(A, name)) for name in _BINARY})
REF.update(
    {
        "gelu": lambda op, x: A.gelu(x, approximate=_a(op, "approximate", "none")),
        "leaky_relu": lambda op, x: A.leaky_relu(x, _a(op, "negative_slope", 0.01)),
        "elu": lambda op, x: A.elu(x, _a(op, "alpha", 1.0), _a(op, "scale", 1.0), _a(op, "input_scale", 1.0)),
        "softplus": lambda op, x: A.softplus(x, _a(op, "beta", 1.0), _a(op, "threshold", 20.0)),
        "clamp": lambda op, x: A.clamp(x, _a(op, "min"), _a(op, "max")),
        "convert": lambda op, x: A._to_copy(x, dtype=TORCH_DTYPE[_a(op, "dtype")]),
        "div": lambda op, a, b: A.div.Tensor_mode(a, b, rounding_mode=_a(op, "rounding_mode")),
        "where": lambda op, c, a, b: A.where.self(c, a, b),
        "mm": lambda op, a, b: A.mm(a, b),
        "bmm": lambda op, a, b: A.bmm(a, b),
        "addmm": lambda op, c, a, b: A.addmm(c, a, b, beta=_a(op, "beta", 1), alpha=_a(op, "alpha", 1)),
        "convolution": lambda op, x, w, b=None: A.convolution(
            x,
            w,
            b,
            _a(op, "stride", [1]),
            _a(op, "padding", [0]),
            _a(op, "dilation", [1]),
            _a(op, "transposed", False),
            _a(op, "output_padding", [0]),
            _a(op, "groups", 1),
        ),
        "layer_norm": lambda op, x, w=None, b=None: A.native_layer_norm(
            x, _a(op, "normalized_shape"), w, b, _a(op, "eps", 1e-5)
        ),
        "batch_norm": lambda op, x, m, v, w=None, b=None: A._native_batch_norm_legit_no_training(
            x, w, b, m, v, 0.1, _a(op, "eps", 1e-5)
        )[0],
        "group_norm": lambda op, x, w=None, b=None: A.native_group_norm(
            x, w, b, x.shape[0], x.shape[1], int(np.prod(x.shape[2:])), _a(op, "groups"), _a(op, "eps", 1e-5)
        ),
        "max_pool2d": lambda op, x: A.max_pool2d_with_indices(
            x,
            _a(op, "kernel_size"),
            _a(op, "stride", []),
            _a(op, "padding", [0]),
            _a(op, "dilation", [1]),
            _a(op, "ceil_mode", False),
        ),
        "avg_pool2d": lambda op, x: A.avg_pool2d(
            x,
            _a(op, "kernel_size"),
            _a(op, "stride", []),
            _a(op, "padding", [0]),
            _a(op, "ceil_mode", False),
            _a(op, "count_include_pad", True),
            _a(op, "divisor_override"),
        ),
        "adaptive_avg_pool2d": lambda op, x: A._adaptive_avg_pool2d(x, _a(op, "output_size")),
        "max_pool3d": lambda op, x: A.max_pool3d_with_indices(
            x,
            _a(op, "kernel_size"),
            _a(op, "stride", []),
            _a(op, "padding", [0]),
            _a(op, "dilation", [1]),
            _a(op, "ceil_mode", False),
        ),
        "avg_pool3d": lambda op, x: A.avg_pool3d(
            x,
            _a(op, "kernel_size"),
            _a(op, "stride", []),
            _a(op, "padding", [0]),
            _a(op, "ceil_mode", False),
            _a(op, "count_include_pad", True),
            _a(op, "divisor_override"),
        ),
        "adaptive_avg_pool3d": lambda op, x: A._adaptive_avg_pool3d(x, _a(op, "output_size")),
        "grid_sampler_2d": lambda op, x, g: A.grid_sampler_2d(
            x,
            g,
            ["bilinear", "nearest", "bicubic"].index(_a(op, "interpolation", "bilinear")),
            ["zeros", "border", "reflection"].index(_a(op, "padding_mode", "zeros")),
            _a(op, "align_corners", False),
        ),
        "upsample_nearest2d": lambda op, x: A.upsample_nearest2d(x, _a(op, "output_size")),
        "embedding": lambda op, w, i: A.embedding(w, i, _a(op, "padding_idx", -1)),
        "sum": lambda op, x: A.sum.dim_IntList(x, _dims_or_none(op), _a(op, "keepdim", False), dtype=_dtype_attr(op)),
        "prod": lambda op, x: _prod(op, x),
        "mean": lambda op, x: A.mean.dim(x, _dims_or_none(op), _a(op, "keepdim", False), dtype=_dtype_attr(op)),
        "amax": lambda op, x: A.amax(x, _a(op, "dims", []), _a(op, "keepdim", False)),
        "amin": lambda op, x: A.amin(x, _a(op, "dims", []), _a(op, "keepdim", False)),
        "any": lambda op, x: A.any.dims(x, _dims_or_none(op), _a(op, "keepdim", False)),
        "all": lambda op, x: A.all.dims(x, _dims_or_none(op), _a(op, "keepdim", False)),
        "var": lambda op, x: A.var.correction(
            x, _dims_or_none(op), correction=_a(op, "correction", 1), keepdim=_a(op, "keepdim", False)
        ),
        "argmax": lambda op, x: A.argmax(x, _a(op, "dim"), _a(op, "keepdim", False)),
        "argmin": lambda op, x: A.argmin(x, _a(op, "dim"), _a(op, "keepdim", False)),
        "max_dim": lambda op, x: tuple(A.max.dim(x, _a(op, "dim"), _a(op, "keepdim", False))),
        "min_dim": lambda op, x: tuple(A.min.dim(x, _a(op, "dim"), _a(op, "keepdim", False))),
        "cumsum": lambda op, x: A.cumsum(x, _a(op, "dim"), dtype=_dtype_attr(op)),
        "cumprod": lambda op, x: A.cumprod(x, _a(op, "dim"), dtype=_dtype_attr(op)),
        "softmax": lambda op, x: A._softmax(x, _a(op, "dim"), False),
        "log_softmax": lambda op, x: A._log_softmax(x, _a(op, "dim"), False),
        "view": lambda op, x: A.view(x, _a(op, "shape")),
        "permute": lambda op, x: A.permute(x, _a(op, "dims")),
        "expand": lambda op, x: A.expand(x, _a(op, "shape")),
        "slice": lambda op, x: A.slice.Tensor(x, _a(op, "dim"), _a(op, "start"), _a(op, "end"), _a(op, "step", 1)),
        "select": lambda op, x: A.select.int(x, _a(op, "dim"), _a(op, "index")),
        "unsqueeze": lambda op, x: A.unsqueeze(x, _a(op, "dim")),
        "squeeze": lambda op, x: A.squeeze.dims(x, _a(op, "dims")) if _a(op, "dims") else A.squeeze.default(x),
        "cat": lambda op, *xs: A.cat(list(xs), _a(op, "dim")),
        "split": lambda op, x: tuple(A.split_with_sizes(x, _a(op, "sizes"), _a(op, "dim"))),
        "gather": lambda op, x, i: A.gather(x, _a(op, "dim"), i),
        "index_select": lambda op, x, i: A.index_select(x, _a(op, "dim"), i),
        "index": lambda op, x, *idx: A.index.Tensor(x, _index_list(op, idx)),
        "flip": lambda op, x: A.flip(x, _a(op, "dims")),
        "pad": lambda op, x: A.constant_pad_nd(x, _a(op, "pad"), _a(op, "value", 0)),
        "topk": lambda op, x: tuple(
            A.topk(x, _a(op, "k"), _a(op, "dim"), _a(op, "largest", True), _a(op, "sorted", True))
        ),
        "sort": lambda op, x: tuple(
            A.sort.stable(x, stable=True, dim=_a(op, "dim"), descending=_a(op, "descending", False))
        ),
        "triu": lambda op, x: A.triu(x, _a(op, "diagonal", 0)),
        "tril": lambda op, x: A.tril(x, _a(op, "diagonal", 0)),
        "repeat": lambda op, x: A.repeat(x, _a(op, "repeats")),
        "constant": lambda op: torch.tensor(_a(op, "value"), dtype=TORCH_DTYPE[_a(op, "dtype")]),
        "full": lambda op: A.full(_a(op, "shape"), _a(op, "value"), dtype=TORCH_DTYPE[_a(op, "dtype")]),
        "arange": lambda op: A.arange.start_step(
            _a(op, "start", 0), _a(op, "end"), _a(op, "step", 1), dtype=TORCH_DTYPE[_a(op, "dtype", DType.i64)]
        ),
    }
)


REF.update(
    {
        "check": lambda op, c: (torch._assert_async(c.all()), c)[1],
        "acosh": _unary(A.acosh),
        "asinh": _unary(A.asinh),
        "atanh": _unary(A.atanh),
        "lgamma": _unary(A.lgamma),
        "digamma": _unary(A.digamma),
        "signbit": _unary(A.signbit),
        "polygamma": lambda op, x: A.polygamma(_a(op, "n"), x),
        "cummax": lambda op, x: tuple(A.cummax(x, _a(op, "dim"))),
        "cummin": lambda op, x: tuple(A.cummin(x, _a(op, "dim"))),
        "scatter": lambda op, x, i, s: _scatter(op, x, i, s),
        "index_put": lambda op, x, v, *idx: A.index_put(x, _index_list(op, idx), v, _a(op, "accumulate", False)),
        "slice_scatter": lambda op, x, s: A.slice_scatter(
            x, s, _a(op, "dim"), _a(op, "start"), _a(op, "end"), _a(op, "step", 1)
        ),
        "masked_scatter": lambda op, x, m, s: A.masked_scatter(x, m, s),
        "diagonal": lambda op, x: A.diagonal(x, _a(op, "offset", 0), _a(op, "dim1", 0), _a(op, "dim2", 1)),
        "as_strided": lambda op, x: A.as_strided(x.contiguous(), _a(op, "size"), _a(op, "stride"), _a(op, "offset", 0)),
        "as_strided_scatter": lambda op, x, s: A.as_strided_scatter(
            x.contiguous(), s, _a(op, "size"), _a(op, "stride"), _a(op, "offset", 0)
        ),
        "upsample_bilinear2d": lambda op, x: A.upsample_bilinear2d.default(
            x, _a(op, "output_size"), _a(op, "align_corners", False), *(_a(op, "scales") or [None, None])
        ),
    }
)


def _scatter(op, x, i, s):
    reduce = _a(op, "reduce", "none")
    if reduce == "none":
        return A.scatter.src(x, _a(op, "dim"), i, s)
    return A.scatter_reduce.two(x, _a(op, "dim"), i, s, reduce, include_self=_a(op, "include_self", True))


def _prod(op, x):
    dims = _a(op, "dims", [])
    if not dims:
        out = A.prod.default(x, dtype=_dtype_attr(op))
        return out.reshape((1,) * x.dim()) if _a(op, "keepdim", False) else out
    assert len(dims) == 1, "aten.prod reduces one dim at a time"
    return A.prod.dim_int(x, dims[0], _a(op, "keepdim", False), dtype=_dtype_attr(op))


def _index_list(op, idx):
    out = [None] * (max(_a(op, "dims")) + 1)
    for d, i in zip(_a(op, "dims"), idx):
        out[d] = i
    return out


def aten_run(
    module: Module, inputs: list[np.ndarray], weights: dict[str, np.ndarray] | None = None, func: str = "forward"
) -> list[np.ndarray]:
    """Evaluate ``func`` with torch.ops.aten, op by op; returns numpy arrays."""
    f = module.func(func)
    env = {id(a): to_torch(x) for a, x in zip(f.args, inputs)}
    with torch.no_grad():
        for op in f.ops:
            if op.name == "weight.get":
                out = to_torch(weights[op.attrs["symbol"].name])
            else:
                out = REF[op.name](op, *[env[id(v)] for v in op.operands])
            outs = out if isinstance(out, tuple) else (out,)
            for r, t in zip(op.results, outs):
                env[id(r)] = t
    return [to_numpy(env[id(v)]) for v in f.returns]
