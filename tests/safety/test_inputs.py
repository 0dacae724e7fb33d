"""Malformed input of any shape is one message naming the file, the place and what was expected (exit 2), never
a traceback; sizes are checked before anything is allocated or decompressed."""

from __future__ import annotations

import io
import json
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.errors import InputError, RuntimeExecutionError, StoreError
from wafercc.cli import main
from wafercc.ir import ParseError, parse, parse_file

WIR_HEAD = "module @m {\n  func @forward(%x: tensor<4xf32>) -> (tensor<4xf32>) {\n"
WIR_TAIL = " : tensor<4xf32>\n    return %0\n  }\n}\n"


def cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


# -- the MemoryX store: safetensors header and manifest ---------------------------------------


def set_header(d: Path, header) -> None:
    """Replace the store's header JSON by ``header`` (any JSON value, or raw bytes), keeping the data."""
    f = d / "weights.safetensors"
    raw = f.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    f.write_bytes(struct.pack("<Q", len(body)) + body + raw[8 + n :])


def header_of(d: Path) -> dict:
    raw = (d / "weights.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n])


@pytest.mark.parametrize(
    "header, message",
    [
        ([], "a JSON list, expected an object"),
        (None, "a JSON NoneType, expected an object"),
        (7, "a JSON int, expected an object"),
        ("x", "a JSON str, expected an object"),
        (b"[" * 100_000, "nested too deeply"),
        (b"\xff\xfe", "malformed safetensors header"),
        ({"__metadata__": [1]}, "__metadata__ is not an object"),
    ],
)
def test_store_header_that_is_not_an_object(store_copy, header, message):
    set_header(store_copy, header)
    with pytest.raises(StoreError, match=message) as e:
        runtime.Store(store_copy)
    assert "weights.safetensors" in str(e.value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda h: [1, 2],
        lambda h: "F32",
        lambda h: {**h, "dtype": "F99"},
        lambda h: {**h, "shape": [-1]},
        lambda h: {**h, "shape": [True]},
        lambda h: {**h, "shape": "16"},
        lambda h: {**h, "shape": [2.5]},
        lambda h: {**h, "data_offsets": [5]},
        lambda h: {**h, "data_offsets": [9, 3]},
        lambda h: {**h, "data_offsets": [-4, 0]},
        lambda h: {**h, "data_offsets": [0, 10**30]},
        lambda h: {**h, "dtype": ["F32"]},  # found by tests/fuzz/store.py: an unhashable dtype was a TypeError
        lambda h: {**h, "dtype": {"a": 1}},
    ],
)
def test_store_header_entries_are_checked(store_copy, edit):
    header = header_of(store_copy)
    name = next(k for k in header if k != "__metadata__")
    header[name] = edit(header[name])
    set_header(store_copy, header)
    with pytest.raises(StoreError, match=f"tensor '{name}'|truncated"):
        runtime.Store(store_copy)


def test_overlapping_tensors_are_refused(store_copy):
    header = header_of(store_copy)
    names = [k for k in header if k != "__metadata__"]
    size = {k: header[k]["data_offsets"][1] - header[k]["data_offsets"][0] for k in names}
    big, small = sorted(names, key=size.get, reverse=True)[:2]
    begin = header[big]["data_offsets"][0]
    header[small]["data_offsets"] = [begin, begin + size[small]]  # inside the big one
    set_header(store_copy, header)
    with pytest.raises(StoreError, match="overlap"):
        runtime.Store(store_copy)


def test_a_huge_header_length_is_refused_before_reading(store_copy):
    f = store_copy / "weights.safetensors"
    f.write_bytes(struct.pack("<Q", 2**63) + f.read_bytes()[8:])
    with pytest.raises(StoreError, match="truncated: its header needs"):
        runtime.Store(store_copy)


@pytest.mark.parametrize(
    "doc, message",
    [
        ([], "not a wafercc-memoryx/1 manifest"),
        (None, "not a wafercc-memoryx/1 manifest"),
        ({"format": "wafercc-memoryx/1", "tensors": []}, "not a wafercc-memoryx/1 manifest"),
    ],
)
def test_manifest_that_is_not_an_object(store_copy, doc, message):
    (store_copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match=message):
        runtime.Store(store_copy)


