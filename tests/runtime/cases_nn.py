"""Sweep cases for the nn, shape and create families (see cases.py for the format)."""

from __future__ import annotations

import numpy as np

from tests.runtime.cases import BF16, BF16_TOL, F16_TOL, INF, NAN, C, arr, bools, f32, ints
from wafercc.ir import DType

# Convolutions sum up to a few dozen products per output in another order than torch's oneDNN kernels;
# an output that cancels to near zero can differ by a few 1e-6 absolute, hence atol 1e-5.
CONV_TOL = (1e-5, 1e-5)


def _conv(x, w, b=None, tol=CONV_TOL, id=None, **attrs):
    return C("convolution", [x, w] + ([b] if b is not None else []), attrs, tol, id=id)


NN = [
    C("mm", [f32(4, 5, seed=1), f32(5, 3, seed=2)]),
    C("mm", [ints(4, 5, seed=1), ints(5, 3, seed=2)], id="mm-int"),
    C("mm", [f32(4, 64, seed=1).astype(BF16), f32(64, 3, seed=2).astype(BF16)], tol=BF16_TOL, id="mm-bf16"),
    C("bmm", [f32(2, 3, 4, seed=1), f32(2, 4, 5, seed=2)]),
    C("addmm", [f32(3, seed=3), f32(2, 4, seed=1), f32(4, 3, seed=2)]),
    C(
        "addmm",
        [f32(2, 3, seed=3), f32(2, 4, seed=1), f32(4, 3, seed=2)],
        {"beta": 0.5, "alpha": 2.0},
        id="addmm-scaled",
    ),
    C("addmm", [arr([NAN, 1.0, INF]), f32(2, 4, seed=1), f32(4, 3, seed=2)], {"beta": 0}, id="addmm-beta0-nan"),
    _conv(f32(2, 3, 7, 7, seed=1), f32(4, 3, 3, 3, seed=2), f32(4, seed=3), padding=[1], id="conv2d"),
    _conv(
        f32(2, 3, 9, 8, seed=1),
        f32(4, 3, 3, 2, seed=2),
        stride=[2],
        padding=[1, 2],
        dilation=[2, 1],
        id="conv2d-stride-dilation",
    ),
    _conv(
        f32(1, 4, 8, 8, seed=1),
        f32(6, 2, 3, 3, seed=2),
        f32(6, seed=3),
        stride=[2],
        padding=[2],
        dilation=[2],
        groups=2,
        id="conv2d-groups-dilation",
    ),
    _conv(f32(1, 4, 6, 6, seed=1), f32(4, 1, 3, 3, seed=2), padding=[1], groups=4, id="conv2d-depthwise"),
    _conv(
        f32(2, 3, 10, seed=1), f32(5, 3, 3, seed=2), f32(5, seed=3), stride=[2], padding=[1], dilation=[2], id="conv1d"
    ),
    _conv(f32(1, 2, 5, 5, 5, seed=1), f32(3, 2, 3, 3, 3, seed=2), stride=[2], padding=[1], id="conv3d"),
    _conv(
        f32(1, 4, 5, 5, seed=1),
        f32(4, 3, 3, 3, seed=2),
        f32(3, seed=3),
        stride=[2],
        padding=[1],
        output_padding=[1],
        transposed=True,
        id="conv2d-transposed",
    ),
    _conv(
        f32(1, 4, 4, 4, seed=1),
        f32(4, 2, 3, 3, seed=2),
        stride=[2],
        padding=[2],
        dilation=[2],
        output_padding=[1],
        groups=2,
        transposed=True,
        id="conv2d-transposed-groups-dilation",
    ),
    _conv(
        f32(2, 3, 6, seed=1),
        f32(3, 2, 4, seed=2),
        stride=[3],
        output_padding=[2],
        transposed=True,
        id="conv1d-transposed",
    ),
    _conv(
        f32(1, 2, 3, 3, 3, seed=1),
        f32(2, 2, 2, 2, 2, seed=2),
        stride=[2],
        padding=[1],
        transposed=True,
        id="conv3d-transposed",
    ),
    _conv(f32(1, 8, 6, 6, seed=1).astype(BF16), f32(4, 8, 3, 3, seed=2).astype(BF16), tol=BF16_TOL, id="conv2d-bf16"),
    C("layer_norm", [f32(2, 3, 8, seed=1, scale=3), f32(8, seed=2), f32(8, seed=3)], {"normalized_shape": [8]}),
    C(
        "layer_norm",
        [f32(2, 3, 8, seed=1), f32(3, 8, seed=2), f32(3, 8, seed=3)],
        {"normalized_shape": [3, 8], "eps": 1e-3},
        id="layer_norm-2d",
    ),
    C("layer_norm", [f32(4, 6, seed=1)], {"normalized_shape": [6]}, id="layer_norm-no-affine"),
    C("batch_norm", [f32(2, 3, 4, 4, seed=1), f32(3, seed=2), f32(3, seed=3, lo=0.5), f32(3, seed=4), f32(3, seed=5)]),
    C(
        "batch_norm",
        [f32(2, 3, 5, seed=1), f32(3, seed=2), f32(3, seed=3, lo=0.5)],
        {"eps": 1e-3},
        id="batch_norm-stats-only",
    ),
    C(
        "batch_norm",
        [f32(2, 3, seed=1), f32(3, seed=2), f32(3, seed=3, lo=0.5), f32(3, seed=4)],
        id="batch_norm-weight-only",
    ),
    C("group_norm", [f32(2, 6, 3, 3, seed=1, scale=2), f32(6, seed=2), f32(6, seed=3)], {"groups": 3}),
    C("group_norm", [f32(2, 4, 5, seed=1)], {"groups": 2, "eps": 1e-3}, id="group_norm-no-affine"),
    C("max_pool2d", [f32(2, 3, 7, 7, seed=1)], {"kernel_size": [3], "stride": [2], "padding": [1]}),
    C(
        "max_pool2d",
        [f32(1, 2, 8, 8, seed=1)],
        {"kernel_size": [3], "stride": [2], "ceil_mode": True},
        id="max_pool2d-ceil",
    ),
    C(
        "max_pool2d",
        [f32(1, 2, 9, 7, seed=1)],
        {"kernel_size": [3, 2], "stride": [2, 3], "padding": [1, 1], "ceil_mode": True},
        id="max_pool2d-ceil-pad",
    ),
    C(
        "max_pool2d",
        [f32(1, 2, 9, 9, seed=1)],
        {"kernel_size": [3], "stride": [1], "padding": [1], "dilation": [2]},
        id="max_pool2d-dilation",
    ),
    C("max_pool2d", [f32(2, 5, 5, seed=1)], {"kernel_size": [2]}, id="max_pool2d-3d-default-stride"),
    C(
        "max_pool2d",
        [np.where(bools(1, 1, 4, 4, seed=3), NAN, f32(1, 1, 4, 4)).astype(np.float32)],
        {"kernel_size": [2], "stride": [1]},
        id="max_pool2d-nan",
    ),
    C(
        "max_pool2d",
        [np.full((1, 1, 4, 4), -INF, np.float32)],
        {"kernel_size": [3], "stride": [2], "padding": [1]},
        id="max_pool2d-all-neg-inf",
    ),
    C("avg_pool2d", [f32(2, 3, 6, 6, seed=1)], {"kernel_size": [2]}),
    C(
        "avg_pool2d",
        [f32(1, 2, 7, 7, seed=1)],
        {"kernel_size": [3], "stride": [2], "padding": [1]},
        id="avg_pool2d-pad",
    ),
    C(
        "avg_pool2d",
        [f32(1, 2, 7, 7, seed=1)],
        {"kernel_size": [3], "stride": [2], "padding": [1], "count_include_pad": False},
        id="avg_pool2d-pad-exclude",
    ),
    C(
        "avg_pool2d",
        [f32(1, 2, 8, 8, seed=1)],
        {"kernel_size": [3], "stride": [2], "padding": [1], "ceil_mode": True},
        id="avg_pool2d-ceil",
    ),
    C(
        "avg_pool2d",
        [f32(1, 2, 8, 8, seed=1)],
        {"kernel_size": [3], "stride": [2], "padding": [1], "ceil_mode": True, "count_include_pad": False},
        id="avg_pool2d-ceil-exclude",
    ),
    C(
        "avg_pool2d",
        [f32(1, 2, 6, 6, seed=1)],
        {"kernel_size": [3, 2], "stride": [2, 1], "divisor_override": 3},
        id="avg_pool2d-divisor",
    ),
    C("adaptive_avg_pool2d", [f32(2, 3, 7, 9, seed=1)], {"output_size": [3, 4]}),
    C("adaptive_avg_pool2d", [f32(2, 3, 5, 5, seed=1)], {"output_size": [1, 1]}, id="adaptive_avg_pool2d-global"),
    C("adaptive_avg_pool2d", [f32(3, 4, 6, seed=1)], {"output_size": [5, 6]}, id="adaptive_avg_pool2d-3d"),
    C("upsample_nearest2d", [f32(1, 2, 3, 4, seed=1)], {"output_size": [6, 8]}),
    C("upsample_nearest2d", [f32(1, 2, 3, 4, seed=1)], {"output_size": [5, 7]}, id="upsample_nearest2d-odd"),
    C("upsample_nearest2d", [f32(1, 2, 7, 9, seed=1)], {"output_size": [3, 4]}, id="upsample_nearest2d-down"),
    C("embedding", [f32(10, 4, seed=1), ints(2, 3, lo=0, hi=10)]),
    C("embedding", [f32(10, 4, seed=1), ints(5, lo=0, hi=10, dtype=np.int32)], {"padding_idx": 0}, id="embedding-i32"),
]

