"""Diagnostics of the frontend: each user mistake gets one clear message (asserted here)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wafercc.errors import CaptureError, ModelFileError, UnsupportedOpError
from wafercc.frontend import capture, import_graph, load_model_file


# Two ops no converter and no decomposition can take (capture decomposes what torch, wafercc or a custom op's
# own Python implementation can; frontend/decompose.py): library ops with only a CPU kernel, opaque to tracing.
_LIB = torch.library.Library("wafercc_errors_test", "DEF")
for _name in ("blur", "warp"):
    _LIB.define(f"{_name}(Tensor x) -> Tensor")
    _LIB.impl(_name, lambda x: x.clone(), "CPU")
    _LIB.impl(_name, lambda x: torch.empty_like(x), "Meta")


class Unsupported(torch.nn.Module):
    def forward(self, x):
        y = torch.ops.wafercc_errors_test.blur(x)
        z = F.normalize(y, dim=1)
        w = torch.ops.wafercc_errors_test.warp(z)
        return torch.ops.wafercc_errors_test.blur(w)


def test_unsupported_ops_are_all_listed_with_locations():
    with pytest.raises(UnsupportedOpError) as e:
        import_graph(capture(Unsupported(), (torch.randn(1, 2, 4, 4),)), name="m")
    msg = str(e.value)
    assert msg.startswith("the model uses 2 op(s) wafercc does not support (3 use(s)):")
    assert "wafercc_errors_test::blur" in msg and "wafercc_errors_test::warp" in msg
    assert "test_errors.py:" in msg
    assert "not decomposed: a custom op with no Python implementation to trace" in msg
    assert [op for op, _ in e.value.items] == [
        "wafercc_errors_test::blur",
        "wafercc_errors_test::warp",
        "wafercc_errors_test::blur",
    ]


class DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1


def test_data_dependent_control_flow_is_a_capture_error():
    with pytest.raises(CaptureError) as e:
        capture(DataDependent(), (torch.randn(3),))
    msg = str(e.value)
    assert msg.startswith("cannot capture the model with torch.export:")
    assert "test_errors.py:" in msg and "branches on tensor values" in msg


def test_data_dependent_control_flow_fx():
    with pytest.raises(CaptureError, match="torch.fx.symbolic_trace: TraceError"):
        capture(DataDependent(), (torch.randn(3),), "fx")


def test_non_module_and_non_tensor_inputs():
    with pytest.raises(CaptureError, match="expected an nn.Module"):
        capture(lambda x: x, (torch.randn(2),))
    with pytest.raises(CaptureError, match=r"example input #1 is a int"):
        capture(torch.nn.ReLU(), (torch.randn(2), 3))


def test_training_mode_buffer_update_is_refused():
    class BNTrain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = torch.nn.BatchNorm1d(4)

        def eval(self):  # a model that refuses to leave training mode
            return self

        def forward(self, x):
            return self.bn(x)

    with pytest.raises(CaptureError, match="updates buffer 'bn.running_mean'"):
        capture(BNTrain(), (torch.randn(3, 4),))


@pytest.mark.parametrize(
    "source, entry, message",
    [
        ("x = 1\n", None, "defines no 'model' or 'get_model()' for the model"),
        ("import torch\nmodel = torch.nn.ReLU()\n", None, "defines no 'example_inputs' or 'get_example_inputs()'"),
        ("import torch\nmodel = 3\nexample_inputs = (torch.ones(1),)\n", None, "'model' is a int, not an nn.Module"),
        ("import torch\nmodel = torch.nn.ReLU()\nexample_inputs = [1]\n", None, "must be a tuple of tensors"),
        ("def f(:\n", None, "syntax error in the model file"),
        ("raise ValueError('boom')\n", None, "loading the model file raised ValueError: boom"),
        ("import torch\nm = torch.nn.ReLU()\nx = (torch.ones(1),)\n", "net:inp", "defines no 'net' for the model"),
        (
            "import torch\ndef get_model():\n    raise RuntimeError('no')\nexample_inputs = ()\n",
            None,
            "get_model() raised RuntimeError: no",
        ),
    ],
)
def test_model_file_errors(tmp_path, source, entry, message):
    p = tmp_path / "model.py"
    p.write_text(source)
    with pytest.raises(ModelFileError) as e:
        load_model_file(p, entry)
    assert message in str(e.value)
    assert not str(e.value).startswith("error")  # the CLI adds the prefix
    assert e.value.render().startswith("error: ")


def test_model_file_missing_and_not_python(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_file(tmp_path / "nope.py")
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ModelFileError, match=r"is not a Python file \(.py\)"):
        load_model_file(tmp_path / "m.txt")


def test_entry_overrides_names(tmp_path):
    p = tmp_path / "model.py"
    p.write_text("import torch\nnet = torch.nn.ReLU()\ndef make():\n    return (torch.ones(2),)\n")
    model, inputs = load_model_file(p, "net:make")
    assert isinstance(model, torch.nn.ReLU) and inputs[0].shape == (2,)


# -- ops refused with their reason: each user-facing rejection, its whole line asserted ----------------

_DATA_SHAPE = "(its output shape depends on the data; wafercc compiles static shapes)"
_SIZE_MATH = "(arithmetic on a size that depends on the data)"
_RANDOM = (
    "(it draws random numbers, which the runtime cannot reproduce as torch's generator does "
    "(call model.eval() to turn dropout off))"
)
_COMPLEX_OP = "(it needs complex numbers, which wafercc does not support)"

REFUSALS = [
    pytest.param(
        lambda x: torch.nonzero(x),
        [f"aten.nonzero {_DATA_SHAPE}", f"aten.sym_size.int {_DATA_SHAPE}", f"ge {_SIZE_MATH}", f"le {_SIZE_MATH}"],
        id="nonzero",
    ),
    pytest.param(
        lambda x: torch.masked_select(x, x > 0) * 2,
        [
            f"aten.masked_select {_DATA_SHAPE}",
            f"aten.sym_size.int {_DATA_SHAPE}",
            f"ge {_SIZE_MATH}",
            f"le {_SIZE_MATH}",
        ],
        id="masked_select",
    ),
    pytest.param(
        lambda x: x * x.max().item(),
        [
            "aten._local_scalar_dense (it reads a tensor's value into Python (.item()), so what follows depends "
            "on the data)"
        ],
        id="item",
    ),
    pytest.param(lambda x: torch.fft.rfft(x).abs(), [f"aten._fft_r2c {_COMPLEX_OP}"], id="fft"),
    pytest.param(
        lambda x: torch.view_as_real(x.to(torch.complex64)),
        [
            "aten._to_copy on dtype torch.complex64 (complex numbers are not supported)",
            f"aten.view_as_real {_COMPLEX_OP}",
        ],
        id="complex-dtype",
    ),
    pytest.param(lambda x: x + torch.rand_like(x), [f"aten.rand_like {_RANDOM}"], id="random"),
    pytest.param(lambda x: F.dropout(x, 0.5, training=True), [f"aten.native_dropout {_RANDOM}"], id="dropout"),
]


class _Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize("fn, lines", REFUSALS)
def test_refused_ops_say_why(fn, lines):
    with pytest.raises(UnsupportedOpError) as e:
        import_graph(capture(_Fn(fn), (torch.randn(3, 4),)), name="m")
    msg = str(e.value).splitlines()
    assert msg[0] == f"the model uses {len(lines)} op(s) wafercc does not support ({len(lines)} use(s)):"
    assert [ln.split("  at ")[0].strip() for ln in msg[1:-1]] == lines
    assert all("test_errors.py:" in ln for ln in msg[1:-1])  # the model's line (the lambda's)
    assert msg[-1] == "see docs/ops.md for the ops wafercc supports"


def test_as_strided_scatter_refusals_say_why():
    """as_strided_scatter (the backward of as_strided) into a non-contiguous tensor, or with overlapping
    writes: one message each, naming the model's line."""
    src = torch.zeros(2, 2)
    with pytest.raises(UnsupportedOpError) as e:
        import_graph(
            capture(_Fn(lambda x: torch.as_strided_scatter(x.t(), src, (2, 2), (1, 2))), (torch.randn(3, 4),)),
            name="m",
        )
    msg = str(e.value)
    assert msg.startswith("aten.as_strided_scatter at ") and "test_errors.py:" in msg
    assert msg.endswith(
        "writes into a non-contiguous tensor, whose result depends on its memory layout, which WIR does not model"
    )
    with pytest.raises(UnsupportedOpError) as e:
        import_graph(
            capture(_Fn(lambda x: torch.as_strided_scatter(x, src, (2, 2), (1, 1))), (torch.randn(3, 4),)), name="m"
        )
    msg = str(e.value)
    assert msg.startswith("aten.as_strided_scatter at ") and "test_errors.py:" in msg
    assert msg.endswith("writes some element twice (size [2, 2], stride [1, 1]): which write wins is not defined")


def test_as_strided_of_a_non_contiguous_tensor_is_refused():
    with pytest.raises(UnsupportedOpError) as e:
        import_graph(capture(_Fn(lambda x: torch.as_strided(x.t(), (2, 2), (1, 2))), (torch.randn(3, 4),)), name="m")
    msg = str(e.value)
    assert msg.startswith("aten.as_strided at ") and "test_errors.py:" in msg
    assert msg.endswith(
        "reads a non-contiguous tensor, whose result depends on its memory layout, which WIR does not model"
    )


def test_a_non_tensor_output_is_refused():
    with pytest.raises(UnsupportedOpError) as e:
        import_graph(capture(_Fn(lambda x: (x * 2, 3)), (torch.randn(3, 4),)), name="m")
    assert str(e.value) == "the model returns 3, which is not a tensor; wafercc needs tensor outputs"


def test_a_weight_of_an_unsupported_dtype_is_refused():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("b", torch.zeros(4, dtype=torch.uint16))

        def forward(self, x):
            return x + self.b.to(torch.float32)

    with pytest.raises(UnsupportedOpError) as e:
        import_graph(capture(M(), (torch.randn(4),)), name="m")
    assert str(e.value) == "weight 'b' has dtype torch.uint16, which wafercc does not support"
