"""Property tests: convolution and pooling over random legal configurations, against torch.ops.aten.

The op table decides which configurations are legal (its result-type rule); for every one of them the
runtime and torch must agree on shape, dtype, values and (for max pooling) indices.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runtime import Interpreter
from tests.runtime.aten_ref import aten_run
from tests.runtime.test_runtime_ops import _assert_same, one_op_module
from wafercc.ops import ShapeError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(name, inputs, attrs, tol=None):
    try:
        m = one_op_module(name, inputs, attrs)
    except Exception as e:  # an illegal configuration: the op table's verifier refuses it
        assume(not isinstance(e, (ShapeError,)) and "operand-types" not in str(e))
        raise
    got = Interpreter(m).run(inputs).outputs
    for g, w in zip(got, aten_run(m, inputs)):
        _assert_same(g, w, tol)


@st.composite
def conv_cases(draw):
    nsp = draw(st.sampled_from([1, 2, 2, 3]))
    g, cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    transposed = draw(st.booleans())

    def per_dim(lo, hi):
        return draw(st.lists(st.integers(lo, hi), min_size=nsp, max_size=nsp))

    k, stride, pad, dil = per_dim(1, 3), per_dim(1, 3), per_dim(0, 2), per_dim(1, 2)
    size = per_dim(1, 7 if nsp < 3 else 4)
    # torch requires output_padding < stride or < dilation.
    opad = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dil)] if transposed else [0] * nsp
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((2, g * cg, *size)).astype(np.float32)
    wshape = (g * cg, og, *k) if transposed else (g * og, cg, *k)
    inputs = [x, rng.standard_normal(wshape).astype(np.float32)]
    if draw(st.booleans()):
        inputs.append(rng.standard_normal(g * og).astype(np.float32))
    attrs = {
        "stride": stride,
        "padding": pad,
        "dilation": dil,
        "transposed": transposed,
        "output_padding": opad,
        "groups": g,
    }
    return inputs, attrs


@SETTINGS
@given(conv_cases())
def test_convolution_matches_aten(case):
    inputs, attrs = case
    _check("convolution", inputs, attrs, tol=(1e-5, 1e-5))  # see CONV_TOL in cases_nn.py


@st.composite
def pool_cases(draw, kind):
    nsp = 3 if kind.endswith("3d") else 2
    k = [draw(st.integers(1, 4 if nsp == 2 else 3)) for _ in range(nsp)]
    strides = [[], [1], [2], [3, 1], [2, 3]] if nsp == 2 else [[], [1], [2], [2, 1, 3]]
    attrs = {
        "kernel_size": k,
        "stride": draw(st.sampled_from(strides)),
        "padding": [draw(st.integers(0, kk // 2)) for kk in k],
        "ceil_mode": draw(st.booleans()),
    }
    if kind.startswith("max_pool"):
        attrs["dilation"] = draw(st.sampled_from([[1], [2], [1, 2]] if nsp == 2 else [[1], [2], [1, 2, 1]]))
    else:
        attrs["count_include_pad"] = draw(st.booleans())
        attrs["divisor_override"] = draw(st.sampled_from([None, None, 1, 3]))
    batch = (draw(st.integers(1, 2)),) if nsp == 2 or draw(st.booleans()) else ()  # 3-d: [C, D, H, W] too
    spatial = tuple(draw(st.integers(1, 9 if nsp == 2 else 6)) for _ in range(nsp))
    x = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(batch + (2,) + spatial).astype(np.float32)
    if kind.startswith("max_pool") and draw(st.booleans()):
        x = np.round(x)  # ties: torch keeps the first maximum of a window
    return [x], attrs


@SETTINGS
@given(pool_cases("max_pool2d"))
def test_max_pool2d_matches_aten(case):
    _check("max_pool2d", *case)


@SETTINGS
@given(pool_cases("avg_pool2d"))
def test_avg_pool2d_matches_aten(case):
    _check("avg_pool2d", *case)


@SETTINGS
@given(pool_cases("max_pool3d"))
def test_max_pool3d_matches_aten(case):
    _check("max_pool3d", *case)


@SETTINGS
@given(pool_cases("avg_pool3d"))
def test_avg_pool3d_matches_aten(case):
    _check("avg_pool3d", *case)


@SETTINGS
@given(st.lists(st.integers(1, 6), min_size=3, max_size=3), st.lists(st.integers(1, 7), min_size=3, max_size=3))
def test_adaptive_avg_pool3d_matches_aten(size, out):
    x = np.random.default_rng(sum(size)).standard_normal((1, 2, *size)).astype(np.float32)
    _check("adaptive_avg_pool3d", [x], {"output_size": out})


@st.composite
def grid_cases(draw):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h, w, ho, wo = (draw(st.integers(1, 6)) for _ in range(4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    reach = draw(st.sampled_from([1.0, 1.2, 3.0]))  # beyond 1: points outside the input, read by padding_mode
    grid = rng.uniform(-reach, reach, (n, ho, wo, 2)).astype(np.float32)
    if draw(st.booleans()):  # points on pixel centers, edges and halfway: where floor and round decide
        grid = (np.round(grid * 4) / 4).astype(np.float32)
    attrs = {
        "interpolation": draw(st.sampled_from(["bilinear", "nearest", "bicubic"])),
        "padding_mode": draw(st.sampled_from(["zeros", "border", "reflection"])),
        "align_corners": draw(st.booleans()),
    }
    return [x, grid], attrs


@SETTINGS
@given(grid_cases())
def test_grid_sampler_2d_matches_aten(case):
    _check("grid_sampler_2d", *case)


@SETTINGS
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9), st.integers(1, 9))
def test_adaptive_avg_pool2d_matches_aten(h, w, oh, ow):
    x = np.random.default_rng(h * 100 + w).standard_normal((1, 2, h, w)).astype(np.float32)
    _check("adaptive_avg_pool2d", [x], {"output_size": [oh, ow]})


@SETTINGS
@given(st.integers(1, 7), st.integers(1, 7), st.integers(1, 15), st.integers(1, 15))
def test_upsample_nearest2d_matches_aten(h, w, oh, ow):
    x = np.random.default_rng(h * 100 + w).standard_normal((1, 2, h, w)).astype(np.float32)
    _check("upsample_nearest2d", [x], {"output_size": [oh, ow]})
