"""Sample operands and attributes for every op in ``wafercc.ops.OPS``, for tests that need one legal
instance of each op (result-type rules here; runtime kernels against eager PyTorch elsewhere).

    SAMPLES: dict[op name, list[(operand types, attrs)]]

Attributes are as they stand in WIR (defaults may be left out); a ``symbol`` attribute names a weight
of ``SAMPLE_WEIGHTS``. ``sample_module`` wraps one sample into a module that verifies. Importing this
file needs only ``wafercc.ir`` and ``wafercc.ops``.
"""

from __future__ import annotations

from wafercc.ir import DType, Func, Module, Op, SymbolRef, TensorType, Value, Weight, parse_type
from wafercc.ops import infer_types


def T(spec: str) -> TensorType:
    """``T("2x3xf32")`` is ``tensor<2x3xf32>``."""
    return parse_type(f"tensor<{spec}>")


Sample = tuple[list[TensorType], dict]

SAMPLE_WEIGHTS: dict[str, TensorType] = {"fc.weight": T("4x3xf32"), "scale": T("bf16")}

_UNARY_SAME = [
    "neg",
    "abs",
    "sign",
    "floor",
    "ceil",
    "trunc",
    "round",
    "relu",
    "clone",
    "detach",
]
_UNARY_FLOAT = [
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
]
_BINARY = ["add", "sub", "mul", "maximum", "minimum", "remainder", "fmod", "pow", "atan2"]
_COMPARE = ["eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor"]
_REDUCE = ["sum", "prod", "mean", "amax", "amin", "any", "all", "var"]

