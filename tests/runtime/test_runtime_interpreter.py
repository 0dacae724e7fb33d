"""The interpreter: weight streaming and its statistics, freeing values, layers, input and kernel errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime import InputError, Interpreter, RuntimeExecutionError, Store, StoreError, write_store
from wafercc.ir import WaferError, parse

ROOT = Path(__file__).resolve().parents[2]

# Every weight.get sits at the top, as a frontend may emit them; the interpreter streams each one in
# just before its layer needs it anyway.
MLP = """module @mlp {
  weight @fc1.weight : tensor<32x16xf32>
  weight @fc1.bias : tensor<32xf32>
  weight @fc2.weight : tensor<32x32xf32>
  weight @fc3.weight : tensor<8x32xf32>
  func @forward(%x: tensor<4x16xf32>) -> (tensor<4x8xf32>) {
    %w1 = weight.get @fc1.weight : tensor<32x16xf32>
    %b1 = weight.get @fc1.bias : tensor<32xf32>
    %w2 = weight.get @fc2.weight : tensor<32x32xf32>
    %w3 = weight.get @fc3.weight : tensor<8x32xf32>
    %w1t = permute %w1 {dims = [1, 0]} : tensor<16x32xf32> loc("mlp.py":10)
    %h1 = addmm %b1, %x, %w1t : tensor<4x32xf32> loc("mlp.py":10)
    %a1 = relu %h1 : tensor<4x32xf32> loc("mlp.py":11)
    %w2t = permute %w2 {dims = [1, 0]} : tensor<32x32xf32> loc("mlp.py":12)
    %h2 = mm %a1, %w2t : tensor<4x32xf32> loc("mlp.py":12)
    %a2 = relu %h2 : tensor<4x32xf32> loc("mlp.py":13)
    %w3t = permute %w3 {dims = [1, 0]} : tensor<32x8xf32> loc("mlp.py":14)
    %h3 = mm %a2, %w3t : tensor<4x8xf32> loc("mlp.py":14)
    return %h3
  }
}
"""


def _mlp_weights():
    rng = np.random.default_rng(1)
    return {
        "fc1.weight": rng.standard_normal((32, 16)).astype(np.float32),
        "fc1.bias": rng.standard_normal(32).astype(np.float32),
        "fc2.weight": rng.standard_normal((32, 32)).astype(np.float32),
        "fc3.weight": rng.standard_normal((8, 32)).astype(np.float32),
    }


@pytest.fixture
def mlp_dir(tmp_path):
    write_store(tmp_path, _mlp_weights())
    (tmp_path / "model.wir").write_text(MLP)
    return tmp_path


def _mlp_numpy(x, w):
    a1 = np.maximum(x @ w["fc1.weight"].T + w["fc1.bias"], 0)
    return np.maximum(a1 @ w["fc2.weight"].T, 0) @ w["fc3.weight"].T


def test_mlp_streams_each_weight_once_and_keeps_few_resident(mlp_dir):
    w = _mlp_weights()
    st = Store(mlp_dir)
    x = np.random.default_rng(2).standard_normal((4, 16)).astype(np.float32)
    res = Interpreter(parse(MLP), st).run([x])
    np.testing.assert_allclose(res.outputs[0], _mlp_numpy(x, w), rtol=1e-5, atol=1e-5)
    total = sum(a.nbytes for a in w.values())
    assert res.stats.weight_bytes_streamed == total == st.bytes_read
    assert res.stats.peak_resident_weight_bytes < total
    # The largest layer is fc2 (4 KiB); fc1's weight and bias (2.125 KiB) are gone by then.
    assert res.stats.peak_resident_weight_bytes == w["fc2.weight"].nbytes
    layers = [(layer.name, layer.ops) for layer in res.stats.layers]
    assert layers == [("fc1.weight", 5), ("fc2.weight", 4), ("fc3.weight", 3)]
    assert [layer.weight_bytes for layer in res.stats.layers] == [2176, 4096, 1024]


def test_text_order_keeps_every_weight_resident(mlp_dir):
    res = Interpreter(parse(MLP), Store(mlp_dir), lazy_weights=False).run([np.zeros((4, 16), np.float32)])
    assert res.stats.peak_resident_weight_bytes == sum(a.nbytes for a in _mlp_weights().values())


def test_unused_weights_are_never_read(tmp_path):
    write_store(tmp_path, {"a": np.ones(4, np.float32), "b": np.ones(1000, np.float32)})
    text = """module @m {
  weight @a : tensor<4xf32>
  weight @b : tensor<1000xf32>
  func @forward(%x: tensor<4xf32>) -> (tensor<4xf32>) {
    %a = weight.get @a : tensor<4xf32>
    %y = add %x, %a : tensor<4xf32>
    return %y
  }
}"""
    st = Store(tmp_path)
    res = Interpreter(parse(text), st).run([np.ones(4, np.float32)])
    assert st.reads == {"a": 1} and res.stats.weight_bytes_streamed == 16


def _chain(n: int) -> str:
    body = "\n".join(f"    %v{i + 1} = exp %v{i} : tensor<256x256xf32>" for i in range(n))
    return f"""module @chain {{
  func @forward(%v0: tensor<256x256xf32>) -> (tensor<256x256xf32>) {{
{body}
    return %v{n}
  }}
}}"""


def test_values_are_freed_after_their_last_use():
    x = np.zeros((256, 256), np.float32)
    peaks = [Interpreter(parse(_chain(n))).run([x]).stats.peak_activation_bytes for n in (2, 20)]
    assert peaks[0] == peaks[1] == 2 * x.nbytes  # an op's operand and its result, never more


def test_dead_results_are_freed_at_once():
    text = """module @ln {
  func @forward(%x: tensor<64x64xf32>) -> (tensor<64x64xf32>) {
    %y, %mean, %rstd = layer_norm %x {normalized_shape = [64]} : tensor<64x64xf32>, tensor<64x1xf32>, tensor<64x1xf32>
    %z = relu %y : tensor<64x64xf32>
    return %z
  }
}"""
    it = Interpreter(parse(text))
    assert it.steps[0].free == (0, 2, 3)  # x (last use), and mean/rstd (never used) go right away
    assert it.steps[1].free == (1,)


def test_inputs_by_name_and_position(mlp_dir):
    it = Interpreter(parse(MLP), Store(mlp_dir))
    x = np.ones((4, 16), np.float32)
    np.testing.assert_array_equal(it.run({"x": x}).outputs[0], it.run([x]).outputs[0])


@pytest.mark.parametrize(
    "inputs, message",
    [
        ([], r"@forward\(%x: tensor<4x16xf32>\) takes 1 input\(s\), got 0"),
        ({"y": 0}, r"inputs do not match @forward\(%x: tensor<4x16xf32>\): missing %x; unknown %y"),
        (
            [np.ones((4, 15), np.float32)],
            r"input %x must be tensor<4x16xf32> \(float32\[4, 16\]\), got float32\[4, 15\]",
        ),
        ([np.ones((4, 16))], r"input %x must be tensor<4x16xf32> \(float32\[4, 16\]\), got float64\[4, 16\]"),
    ],
)
def test_input_errors(mlp_dir, inputs, message):
    with pytest.raises(InputError, match=message):
        Interpreter(parse(MLP), Store(mlp_dir)).run(inputs)


def test_kernel_failure_names_the_op_and_its_location():
    text = """module @emb {
  func @forward(%t: tensor<4x2xf32>, %i: tensor<3xi64>) -> (tensor<3x2xf32>) {
    %e = embedding %t, %i : tensor<3x2xf32> loc("model.py":7)
    return %e
  }
}"""
    with pytest.raises(RuntimeExecutionError, match=r"^'embedding' \(%e\) at model.py:7: IndexError"):
        Interpreter(parse(text)).run([np.ones((4, 2), np.float32), np.array([0, 9, 1])])


def test_unknown_op_and_missing_store_are_reported_up_front(mlp_dir):
    text = MLP.replace("%a2 = relu %h2", "%a2 = frobnicate %h2")
    with pytest.raises(RuntimeExecutionError, match=r"no kernel for 1 op\(s\):\n  'frobnicate' \(%a2\) at mlp.py:13"):
        Interpreter(parse(text), Store(mlp_dir))
    with pytest.raises(
        RuntimeExecutionError,
        match=r"reads weights \(@fc1.weight, @fc1.bias, @fc2.weight, "
        r"@fc3.weight\) but no MemoryX store was given",
    ):
        Interpreter(parse(MLP))


def test_store_that_does_not_fit_the_wir_is_reported_up_front(tmp_path):
    w = _mlp_weights()
    w["fc2.weight"] = w["fc2.weight"][:16]
    write_store(tmp_path, w)
    with pytest.raises(StoreError, match="weight 'fc2.weight' is declared tensor<32x32xf32> in the WIR"):
        Interpreter(parse(MLP), Store(tmp_path))


def test_run_a_model_directory_with_generated_inputs(mlp_dir):
    a, b = runtime.run(mlp_dir), runtime.run(mlp_dir / "model.wir", seed=0)
    assert a.generated_inputs and b.generated_inputs
    np.testing.assert_array_equal(a.outputs[0], b.outputs[0])
    np.testing.assert_allclose(a.outputs[0], _mlp_numpy(a.inputs[0], _mlp_weights()), rtol=1e-5, atol=1e-5)
    assert not np.array_equal(runtime.run(mlp_dir, seed=1).inputs[0], a.inputs[0])


def test_generated_token_ids_fit_the_table():
    text = """module @emb {
  func @forward(%t: tensor<5x2xf32>, %i: tensor<64xi64>, %n: tensor<64xi32>, %m: tensor<8xbool>) -> (tensor<64x2xf32>) {
    %e = embedding %t, %i : tensor<64x2xf32>
    return %e
  }
}"""
    res = runtime.run(parse(text))
    ids, n, m = res.inputs[1], res.inputs[2], res.inputs[3]
    assert ids.min() >= 0 and ids.max() < 5 and n.max() < 16 and n.max() >= 5 and m.dtype == bool


def test_npz_inputs_and_outputs_round_trip(mlp_dir, tmp_path):
    func = parse(MLP).func()
    x = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    res = runtime.run(mlp_dir, tmp_path / "in.npz")
    runtime.save_outputs(tmp_path / "out.npz", res.outputs, func)
    with np.load(tmp_path / "out.npz") as z:
        np.testing.assert_array_equal(z["out0"], res.outputs[0])
    np.savez(tmp_path / "pos.npz", arg0=x)
    np.testing.assert_array_equal(runtime.load_inputs(tmp_path / "pos.npz", func)[0], x)


def test_npz_input_errors(mlp_dir, tmp_path):
    func = parse(MLP).func()
    np.savez(tmp_path / "extra.npz", x=np.ones((4, 16), np.float32), y=np.ones(2))
    with pytest.raises(InputError, match="extra.npz: inputs do not match .*: unknown %y"):
        runtime.load_inputs(tmp_path / "extra.npz", func)
    np.savez(tmp_path / "shape.npz", x=np.ones((2, 16), np.float32))
    with pytest.raises(InputError, match=r"shape.npz: input %x must be tensor<4x16xf32>"):
        runtime.load_inputs(tmp_path / "shape.npz", func)
    with pytest.raises(InputError, match="cannot read inputs from"):
        runtime.load_inputs(tmp_path / "absent.npz", func)
    with pytest.raises(InputError, match="outputs do not match the results of @forward"):
        runtime.save_outputs(tmp_path / "o.npz", [np.ones(3)], func)


def test_bf16_inputs_survive_npz(tmp_path):
    import ml_dtypes

    text = """module @m {
  func @forward(%x: tensor<3xbf16>) -> (tensor<3xf32>) {
    %y = convert %x {dtype = f32} : tensor<3xf32>
    return %y
  }
}"""
    x = np.array([1.5, -2.0, 0.1], dtype=ml_dtypes.bfloat16)
    np.savez(tmp_path / "in.npz", x=x)  # numpy stores bf16 as raw 2-byte values
    res = runtime.run(parse(text), tmp_path / "in.npz")
    np.testing.assert_array_equal(res.outputs[0], x.astype(np.float32))


def test_outputs_are_fresh_writable_arrays(mlp_dir):
    text = """module @m {
  func @forward(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<2x2xf32>) {
    %v = view %x {shape = [2, 2]} : tensor<2x2xf32>
    return %x, %v
  }
}"""
    x = np.arange(4, dtype=np.float32)
    out = runtime.run(parse(text), [x]).outputs
    assert all(o.flags.writeable and o.flags.owndata for o in out)
    assert not np.shares_memory(out[0], x)


def test_errors_are_wafer_errors():
    for cls in (InputError, RuntimeExecutionError, StoreError):
        assert issubclass(cls, WaferError)
    assert issubclass(RuntimeExecutionError, RuntimeError)


def test_runtime_never_imports_torch(mlp_dir):
    code = (
        "import sys, numpy as np, runtime\n"
        f"res = runtime.run({str(mlp_dir)!r})\n"
        "assert res.outputs[0].shape == (4, 8)\n"
        "assert 'torch' not in sys.modules, 'runtime imported torch'\n"
        # the op table's declarations (attribute defaults) are the one compiler module the runtime reads
        "bad = [m for m in sys.modules if m.startswith(('wafercc.frontend', 'wafercc.passes', 'wafercc.mapping',"
        " 'wafercc.driver', 'wafercc.numerics', 'wafercc.cli'))]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_layers_tagged_by_a_mapping_pass_are_used():
    text = """module @m {
  func @forward(%x: tensor<4xf32>) -> (tensor<4xf32>) {
    %a = exp %x : tensor<4xf32>
    %b = exp %a {"plan.layer" = "L1_fc1"} : tensor<4xf32>
    %c = exp %b {"plan.layer" = "L1_fc1"} : tensor<4xf32>
    %d = exp %c : tensor<4xf32>
    %e = exp %d {"plan.layer" = "L2_fc2"} : tensor<4xf32>
    return %e
  }
}"""
    res = Interpreter(parse(text)).run([np.zeros(4, np.float32)])
    assert [(layer.name, layer.ops) for layer in res.stats.layers] == [("(input)", 1), ("L1_fc1", 3), ("L2_fc2", 1)]


def test_run_a_directory_without_its_store(tmp_path):
    (tmp_path / "model.wir").write_text(MLP)
    with pytest.raises(StoreError, match="no MemoryX store: .*weights.safetensors' does not exist"):
        runtime.run(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(RuntimeExecutionError, match="is not a compiled model directory: it has no model.wir"):
        runtime.run(tmp_path / "sub")
