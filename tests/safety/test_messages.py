"""Each user-facing message of the runtime's store, inputs and interpreter, the plan in a WIR module, and the
golden files, word for word, reached the way a user reaches it: `wafercc run` / `wafercc golden check` on a
damaged file (exit 2, one message, no traceback), or the public API for what only a program can do wrong.
tests/test_error_coverage.py counts these as the tests of those raise sites."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

import runtime
import runtime.store
from runtime import Interpreter, InputError, MemoryStore, RuntimeExecutionError, StoreError, write_store
from wafercc.cli import main
from wafercc.golden import files as golden_files
from wafercc.ir import DType, TensorType, Weight, parse

from tests.golden.util import write_tiny


def run(capsys, *args) -> str:
    """`wafercc ARGS` in-process: its one error line (exit 2, no traceback)."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: "), err
    return err.strip()


# -- the MemoryX store (`wafercc run DIR`) ------------------------------------------------------


def _header(d: Path) -> tuple[dict, bytes]:
    raw = (d / "weights.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _set_header(d: Path, header: dict | bytes) -> None:
    _, data = _header(d)
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    (d / "weights.safetensors").write_bytes(struct.pack("<Q", len(body)) + body + data)


def _edit_manifest(d: Path, change) -> None:
    path = d / "manifest.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.fixture
def store(store_copy, tiny_compiled) -> Path:
    """A copy of the compiled tiny model (graph level), inputs.npz beside it."""
    shutil.copy(tiny_compiled.parent / "inputs.npz", store_copy.parent / "inputs.npz")
    return store_copy


def _run_store(capsys, d: Path) -> str:
    return run(capsys, "run", d, "--inputs", d.parent / "inputs.npz")


def test_store_manifest_missing(capsys, store):
    (store / "manifest.json").unlink()
    assert _run_store(capsys, store) == (
        f"error: '{store}/manifest.json' is missing: a MemoryX store needs its manifest beside weights.safetensors"
    )


def test_store_manifest_of_another_format(capsys, store):
    (store / "manifest.json").write_text('{"format": "other/2", "tensors": {}}')
    assert _run_store(capsys, store) == (
        f"error: '{store}/manifest.json' is not a wafercc-memoryx/1 manifest (format: 'other/2'); expected "
        '{"format": "wafercc-memoryx/1", "tensors": {...}}'
    )


def test_store_manifest_too_large(capsys, store, monkeypatch):
    monkeypatch.setattr(runtime.store, "MAX_MANIFEST", 100)
    size = (store / "manifest.json").stat().st_size
    assert _run_store(capsys, store) == (
        f"error: '{store}/manifest.json' is {size:,} bytes: more than a manifest can be (100)"
    )


def test_store_header_too_large(capsys, store, monkeypatch):
    monkeypatch.setattr(runtime.store, "MAX_HEADER", 16)
    n = struct.unpack("<Q", (store / "weights.safetensors").read_bytes()[:8])[0]
    assert _run_store(capsys, store) == (
        f"error: '{store}/weights.safetensors' has a {n:,}-byte header: more than a safetensors header can be (16)"
    )


def test_store_header_that_is_not_json(capsys, store):
    _set_header(store, b'{"fc1.weight": ')
    assert _run_store(capsys, store) == (
        f"error: '{store}/weights.safetensors' has a malformed safetensors header: Expecting value: line 1 "
        "column 16 (char 15)"
    )


def test_store_tensors_that_overlap(capsys, store):
    header, _ = _header(store)
    begin = header["fc1.bias"]["data_offsets"][0]
    header["fc2.bias"]["data_offsets"] = [begin, begin + 16]
    _set_header(store, header)
    assert _run_store(capsys, store) == (
        f"error: '{store}/weights.safetensors': tensors 'fc2.bias' and 'fc1.bias' overlap in the data section"
    )


def test_store_tensor_not_in_the_manifest(capsys, store):
    _edit_manifest(store, lambda doc: doc["tensors"].pop("fc2.bias"))
    assert _run_store(capsys, store) == (
        f"error: tensor 'fc2.bias' of '{store}/weights.safetensors' is not listed in manifest.json"
    )


def test_store_header_entry_malformed(capsys, store):
    header, _ = _header(store)
    header["fc2.bias"] = {"dtype": "F99", "shape": [4]}
    _set_header(store, header)
    assert _run_store(capsys, store) == (
        f"error: tensor 'fc2.bias' has a malformed entry in the header of '{store}/weights.safetensors': "
        "{'dtype': 'F99', 'shape': [4]}; expected "
        '{"dtype": "F32", "shape": [sizes >= 0], "data_offsets": [begin, end]}'
    )


def test_store_offsets_that_do_not_hold_the_tensor(capsys, store):
    header, _ = _header(store)
    begin = header["fc2.bias"]["data_offsets"][0]
    header["fc2.bias"]["data_offsets"] = [begin, begin + 8]
    _set_header(store, header)
    assert _run_store(capsys, store) == (
        f"error: tensor 'fc2.bias' in '{store}/weights.safetensors': offsets [{begin}, {begin + 8}) do not hold "
        "tensor<4xf32> (16 bytes)"
    )


def test_store_write_of_a_dtype_it_cannot_hold(tmp_path):
    with pytest.raises(StoreError) as e:
        write_store(tmp_path, {"a": np.zeros(2, np.complex64)})
    assert str(e.value) == "tensor 'a' has dtype complex64, which a MemoryX store cannot hold"


def test_memory_store_without_a_declared_weight():
    st = MemoryStore({"w": np.zeros(2, np.float32)})
    with pytest.raises(StoreError) as e:
        st.check([Weight("w", TensorType((3,), DType.f32))])
    assert str(e.value) == "weight 'w' (tensor<3xf32>) is not among the compiled weights"


# -- inputs (`wafercc run DIR --inputs NPZ`, Interpreter.run) -----------------------------------

RELU = "module @m {\n  func @f(%x: tensor<4xf32>) -> (tensor<4xf32>) {\n    %y = relu %x : tensor<4xf32>\n"
RELU += "    return %y\n  }\n}\n"


def test_inputs_of_the_wrong_count():
    with pytest.raises(InputError) as e:
        Interpreter(parse(RELU)).run([np.zeros(4, np.float32)] * 2)
    assert str(e.value) == "@f(%x: tensor<4xf32>) takes 1 input(s), got 2"


def test_inputs_member_larger_than_its_argument(capsys, store, tmp_path):
    path = tmp_path / "big.npz"
    np.savez(path, x=np.zeros((2000, 16), np.float32))
    size = 2000 * 16 * 4 + 128  # more than the 64 KiB a .npy header may take; its header is 128 bytes
    assert run(capsys, "run", store, "--inputs", path) == (
        f"error: '{path}' member x.npy holds {size:,} bytes; what it stands for takes at most 128"
    )


def test_inputs_member_of_python_objects(capsys, store, tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([1, "a"], dtype=object))
    assert run(capsys, "run", store, "--inputs", path) == (
        f"error: '{path}' member x.npy holds Python objects (dtype object); only plain arrays are read"
    )


def test_inputs_member_with_less_data_than_its_header_says(capsys, store, tmp_path):
    path = tmp_path / "short.npz"
    np.savez(path, x=np.zeros((2, 16), np.float32))
    _truncate_member(path, "x.npy", 64)
    assert run(capsys, "run", store, "--inputs", path) == (
        f"error: '{path}' member x.npy: its header says float32[2, 16] (128 bytes) but it holds 64 bytes of data"
    )


def _truncate_member(path: Path, member: str, drop: int) -> None:
    """Rewrite the (stored, uncompressed) npz with ``drop`` bytes cut from the end of ``member``."""
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members[member] = members[member][:-drop]
    with zipfile.ZipFile(path, "w") as z:
        for name, raw in members.items():
            z.writestr(name, raw)


# -- the interpreter (public API) ---------------------------------------------------------------


def test_interpreter_unknown_reduction_order():
    with pytest.raises(RuntimeExecutionError) as e:
        Interpreter(parse(RELU), order="tree")
    assert str(e.value) == "unknown reduction order 'tree' (use grouped or ring)"


def test_interpreter_op_without_a_kernel():
    with pytest.raises(RuntimeExecutionError) as e:
        Interpreter(parse(RELU.replace("relu", "frobnicate"), "m.wir"))
    assert str(e.value) == "the runtime has no kernel for 1 op(s):\n  'frobnicate' (%y)"


def test_interpreter_function_that_is_not_there():
    with pytest.raises(RuntimeExecutionError) as e:
        Interpreter(parse(RELU), func="g")
    assert str(e.value) == "module @m has no function @g (it has @f)"


def test_interpreter_kernel_returning_too_many_results(monkeypatch):
    """A guard against a kernel bug: named, not a crash further on."""
    monkeypatch.setitem(runtime.KERNELS, "relu", lambda op, x: (x, x))
    with pytest.raises(RuntimeExecutionError) as e:
        Interpreter(parse(RELU)).run([np.zeros(4, np.float32)])
    assert str(e.value) == "'relu' (%y): the kernel returned 2 result(s) for 1"


# -- the plan in a compiled module (`wafercc run DIR` on an edited model.wir) -------------------


def _compile_tiny(root: Path, mode: str) -> Path:
    """The tiny model compiled through routing on the 4x4 mesh (two planned layers), inputs.npz beside it."""
    from wafercc.driver import compile
    from wafercc.frontend import load_model_file

    model, inputs = load_model_file(write_tiny(root))
    compile(model, inputs, name="tiny", target="mesh4", mode=mode, out_dir=root / "out")
    np.savez(root / "inputs.npz", x=inputs[0].numpy())
    return root / "out"


@pytest.fixture(scope="module")
def tiny_planned(tmp_path_factory) -> Path:
    return _compile_tiny(tmp_path_factory.mktemp("messages-planned"), "stream")


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory) -> Path:
    return _compile_tiny(tmp_path_factory.mktemp("messages-pipeline"), "pipeline")