_X = f32(2, 3, 4, seed=7)
SHAPE = [
    C("view", [_X], {"shape": [6, 4]}),
    C("permute", [_X], {"dims": [2, 0, 1]}),
    C("expand", [f32(3, 1)], {"shape": [2, 3, 4]}),
    C("slice", [_X], {"dim": 2, "start": 1, "end": 4, "step": 2}),
    C("slice", [_X], {"dim": 0, "start": 1, "end": 1}, id="slice-empty"),
    C("select", [_X], {"dim": 1, "index": 2}),
    C("select", [f32(5)], {"dim": 0, "index": 3}, id="select-to-0d"),
    C("unsqueeze", [_X], {"dim": 3}),
    C("squeeze", [f32(2, 1, 3, 1)], {"dims": [1]}),
    C("squeeze", [f32(2, 1, 3, 1)], id="squeeze-all"),
    C("cat", [_X, f32(2, 1, 4, seed=1), f32(2, 2, 4, seed=2)], {"dim": 1}),
    C("cat", [f32(2, 3), ints(2, 2)], {"dim": 1}, id="cat-promote"),
    C("split", [_X], {"dim": 2, "sizes": [1, 3, 0]}),
    C("gather", [f32(3, 4), ints(2, 2, lo=0, hi=4)], {"dim": 1}),
    C("gather", [_X, ints(2, 3, 4, lo=0, hi=2)], {"dim": 0}, id="gather-dim0"),
    C("index_select", [_X, ints(3, lo=0, hi=3)], {"dim": 1}),
    C("index", [_X, ints(2, 5, lo=-2, hi=2)], {"dims": [0]}),
    C("index", [f32(4, 5, 6), ints(2, 3, lo=0, hi=4), ints(3, lo=-6, hi=6)], {"dims": [0, 2]}, id="index-non-adjacent"),
    C("index", [f32(4, 5, 6), ints(2, 1, lo=0, hi=5), ints(3, lo=0, hi=6)], {"dims": [1, 2]}, id="index-adjacent"),
    C(
        "index",
        [f32(3, 4, 5, 6), ints(2, lo=0, hi=4), ints(2, lo=0, hi=6)],
        {"dims": [1, 3]},
        id="index-non-adjacent-mid",
    ),
    C("flip", [_X], {"dims": [0, 2]}),
    C("pad", [_X], {"pad": [1, 2], "value": 0.5}),
    C("pad", [_X], {"pad": [1, -1, -1, 2, 0, 1]}, id="pad-negative-crop"),
    C("pad", [ints(3, 4)], {"pad": [2, 0, 0, 1], "value": 7}, id="pad-int"),
    C("topk", [f32(3, 8, seed=4)], {"k": 3, "dim": 1}),
    C("topk", [f32(6, 3, seed=4)], {"k": 2, "dim": 0, "largest": False}, id="topk-smallest"),
    C("sort", [f32(3, 8, seed=4)], {"dim": 1}),
    C("sort", [ints(3, 8, lo=0, hi=3)], {"dim": 1, "descending": True, "stable": True}, id="sort-ties-descending"),
    C("sort", [ints(3, 8, lo=0, hi=3)], {"dim": 1, "stable": True}, id="sort-ties"),
    C("sort", [arr([3.0, NAN, -1.0, INF, NAN, 0.0])], {"dim": 0, "descending": True}, id="sort-nan-descending"),
    C("sort", [arr([3.0, NAN, -1.0, INF, NAN, 0.0])], {"dim": 0}, id="sort-nan"),
    C("triu", [_X], {"diagonal": 1}),
    C("tril", [_X], {"diagonal": -1}),
    C("tril", [bools(4, 4)], id="tril-bool"),
    C("repeat", [f32(2, 3)], {"repeats": [2, 1, 3]}),
]

