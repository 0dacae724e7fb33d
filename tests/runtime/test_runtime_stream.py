"""Streamed results (``Interpreter(..., stream=...)``, ``run(on_stream=...)``): each is handed out as soon as it
is computed, or after the last read of the weights it waits for, then dropped; the others are returned."""

from __future__ import annotations

import numpy as np
import pytest

from runtime import Interpreter
from runtime.store import MemoryStore
from wafercc.ir import parse

# %g is computed before the last read of @w (through its permute, by %b): a gradient streamed to an optimizer
# that updates @w in place must wait for that read.
TEXT = """module @m {
  weight @w : tensor<4x4xf32>
  func @forward(%x: tensor<2x4xf32>) -> (tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>) {
    %w = weight.get @w : tensor<4x4xf32>
    %a = mm %x, %w : tensor<2x4xf32>
    %g = relu %a : tensor<2x4xf32>
    %wt = permute %w {dims = [1, 0]} : tensor<4x4xf32>
    %b = mm %a, %wt : tensor<2x4xf32>
    %c = relu %b : tensor<2x4xf32>
    return %c, %g, %x, %a
  }
}
"""


def _run(stream, returned=None):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4)).astype(np.float32)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    events: list[str] = []
    got: dict[int, np.ndarray] = {}

    def on_stream(pos, value):
        events.append(f"stream {pos}")
        got[pos] = np.array(value)

    it = Interpreter(parse(TEXT), MemoryStore({"w": w}), stream=stream)
    res = it.run([x], on_result=lambda op, out: events.append(op.name), on_stream=on_stream)
    a = x @ w
    want = [np.maximum(a @ w.T, 0), np.maximum(a, 0), x, a]
    return events, got, res.outputs, want


def test_a_streamed_result_is_handed_out_when_computed_and_not_returned():
    events, got, outputs, want = _run({1: ()})
    assert events == ["weight.get", "mm", "relu", "stream 1", "permute", "mm", "relu"]
    np.testing.assert_array_equal(got[1], want[1])
    assert outputs[1] is None
    for i in (0, 2, 3):
        np.testing.assert_array_equal(outputs[i], want[i])


def test_a_streamed_result_waits_for_the_last_read_of_its_weight():
    events, got, outputs, want = _run({1: ("w",)})
    assert events == ["weight.get", "mm", "relu", "permute", "mm", "stream 1", "relu"]
    np.testing.assert_array_equal(got[1], want[1])


def test_a_streamed_result_waits_for_its_last_use_an_argument_for_the_first_op():
    events, got, outputs, want = _run({3: (), 2: ()})
    # %x (an argument returned as is) goes out after the op that last reads it; %a after the second mm
    assert events == ["weight.get", "mm", "stream 2", "relu", "permute", "mm", "stream 3", "relu"]
    np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_array_equal(got[3], want[3])
    assert outputs[2] is None and outputs[3] is None
    np.testing.assert_array_equal(outputs[0], want[0])


def test_an_argument_no_op_reads_is_handed_out_after_the_first_op():
    text = """module @n {
  func @forward(%x: tensor<2xf32>, %y: tensor<2xf32>) -> (tensor<2xf32>, tensor<2xf32>) {
    %a = relu %x : tensor<2xf32>
    %b = relu %a : tensor<2xf32>
    return %b, %y
  }
}
"""
    events: list = []
    x, y = np.array([-1, 2], np.float32), np.array([3, 4], np.float32)
    it = Interpreter(parse(text), stream={1: ()}, plan=False)
    res = it.run([x, y], on_result=lambda op, out: events.append(op.name), on_stream=lambda p, v: events.append(v))
    assert events[:1] == ["relu"] and events[2:] == ["relu"]
    np.testing.assert_array_equal(events[1], y)
    np.testing.assert_array_equal(res.outputs[0], [0, 2])
    assert res.outputs[1] is None


def test_a_value_also_returned_unstreamed_is_streamed_at_the_end_and_still_returned():
    text = TEXT.replace("return %c, %g, %x, %a", "return %c, %g, %x, %g")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4)).astype(np.float32)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    events: list[str] = []
    it = Interpreter(parse(text), MemoryStore({"w": w}), stream={1: ()})
    res = it.run([x], on_result=lambda op, out: events.append(op.name), on_stream=lambda p, v: events.append(p))
    assert events[-1] == 1 and events.count(1) == 1
    np.testing.assert_array_equal(res.outputs[3], np.maximum(x @ w, 0))
    assert res.outputs[1] is None


def test_run_without_on_stream_is_refused():
    it = Interpreter(parse(TEXT), MemoryStore({"w": np.zeros((4, 4), np.float32)}), stream={1: ()})
    with pytest.raises(TypeError, match=r"streams results \[1\]: run\(\) needs on_stream"):
        it.run([np.zeros((2, 4), np.float32)])
    with pytest.raises(ValueError, match="has no result 4"):
        Interpreter(parse(TEXT), MemoryStore({"w": np.zeros((4, 4), np.float32)}), stream={4: ()})