def _run_edited(capsys, compiled: Path, tmp_path: Path, old: str, new: str) -> str:
    d = tmp_path / "out"
    shutil.copytree(compiled, d)
    text = (d / "model.wir").read_text()
    assert old in text, "the compiled module changed: update the edit"
    (d / "model.wir").write_text(text.replace(old, new, 1))
    return run(capsys, "run", d, "--inputs", compiled.parent / "inputs.npz")


L0_LINKS = '    links = {busiest = [0, 2, "S"], bytes = 576'
L0_ESTIMATE = "    estimate = {compute = 207.3"


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "dims = {B = 1, M = 2, K = 16, N = 32}",
            "dims = 3",
            "layer @L0_fc1: dims: expected a dict, got 3 [plan-format]",
        ),
        ('mode = "stream"', 'mode = "burst"', "mode: expected one of stream, pipeline, got 'burst' [plan-format]"),
        (
            "index = 0,",
            "index = 1,",
            "layer @L0_fc1: index: 1, but it is layer 0 of 2 in execution order (layers are numbered 0 to n-1 in the "
            "order they run) [plan-index]",
        ),
        ("func @forward", "func @main", "@forward: a planned module needs a @forward function [plan-anchor]"),
        ("ops = 5,", "ops = 4,", "layer @L0_fc1: ops: 4, but 5 ops of @forward name the layer [plan-anchor]"),
        (
            "weights = [@fc1.weight, @fc1.bias]",
            "weights = [@fc1.weight, @nope]",
            "layer @L0_fc1: weights: @nope is not a declared weight [plan-anchor]",
        ),
        (
            'anchor = "%addmm",',
            'anchor = "%relu",',
            "layer @L0_fc1: anchor: %relu is not an anchor op (mm, addmm, bmm, convolution, embedding) of this layer "
            "[plan-anchor]",
        ),
        (
            f'kind = "matmul",\n{L0_LINKS}',
            f'kind = "conv",\n{L0_LINKS}',
            "layer @L0_fc1: kind: 'conv', but its anchor %addmm is addmm, whose layer is 'matmul' or 'attention' "
            "[plan-anchor]",
        ),
        (
            "dims = {B = 1, M = 2, K = 16, N = 32}",
            "dims = {B = 1, M = 2, K = 16, N = 31}",
            "layer @L0_fc1: dims: B=1 M=2 K=16 N=31, but its anchor %addmm is B=1 M=2 K=16 N=32 [plan-anchor]",
        ),
    ],
    ids=["not-a-dict", "mode", "index", "no-forward", "ops", "weights", "anchor", "kind", "dims"],
)
def test_plan_in_the_module(capsys, tiny_planned, tmp_path, old, new, message):
    assert _run_edited(capsys, tiny_planned, tmp_path, old, new) == f"error: {message}"