CREATE = [
    C("constant", [], {"dtype": DType.f32, "value": 2.0}),
    C("constant", [], {"dtype": DType.i64, "value": [[1, -2], [3, 4]]}, id="constant-nested-int"),
    C("constant", [], {"dtype": DType.bf16, "value": [0.1, 1e-3, 3.0e38]}, id="constant-bf16"),
    C("constant", [], {"dtype": DType.f32, "value": [1, 2.5, -INF, NAN]}, id="constant-mixed"),
    C("constant", [], {"dtype": DType.bool, "value": [True, False]}, id="constant-bool"),
    C("full", [], {"shape": [2, 3], "value": 1.5, "dtype": DType.f32}),
    C("full", [], {"shape": [4], "value": 7, "dtype": DType.i32}, id="full-int"),
    C("full", [], {"shape": [2], "value": 0.1, "dtype": DType.bf16}, id="full-bf16"),
    C("full", [], {"shape": [3], "value": True, "dtype": DType.bool}, id="full-bool"),
    C("arange", [], {"end": 10.0}),
    C("arange", [], {"start": 0.1, "end": 3.0, "step": 0.3, "dtype": DType.f32}, id="arange-float"),
    C("arange", [], {"start": 0.5, "end": 5.5, "dtype": DType.i64}, id="arange-int-truncates"),
    C("arange", [], {"start": 3.0, "end": -3.0, "step": -0.5, "dtype": DType.f32}, id="arange-negative-step"),
    C("arange", [], {"start": 0.0, "end": 3.0, "step": 0.3, "dtype": DType.bf16}, id="arange-bf16"),
]

