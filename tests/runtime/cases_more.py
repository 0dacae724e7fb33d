"""Sweep cases for the ops issue 13 added (run-time checks, more special functions, writes into a copy,
strided views, bilinear resize), in the format of cases.py: (op name, input arrays, attributes, tolerance)."""

from __future__ import annotations

import numpy as np

from tests.runtime.cases import C, NAN, SPECIAL, arr, bools, f32, ints, uniform

# Distinct indices along the scattered dim: with repeats, which write wins is unspecified in torch.
_PERM = np.array([[2, 0, 1, 2], [0, 1, 2, 0]], np.int64)

MORE = [
    C("check", [np.ones((2, 3), bool)], {"message": "holds"}),
    C("check", [f32(4, lo=0.5)], id="check-float"),
    C("acosh", [f32(3, 5, lo=1.0)]),
    C("asinh", [f32(3, 5, scale=3)]),
    C("atanh", [uniform(3, 5)]),
    *[C(n, [SPECIAL], id=f"{n}-special") for n in ("acosh", "asinh", "atanh")],
    C("lgamma", [f32(4, 5, scale=4)]),
    C("lgamma", [arr([0.0, -1.0, -2.5, 1.0, 2.0, 0.5, 1e-3, 30.0, 1e6])], id="lgamma-poles"),
    C("digamma", [f32(4, 5, scale=4)]),
    C("digamma", [arr([0.0, -0.0, -1.0, -2.5, 1.0, 1.4616321, 0.5, 1e-3, 30.0, 1e6])], id="digamma-special"),
    C("polygamma", [f32(4, 5, lo=0.1)], {"n": 1}),
    C("polygamma", [f32(4, 5, scale=3)], {"n": 2}, id="polygamma-2"),
    C("polygamma", [f32(4, 5, lo=0.5)], {"n": 0}, id="polygamma-0"),
    C("lgamma", [ints(5, lo=1, hi=9)], id="lgamma-int"),
    C("signbit", [SPECIAL]),
    C("signbit", [ints(6)], id="signbit-int"),
    C("cummax", [ints(3, 8, lo=0, hi=4).astype(np.float32)], {"dim": 1}),
    C("cummin", [arr([[1.0, NAN, 0.0, -1.0], [2.0, 2.0, 1.0, 1.0]])], {"dim": 1}, id="cummin-nan-ties"),
    C("cummax", [ints(4, 3, lo=0, hi=3)], {"dim": 0}, id="cummax-int"),
    C("scatter", [f32(3, 4), _PERM, f32(2, 4, seed=1)], {"dim": 0}),
    C(
        "scatter",
        [f32(3, 4), ints(3, 5, lo=0, hi=4, seed=2), f32(3, 5, seed=1)],
        {"dim": 1, "reduce": "sum"},
        id="scatter-sum",
    ),
    *[
        C(
            "scatter",
            [f32(3, 4), ints(3, 5, lo=0, hi=4, seed=2), f32(3, 5, seed=1)],
            {"dim": 1, "reduce": r, "include_self": inc},
            id=f"scatter-{r}-{inc}",
        )
        for r in ("prod", "mean", "amax", "amin")
        for inc in (True, False)
    ],
    C(
        "scatter",
        [ints(3, 4), ints(2, 4, lo=0, hi=3, seed=3), ints(2, 4, seed=4)],
        {"dim": 0, "reduce": "mean"},
        id="scatter-mean-int",
    ),
    C("index_put", [f32(3, 4), f32(2, seed=1), arr([0, 2], np.int64), arr([1, 3], np.int64)], {"dims": [0, 1]}),
    C(
        "index_put",
        [f32(3, 4), f32(2, 4, seed=1), arr([2, 2], np.int64)],
        {"dims": [0], "accumulate": True},
        id="index_put-accumulate-repeat",
    ),
    C("index_put", [f32(3, 4), arr(5.0), bools(3, 4)], {"dims": [0]}, id="index_put-mask"),
    C("slice_scatter", [f32(4, 6), f32(4, 2, seed=1)], {"dim": 1, "start": 1, "end": 5, "step": 2}),
    C("masked_scatter", [f32(3, 4), bools(4), f32(12, seed=1)]),
    C("diagonal", [f32(3, 4)], {"offset": 1}),
    C("diagonal", [f32(2, 3, 4)], {"dim1": 2, "dim2": 0, "offset": -1}, id="diagonal-dims"),
    C("diagonal", [f32(3, 4)], {"offset": 7}, id="diagonal-empty"),
    C("as_strided", [f32(12)], {"size": [3, 3], "stride": [3, 1], "offset": 1}),
    C("as_strided", [f32(3, 4)], {"size": [4, 2], "stride": [1, 4]}, id="as_strided-transpose"),
    C("as_strided_scatter", [f32(3, 4), f32(2, 2, seed=1)], {"size": [2, 2], "stride": [1, 4], "offset": 1}),
    C(
        "as_strided_scatter",
        [f32(2, 8, 8), f32(2, 2, 2, 4, 4, seed=1)],  # Swin's window partition: 4 x 4 windows of an 8 x 8 image
        {"size": [2, 2, 2, 4, 4], "stride": [64, 32, 4, 8, 1]},
        id="as_strided_scatter-windows",
    ),
    C(
        "as_strided_scatter",
        [f32(6), f32(0, 2, seed=1)],
        {"size": [0, 2], "stride": [2, 1]},
        id="as_strided_scatter-empty",
    ),
    C("upsample_bilinear2d", [f32(1, 2, 4, 5)], {"output_size": [7, 9]}),
    C(
        "upsample_bilinear2d",
        [f32(1, 2, 4, 5)],
        {"output_size": [8, 3], "align_corners": True},
        id="upsample_bilinear2d-align",
    ),
    C(
        "upsample_bilinear2d",
        [f32(1, 2, 4, 5)],
        {"output_size": [6, 8], "scales": [1.7, 1.7]},
        id="upsample_bilinear2d-scales",
    ),
    # 3-d pooling (the 2-d kernels' code over three dims) and grid sampling: their options are swept by the
    # hypothesis properties in test_runtime_props.py; here one case per option that changes the arithmetic.
    C("max_pool3d", [f32(2, 2, 5, 6, 7)], {"kernel_size": [2, 3, 2], "stride": [2], "padding": [1]}),
    C(
        "max_pool3d",
        [arr(np.round(f32(2, 5, 5, 5) * 2))],
        {"kernel_size": [3], "stride": [2], "dilation": [2, 1, 1], "ceil_mode": True},
        id="max_pool3d-ties-dilation-ceil",
    ),
    C("avg_pool3d", [f32(1, 2, 5, 6, 7)], {"kernel_size": [3], "stride": [2], "padding": [1], "ceil_mode": True}),
    C(
        "avg_pool3d",
        [f32(2, 5, 6, 7)],
        {"kernel_size": [3, 2, 2], "padding": [1, 1, 0], "count_include_pad": False, "ceil_mode": True},
        id="avg_pool3d-exclude-pad",
    ),
    C("avg_pool3d", [f32(1, 2, 4, 4, 4)], {"kernel_size": [2], "divisor_override": 3}, id="avg_pool3d-divisor"),
    C("adaptive_avg_pool3d", [f32(2, 2, 5, 7, 4)], {"output_size": [3, 4, 6]}),
    C(
        "adaptive_avg_pool3d",
        [arr([[[[1.0, NAN], [2.0, 3.0]], [[np.inf, 1.0], [-np.inf, 4.0]]]])],
        {"output_size": [2, 1, 2]},
        id="adaptive_avg_pool3d-nonfinite",
    ),
    *[
        C(
            "grid_sampler_2d",
            [f32(2, 3, 5, 6), uniform(2, 4, 7, 2, lo=-1.3, hi=1.3, seed=1)],
            {"interpolation": mode, "padding_mode": pad, "align_corners": ac},
            id=f"grid_sampler_2d-{mode}-{pad}-{'align' if ac else 'noalign'}",
        )
        for mode in ("bilinear", "nearest", "bicubic")
        for pad in ("zeros", "border", "reflection")
        for ac in (False, True)
    ],
    # Edges: an empty batch, an empty grid, a 1x1 input (reflection over a zero span), an empty 3-d batch.
    C(
        "grid_sampler_2d",
        [f32(0, 3, 4, 5), f32(0, 2, 3, 2)],
        {"interpolation": "bicubic"},
        id="grid_sampler_2d-no-batch",
    ),
    C("grid_sampler_2d", [f32(2, 3, 4, 5), f32(2, 0, 3, 2)], id="grid_sampler_2d-empty-grid"),
    C(
        "grid_sampler_2d",
        [f32(1, 2, 1, 1), uniform(1, 2, 3, 2, lo=-2, hi=2)],
        {"padding_mode": "reflection", "align_corners": True},
        id="grid_sampler_2d-1x1-reflection",
    ),
    C("max_pool3d", [f32(0, 2, 4, 4, 4)], {"kernel_size": [2]}, id="max_pool3d-no-batch"),
    C("adaptive_avg_pool3d", [f32(0, 2, 3, 4, 5)], {"output_size": [2, 2, 2]}, id="adaptive_avg_pool3d-no-batch"),
]