L0 = "layer @L0_fc1: "
L0_STREAM = "stream = {order = 0, bytes = 2176, chunks = 4"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("cycles = 144.0}", "cycles = -1.0}", "links.cycles: expected a non-negative number, got -1.0 [plan-format]"),
        ("size = [4, 4]", "size = [4]", "tiling.size: expected a list of 2 integers, got [4] [plan-format]"),
        (
            "weights = [@fc1.weight, @fc1.bias]",
            "weights = @fc1.weight",
            "weights: expected a list, got @fc1.weight [plan-format]",
        ),
        (
            "weights = [@fc1.weight, @fc1.bias]",
            "weights = [@fc1.weight, 3]",
            "weights: expected weight symbols, got 3 [plan-format]",
        ),
        (
            "memory = {activation = 32,",
            "memory = {scratch = 0, activation = 32,",
            "memory.scratch: unknown buffer (the buffers are activation, output, accumulator, weight, tail) "
            "[plan-format]",
        ),
        ("rect = [0, 0, 4, 4]", "rect = [0, 0, 4]", "rect: expected [x, y, w, h], got [0, 0, 4] [plan-format]"),
        (
            'busiest = [0, 2, "S"], bytes = 576',
            'busiest = [0, 2, "Q"], bytes = 576',
            "links.busiest: expected [x, y, dir] with dir one of E, W, S, N, got [0, 2, 'Q'] [plan-format]",
        ),
        (
            f"dtype = f32,\n{L0_ESTIMATE}",
            f'dtype = "f33",\n{L0_ESTIMATE}',
            "dtype: expected a dtype, got 'f33' [plan-format]",
        ),
        (
            'anchor = "%addmm",',
            'anchor = "addmm",',
            "anchor: expected a value name like \"%addmm\", got 'addmm' [plan-format]",
        ),
        (
            "    rect = [0, 0, 4, 4],\n",
            "",
            "rect: missing, but 'cost' is there: the 'place' pass runs before 'cost' [plan-stage]",
        ),
        (
            "rect = [0, 0, 4, 4]",
            "rect = [0, 0, 2, 4]",
            "rect: [0, 0, 2, 4] is smaller than its tiling's 4x4 PEs [plan-rect]",
        ),
        (L0_STREAM, L0_STREAM[:-1] + "3", "stream.chunks: 3 is not N.steps x passes = 4 [plan-stream]"),
        (
            "stream = {order = 0, bytes = 2176",
            "stream = {order = 0, bytes = 2000",
            "stream.bytes: 2,000 is not weight_bytes x passes = 2,176 [plan-stream]",
        ),
    ],
    ids=[
        "number",
        "ints",
        "list",
        "weight-symbols",
        "buffer",
        "rect-form",
        "busiest",
        "dtype",
        "anchor-name",
        "stage",
        "rect-size",
        "stream-chunks",
        "stream-bytes",
    ],
)
def test_plan_fields_of_a_layer(capsys, tiny_planned, tmp_path, old, new, message):
    assert _run_edited(capsys, tiny_planned, tmp_path, old, new) == f"error: {L0}{message}"