# Reduced precision through every family: each kernel computes in f32 and rounds once at the end.
_B = f32(2, 3, 6, 6, seed=9).astype(BF16)
_H = f32(2, 3, 6, 6, seed=9).astype(np.float16)
HALF = [
    C("pad", [_B], {"pad": [1, -1], "value": 0.1}, id="pad-bf16"),
    C("sort", [_B], {"dim": 3, "descending": True, "stable": True}, id="sort-bf16"),
    C("topk", [f32(3, 9, seed=2).astype(BF16)], {"k": 2, "dim": 1}, id="topk-bf16"),
    C("cat", [f32(2, 3).astype(BF16), f32(2, 3)], {"dim": 0}, id="cat-bf16-f32"),
    C("where", [bools(3, 4), f32(3, 4).astype(BF16), f32(3, 4, seed=1).astype(BF16)], id="where-bf16"),
    C("clamp", [f32(8, scale=3).astype(BF16)], {"min": -0.1, "max": 1.3}, id="clamp-bf16"),
    C("amax", [_B], {"dims": [2, 3]}, id="amax-bf16"),
    C("argmax", [_H], {"dim": 1}, id="argmax-f16"),
    C("max_dim", [_B], {"dim": 3}, id="max_dim-bf16"),
    C("var", [_H], {"dims": [3]}, F16_TOL, id="var-f16"),
    C("max_pool2d", [_B], {"kernel_size": [2], "padding": [1]}, id="max_pool2d-bf16"),
    C("avg_pool2d", [_H], {"kernel_size": [3], "stride": [2], "padding": [1]}, F16_TOL, id="avg_pool2d-f16"),
    C("adaptive_avg_pool2d", [_B], {"output_size": [4, 4]}, BF16_TOL, id="adaptive_avg_pool2d-bf16"),
    C("upsample_nearest2d", [_H], {"output_size": [9, 12]}, id="upsample_nearest2d-f16"),
    C(
        "layer_norm",
        [_B, f32(6, seed=1).astype(BF16), f32(6, seed=2).astype(BF16)],
        {"normalized_shape": [6]},
        BF16_TOL,
        id="layer_norm-bf16",
    ),
    C(
        "group_norm",
        [_H, f32(3, seed=1).astype(np.float16), f32(3, seed=2).astype(np.float16)],
        {"groups": 3},
        F16_TOL,
        id="group_norm-f16",
    ),
    C("batch_norm", [_B] + [f32(3, seed=s, lo=0.5).astype(BF16) for s in range(4)], {}, BF16_TOL, id="batch_norm-bf16"),
    C("embedding", [f32(10, 4).astype(BF16), ints(3, lo=0, hi=10)], id="embedding-bf16"),
    C("mm", [f32(4, 16, seed=1).astype(np.float16), f32(16, 3, seed=2).astype(np.float16)], tol=F16_TOL, id="mm-f16"),
    C("bmm", [f32(2, 3, 16, seed=1).astype(BF16), f32(2, 16, 5, seed=2).astype(BF16)], tol=BF16_TOL, id="bmm-bf16"),
    C(
        "addmm",
        [f32(3).astype(BF16), f32(2, 16, seed=1).astype(BF16), f32(16, 3, seed=2).astype(BF16)],
        tol=BF16_TOL,
        id="addmm-bf16",
    ),
    C("sum", [_H], {"dims": [1, 2]}, F16_TOL, id="sum-f16"),
    C("softmax", [_H], {"dim": 3}, F16_TOL, id="softmax-f16"),
    C("triu", [_B], {"diagonal": 0}, id="triu-bf16"),
]