@pytest.mark.parametrize(
    "entry, message",
    [
        ([1], "is a JSON list, not an object"),
        ("x", "is a JSON str, not an object"),
        (None, "is a JSON NoneType, not an object"),
        ({"dtype": "f32", "shape": [1], "sha256": "0" * 64}, "has kind None"),
        ({"dtype": "f32", "shape": [1], "sha256": 5, "kind": "parameter"}, "has sha256 5"),
        ({"dtype": "q8", "shape": [1], "sha256": "0" * 64, "kind": "parameter"}, "has dtype 'q8'"),
        ({"dtype": "f32", "shape": {"a": 1}, "sha256": "0" * 64, "kind": "parameter"}, "has shape"),
        ({"dtype": ["f32"], "shape": [1], "sha256": "0" * 64, "kind": "parameter"}, "has dtype"),  # found by fuzzing
        ({"dtype": "f32", "shape": [1], "sha256": "0" * 64, "kind": {}}, "has kind"),
    ],
)
def test_manifest_entries_are_checked(store_copy, entry, message):
    doc = json.loads((store_copy / "manifest.json").read_text())
    name = next(iter(doc["tensors"]))
    doc["tensors"][name] = entry
    (store_copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match=message) as e:
        runtime.Store(store_copy)
    assert f"tensor '{name}'" in str(e.value) and "manifest.json" in str(e.value)


def test_deeply_nested_manifest(store_copy):
    (store_copy / "manifest.json").write_text("[" * 200_000)
    with pytest.raises(StoreError, match="nested too deeply"):
        runtime.Store(store_copy)


def test_run_of_a_broken_store_exits_2(capsys, store_copy):
    set_header(store_copy, [])
    code, err = cli(capsys, "run", store_copy)
    assert code == 2 and "malformed safetensors header" in err


# -- npz inputs -------------------------------------------------------------------------------


def test_empty_and_truncated_inputs_exit_2(capsys, tiny_compiled, tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    code, err = cli(capsys, "run", tiny_compiled, "--inputs", empty)
    assert code == 2 and "is not a valid .npz of inputs" in err
    good = (tiny_compiled.parent / "inputs.npz").read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good[: len(good) // 2])
    code, err = cli(capsys, "run", tiny_compiled, "--inputs", cut)
    assert code == 2 and "cut.npz" in err


def bomb(path: Path, member: str, nbytes: int, extra: dict | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, a in (extra or {}).items():
            buf = io.BytesIO()
            np.save(buf, a)
            z.writestr(f"{name}.npy", buf.getvalue())
        with z.open(f"{member}.npy", "w", force_zip64=True) as f:
            chunk = b"\0" * (1 << 20)
            for _ in range(nbytes >> 20):
                f.write(chunk)
    return path


def test_a_deflated_extra_member_is_refused_before_it_is_decompressed(tiny_compiled, tmp_path):
    func = parse_file(tiny_compiled / "model.wir").func()
    x = np.load(tiny_compiled.parent / "inputs.npz")["x"]
    path = bomb(tmp_path / "b.npz", "extra", 256 << 20, {"x": x})
    assert path.stat().st_size < 1 << 20
    start = time.perf_counter()
    with pytest.raises(InputError, match="unknown %extra"):
        runtime.load_inputs(path, func)
    assert time.perf_counter() - start < 1.0


def test_an_oversized_member_is_refused_before_it_is_decompressed(tiny_compiled, tmp_path):
    func = parse_file(tiny_compiled / "model.wir").func()
    path = bomb(tmp_path / "b.npz", "x", 256 << 20)
    start = time.perf_counter()
    with pytest.raises(InputError, match="member x.npy holds 268,435,456 bytes"):
        runtime.load_inputs(path, func)
    assert time.perf_counter() - start < 1.0


def npy_header(descr: str, shape: tuple) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"not an npy", "is not a .npy array"),
        (b"\x93NUMPY\x01\x00" + struct.pack("<H", 20) + b"{'descr': '<f4', 'fo", "is not a .npy array"),
        (npy_header("<f4", (1000000,)), "got float32\\[1000000\\]"),  # the type, from the header, before the data
        (npy_header("<f4", (2, 16)), "but it holds 0 bytes of data"),
        (npy_header("<f4", (2, 16)) + b"\0" * 1000, "but it holds more of data"),
        (npy_header("|O", (2, 16)), "holds Python objects"),
    ],
)
def test_member_headers_are_checked_before_allocation(tiny_compiled, tmp_path, payload, message):
    func = parse_file(tiny_compiled / "model.wir").func()
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", payload)
    with pytest.raises(InputError, match=message):
        runtime.load_inputs(path, func)