TRANSFER = "path = [[2, 0], [3, 0]]"


@pytest.mark.parametrize(
    "new, message",
    [("path = []", "expected at least one point, got []"), ("path = [[2, 0], [3]]", "expected points [x, y], got [3]")],
    ids=["empty", "point"],
)
def test_plan_route_paths(capsys, tiny_pipeline, tmp_path, new, message):
    err = _run_edited(capsys, tiny_pipeline, tmp_path, TRANSFER, new)
    assert err == f"error: layer @L1_fc2: routes[1].path: {message} [plan-format]"


# -- golden files (`wafercc golden check`) ------------------------------------------------------


def _golden(root: Path) -> Path:
    return root / "goldens" / "tiny"


def _check(capsys, root: Path) -> str:
    code = main(["golden", "check", "--dir", str(root / "goldens"), "-q"])
    out = capsys.readouterr()
    assert code == 2 and "Traceback" not in out.err, out.err
    return out.err + out.out


def _edit_golden_json(root: Path, change) -> Path:
    path = _golden(root) / "golden.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def _rewrite_npz(root: Path, change) -> Path:
    """eager.npz rewritten by ``change`` (arrays -> arrays), with its
    sha256 in golden.json updated: damage that the checksum does not catch, which the reader must."""
    npz = _golden(root) / "eager.npz"
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(npz, **change(arrays))
    _edit_golden_json(root, lambda d: d["files"].__setitem__("eager.npz", golden_files.sha256(npz.read_bytes())))
    return npz