SAMPLES: dict[str, list[Sample]] = {
    # -- create
    "constant": [([], {"value": [[1.0, 2.0], [3.0, 4.0]], "dtype": DType.f32}), ([], {"value": 2, "dtype": DType.i64})],
    "full": [([], {"shape": [2, 3], "value": 0.5, "dtype": DType.f32})],
    "arange": [([], {"end": 5}), ([], {"start": 1, "end": 2, "step": 0.25, "dtype": DType.f32})],
    "weight.get": [([], {"symbol": SymbolRef("fc.weight")})],
    # -- elementwise
    **{name: [([T("2x3xf32")], {}), ([T("4xi32")], {})] for name in _UNARY_SAME},
    **{name: [([T("2x3xf32")], {}), ([T("4xi64")], {})] for name in _UNARY_FLOAT},
    "bitwise_not": [([T("4xi32")], {}), ([T("4xbool")], {})],
    "isnan": [([T("2x3xf32")], {})],
    "isinf": [([T("2x3xf16")], {})],
    "logical_not": [([T("2x3xi64")], {})],
    "signbit": [([T("2x3xf32")], {}), ([T("4xi64")], {})],
    "gelu": [([T("2x3xf32")], {}), ([T("2x3xf32")], {"approximate": "tanh"})],
    "leaky_relu": [([T("2x3xf32")], {"negative_slope": 0.2})],
    "elu": [([T("2x3xf32")], {"alpha": 0.5})],
    "softplus": [([T("2x3xf32")], {"beta": 2.0})],
    "clamp": [([T("2x3xf32")], {"min": -1.0, "max": 1.0}), ([T("4xi64")], {"min": 0}), ([T("4xi64")], {"max": 0.5})],
    "convert": [([T("2x3xf32")], {"dtype": DType.bf16})],
    **{name: [([T("2x3xf32"), T("3xf32")], {}), ([T("4xi32"), T("f64")], {})] for name in _BINARY},
    "div": [([T("2x3xi64"), T("3xi64")], {}), ([T("4xi64"), T("4xi64")], {"rounding_mode": "floor"})],
    **{
        name: [([T("4xi32"), T("4xi64")], {}), ([T("4xbool"), T("1xbool")], {})]
        for name in ("bitwise_and", "bitwise_or", "bitwise_xor")
    },
    **{name: [([T("2x3xf32"), T("2x1xf32")], {})] for name in _COMPARE},
    "where": [([T("2x3xbool"), T("2x3xf32"), T("f32")], {})],
    # -- nn
    "mm": [([T("2x3xf32"), T("3x4xf32")], {})],
    "bmm": [([T("5x2x3xf32"), T("5x3x4xf32")], {})],
    "addmm": [([T("4xf32"), T("2x3xf32"), T("3x4xf32")], {"beta": 0.5})],
    "convolution": [
        ([T("1x3x8x8xf32"), T("4x3x3x3xf32"), T("4xf32")], {"padding": [1]}),
        ([T("2x4x5xf32"), T("4x2x3xf32")], {"stride": [2], "groups": 2}),
        ([T("1x4x5x5xf32"), T("4x2x3x3xf32")], {"transposed": True, "stride": [2], "output_padding": [1]}),
    ],
    "layer_norm": [
        ([T("2x5x8xf32"), T("8xf32"), T("8xf32")], {"normalized_shape": [8]}),
        ([T("2x5x8xf32")], {"normalized_shape": [5, 8]}),
    ],
    "batch_norm": [([T("2x3x4x4xf32"), T("3xf32"), T("3xf32"), T("3xf32"), T("3xf32")], {})],
    "group_norm": [([T("2x6x4x4xf32"), T("6xf32"), T("6xf32")], {"groups": 3})],
    "max_pool2d": [
        ([T("1x3x8x8xf32")], {"kernel_size": [2]}),
        ([T("3x7x7xf32")], {"kernel_size": [3], "stride": [2], "padding": [1], "ceil_mode": True}),
    ],
    "avg_pool2d": [([T("1x3x8x8xf32")], {"kernel_size": [2, 2], "stride": [2, 2]})],
    "adaptive_avg_pool2d": [([T("1x3x7x9xf32")], {"output_size": [2, 3]})],
    "max_pool3d": [
        ([T("1x2x4x6x6xf32")], {"kernel_size": [2]}),
        ([T("2x5x7x7xf32")], {"kernel_size": [3, 2, 3], "stride": [2], "padding": [1], "ceil_mode": True}),
    ],
    "avg_pool3d": [([T("1x2x4x4x4xf32")], {"kernel_size": [2], "count_include_pad": False})],
    "adaptive_avg_pool3d": [([T("1x2x5x7x9xf32")], {"output_size": [2, 3, 4]})],
    "grid_sampler_2d": [
        ([T("2x3x5x6xf32"), T("2x4x7x2xf32")], {}),
        ([T("1x1x4x4xf32"), T("1x2x2x2xf32")], {"interpolation": "bicubic", "padding_mode": "reflection"}),
    ],
    "upsample_nearest2d": [([T("1x3x4x4xf32")], {"output_size": [8, 8]})],
    "embedding": [([T("10x4xf32"), T("2x3xi64")], {})],
    # -- reduce
    **{
        name: [
            ([T("2x3x4xf32")], {"dims": [1]}),
            ([T("2x3x4xf32")], {"dims": [0, -1], "keepdim": True}),
            ([T("2x3xf32")], {}),
        ]
        for name in _REDUCE
    },
    "argmax": [([T("2x3xf32")], {"dim": 1}), ([T("2x3xf32")], {})],
    "argmin": [([T("2x3xf32")], {"dim": 0, "keepdim": True})],
    "max_dim": [([T("2x3xf32")], {"dim": 1})],
    "min_dim": [([T("2x3xf32")], {"dim": 0, "keepdim": True})],
    "cumsum": [([T("2x3xf32")], {"dim": 1}), ([T("2x3xi32")], {"dim": 0})],
    "cumprod": [([T("2x3xf32")], {"dim": -1, "dtype": DType.f64})],
    "softmax": [([T("2x3xf32")], {"dim": 1})],
    "log_softmax": [([T("2x3xf32")], {"dim": -1})],
    # -- shape
    "view": [([T("2x3x4xf32")], {"shape": [6, 4]})],
    "permute": [([T("2x3x4xf32")], {"dims": [2, 0, 1]})],
    "expand": [([T("3x1xf32")], {"shape": [2, 3, 4]})],
    "slice": [([T("2x10xf32")], {"dim": 1, "start": 2, "end": 9, "step": 3})],
    "select": [([T("2x10xf32")], {"dim": 0, "index": 1})],
    "unsqueeze": [([T("2x3xf32")], {"dim": 2})],
    "squeeze": [([T("2x1x3x1xf32")], {"dims": [1]}), ([T("2x1x3x1xf32")], {})],
    "cat": [([T("2x3xf32"), T("2x5xf32")], {"dim": 1}), ([T("2x3xf32")], {"dim": 0})],
    "split": [([T("2x10xf32")], {"dim": 1, "sizes": [3, 7]}), ([T("6xf32")], {"dim": 0, "sizes": [2, 2, 2]})],
    "gather": [([T("3x4xf32"), T("2x4xi64")], {"dim": 0})],
    "index_select": [([T("3x4xf32"), T("5xi64")], {"dim": 1})],
    "index": [
        ([T("3x4x5xf32"), T("2xi64"), T("2xi64")], {"dims": [0, 1]}),
        ([T("3x4x5xf32"), T("2xi64"), T("2xi64")], {"dims": [0, 2]}),
    ],
    "flip": [([T("2x3xf32")], {"dims": [0, 1]})],
    "pad": [([T("2x3xf32")], {"pad": [1, 2]}), ([T("2x3x4xf32")], {"pad": [0, 1, -1, 0], "value": 1.5})],
    "topk": [([T("2x10xf32")], {"k": 3, "dim": 1})],
    "sort": [([T("2x10xf32")], {"dim": 1, "descending": True})],
    "triu": [([T("4x4xf32")], {"diagonal": 1})],
    "tril": [([T("2x4x4xf32")], {})],
    "repeat": [([T("2x3xf32")], {"repeats": [2, 1, 2]})],
    # -- run-time checks
    "check": [([T("bool")], {"message": "x >= 0"}), ([T("2x3xf32")], {})],
    # -- issue 13: more math, writes into a copy, strided views, bilinear resize
    **{name: [([T("2x3xf32")], {}), ([T("4xi64")], {})] for name in ("acosh", "asinh", "atanh", "lgamma", "digamma")},
    "polygamma": [([T("2x3xf32")], {"n": 1})],
    "cummax": [([T("2x3xf32")], {"dim": 1})],
    "cummin": [([T("2x3xi64")], {"dim": 0})],
    "scatter": [
        ([T("3x4xf32"), T("2x4xi64"), T("2x4xf32")], {"dim": 0}),
        ([T("3x4xf32"), T("3x2xi64"), T("3x3xf32")], {"dim": 1, "reduce": "amax", "include_self": False}),
    ],
    "index_put": [
        ([T("3x4xf32"), T("2xf32"), T("2xi64"), T("2xi64")], {"dims": [0, 1]}),
        ([T("3x4xf32"), T("f32"), T("3x4xbool")], {"dims": [0], "accumulate": True}),
    ],
    "slice_scatter": [([T("4x6xf32"), T("4x2xf32")], {"dim": 1, "start": 1, "end": 5, "step": 2})],
    "masked_scatter": [([T("3x4xf32"), T("4xbool"), T("12xf32")], {})],
    "diagonal": [([T("3x4xf32")], {"offset": 1}), ([T("2x3x4xf32")], {"dim1": 2, "dim2": 0, "offset": -1})],
    "as_strided": [([T("12xf32")], {"size": [3, 3], "stride": [3, 1], "offset": 1})],
    "as_strided_scatter": [([T("3x4xf32"), T("2x2xf32")], {"size": [2, 2], "stride": [1, 4], "offset": 1})],
    "upsample_bilinear2d": [
        ([T("1x3x4x4xf32")], {"output_size": [7, 5]}),
        ([T("1x3x4x4xf32")], {"output_size": [8, 8], "align_corners": True}),
    ],
}


def sample_results(name: str, operand_types: list[TensorType], attrs: dict) -> list[TensorType]:
    """The result types of a sample, symbol attributes resolved against ``SAMPLE_WEIGHTS``."""
    resolved = {k: Weight(v.name, SAMPLE_WEIGHTS[v.name]) if isinstance(v, SymbolRef) else v for k, v in attrs.items()}
    return infer_types(name, operand_types, resolved)


def sample_module(name: str, operand_types: list[TensorType], attrs: dict) -> Module:
    """``@sample(%0, %1, ...)`` holding one ``name`` op on its arguments and returning its results."""
    m = Module("sample")
    for v in attrs.values():
        if isinstance(v, SymbolRef):
            m.add_weight(v.name, SAMPLE_WEIGHTS[v.name])
    args = [Value(str(i), t) for i, t in enumerate(operand_types)]
    results = sample_results(name, operand_types, attrs)
    op = Op(name, args, results, attrs, None, [f"r{i}" for i in range(len(results))])
    m.funcs.append(Func("sample", args, [op], list(op.results)))
    return m