def test_a_header_larger_than_the_bound_is_refused_before_allocation(tmp_path):
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("out0.npy", npy_header("<f4", (10**12,)))
    with pytest.raises(InputError, match="holds float32\\[1000000000000\\] \\(4,000,000,000,000 bytes\\)"):
        runtime.io.read_npz(path, lambda keys: {"out0": 64}, "outputs")


def test_a_damaged_deflate_stream_is_an_input_error(tiny_compiled, tmp_path):
    """Found by tests/fuzz/npz.py: zlib.error escaped as a traceback."""
    func = parse_file(tiny_compiled / "model.wir").func()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", npy_header("<f4", (2, 16)) + bytes(range(128)) * 4)
    blob = bytearray(buf.getvalue())
    start = blob.index(b"x.npy") + len("x.npy")  # the member's compressed data follows its local header
    blob[start + 10 : start + 30] = b"\xff" * 20
    path = tmp_path / "z.npz"
    path.write_bytes(bytes(blob))
    with pytest.raises(InputError, match="z.npz"):
        runtime.load_inputs(path, func)


def test_a_run_too_large_for_memory_is_a_message_with_the_bytes(capsys, tmp_path):
    wir = tmp_path / "huge.wir"
    wir.write_text(
        "module @m {\n  func @forward(%x: tensor<4xf32>) -> (tensor<100000x100000x4xf32>) {\n"
        "    %0 = expand %x {shape = [100000, 100000, 4]} : tensor<100000x100000x4xf32>\n"
        "    return %0\n  }\n}\n"
    )
    code, err = cli(capsys, "run", wir)
    assert code == 2 and "needs at least 160,000,000,000 bytes for %0" in err
    with pytest.raises(RuntimeExecutionError, match="more than this machine's 1,000 bytes"):
        runtime.io.check_fits(parse(wir.read_text()).func(), limit=1000)


# -- WIR: depth and size bounds ---------------------------------------------------------------


@pytest.mark.parametrize(
    "attrs",
    [
        "{a = " + "[" * 5000 + "]" * 5000 + "}",
        "{a =  " + "[" * 100 + "]" * 100 + "}",
        "{a = " + "{b = " * 300 + "1" + "}" * 300 + "}",
    ],
)
def test_deep_attribute_nesting_is_a_parse_error(attrs):
    with pytest.raises(ParseError, match="nested more than 64 deep") as e:
        parse(WIR_HEAD + "    %0 = relu %x " + attrs + WIR_TAIL, "deep.wir")
    assert e.value.location.startswith("deep.wir:3:")


def test_nesting_within_the_bound_parses():
    m = parse(WIR_HEAD + "    %0 = relu %x {a = " + "[" * 60 + "]" * 60 + "}" + WIR_TAIL)
    assert m.func().ops[0].attrs["a"] is not None


@pytest.mark.parametrize("spacing", [" ", "  "])  # the fast path, and Lark
def test_a_20mb_string_is_refused_quickly(spacing):
    text = WIR_HEAD + f'    %0 = relu %x {{note ={spacing}"' + "a" * (20 << 20) + '"}' + WIR_TAIL
    start = time.perf_counter()
    with pytest.raises(ParseError, match="a string literal of 20,971,522 characters") as e:
        parse(text, "big.wir")
    assert time.perf_counter() - start < 10
    assert len(str(e.value)) < 500  # the line is shown around the place, not whole


def test_opt_o_an_existing_folder_exits_2(capsys, tiny_compiled, tmp_path):
    code, err = cli(capsys, "opt", tiny_compiled / "model.wir", "-o", tmp_path)
    assert code == 2 and "is a directory" in err