def test_golden_outputs_with_other_names(capsys, golden_copy):
    npz = _rewrite_npz(golden_copy, lambda a: {"renamed": a["out0"]})
    assert (
        f"{npz}: holds renamed; golden.json describes out0: the golden is damaged; re-record it with "
        "`wafercc golden record`"
    ) in _check(capsys, golden_copy)


def test_golden_outputs_of_another_shape(capsys, golden_copy):
    npz = _rewrite_npz(golden_copy, lambda a: {"out0": a["out0"].reshape(4, 2)})
    assert (
        f"{npz} member out0 is float32[4, 2], golden.json says float32[2, 4]: the golden is damaged; re-record it"
    ) in _check(capsys, golden_copy)


def test_golden_member_larger_than_its_description(capsys, golden_copy):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (1000, 1000)})
    npz = _golden(golden_copy) / "eager.npz"
    with zipfile.ZipFile(npz, "w") as z:
        z.writestr("out0.npy", buf.getvalue())  # a header that promises 4 MB, and no data
    _edit_golden_json(golden_copy, lambda d: d["files"].__setitem__("eager.npz", golden_files.sha256(npz.read_bytes())))
    assert (
        f"'{npz}' member out0.npy holds float32[1000, 1000] (4,000,000 bytes); what it stands for takes at most "
        "32 bytes: the golden is damaged; re-record it with `wafercc golden record`"
    ) in _check(capsys, golden_copy)


def test_golden_json_too_large(capsys, golden_copy, monkeypatch):
    monkeypatch.setattr(golden_files, "MAX_GOLDEN_JSON", 10)
    path = _golden(golden_copy) / "golden.json"
    assert f"{path} is {path.stat().st_size:,} bytes, more than a golden.json can be (10)" in _check(
        capsys, golden_copy
    )


def test_golden_json_against_its_schema(capsys, golden_copy):
    path = _edit_golden_json(golden_copy, lambda d: d.pop("outputs"))
    assert (
        f"{path}: outputs is missing; the golden is damaged: restore it or re-record it with `wafercc golden record`"
    ) in _check(capsys, golden_copy)


def test_golden_model_that_is_not_a_path(capsys, golden_copy):
    path = _edit_golden_json(golden_copy, lambda d: d.__setitem__("model", ""))
    assert f"{path}: 'model' must be the model file's path relative to {golden_copy}, got ''" in _check(
        capsys, golden_copy
    )


def test_golden_model_outside_its_root(capsys, golden_copy):
    path = _edit_golden_json(golden_copy, lambda d: d.__setitem__("model", "../evil.py"))
    assert (
        f"{path}: 'model' is '../evil.py'; a golden names a .py file inside {golden_copy} by a relative path "
        "without '..': it does not run files elsewhere (name the model file on the command line to check it)"
    ) in _check(capsys, golden_copy)


# -- the golden commands' own arguments ---------------------------------------------------------


def test_golden_record_entry_with_several_files(capsys, tmp_path):
    write_tiny(tmp_path, name="a")
    write_tiny(tmp_path, name="b")
    err = run(capsys, "golden", "record", tmp_path / "models", "--entry", "model", "--dir", tmp_path / "goldens")
    assert err == "error: --entry names the attributes of one model file; give exactly one"


def test_golden_check_of_an_empty_directory(capsys, tmp_path):
    err = run(capsys, "golden", "check", "--dir", tmp_path)
    assert err == f"error: --dir '{tmp_path}' holds no goldens (record some with `wafercc golden record`)"


def test_golden_record_without_model_files(capsys, tmp_path):
    err = run(capsys, "golden", "record", tmp_path, "--dir", tmp_path / "goldens")
    assert err == f"error: no model files (*.py) in {tmp_path}"
