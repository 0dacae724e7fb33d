"""The MemoryX store: round trip, determinism, format compatibility, every error, lazy reading."""

from __future__ import annotations

import json
import struct

import ml_dtypes
import numpy as np
import pytest

from runtime import Store, StoreError, write_store
from runtime.store import MANIFEST_FILE, STORE_FILE
from wafercc.ir import DType, TensorType, WaferError


def _tensors():
    rng = np.random.default_rng(0)
    return {
        "fc1.weight": rng.standard_normal((4, 3)).astype(np.float32),
        "fc1.bias": rng.standard_normal(3).astype(np.float16),
        "emb": rng.standard_normal((5, 2)).astype(ml_dtypes.bfloat16),
        "ids": np.arange(7, dtype=np.int64),
        "i32": np.arange(3, dtype=np.int32),
        "mask": np.array([True, False, True]),
        "u8": np.arange(5, dtype=np.uint8),
        "scale": np.array(2.5, dtype=np.float64),
        "empty": np.zeros((0, 4), np.float32),
    }


@pytest.fixture
def store_dir(tmp_path):
    write_store(tmp_path, _tensors(), {"ids": "buffer", "scale": "constant"})
    return tmp_path


def test_round_trip_every_dtype(store_dir):
    with Store(store_dir) as st:
        for name, want in _tensors().items():
            got = st.get(name)
            assert got.dtype == want.dtype and got.shape == want.shape, name
            assert got.tobytes() == want.tobytes(), name
            assert not got.flags.writeable


def test_manifest_format(store_dir):
    doc = json.loads((store_dir / MANIFEST_FILE).read_text())
    assert doc["format"] == "wafercc-memoryx/1"
    assert doc["tensors"]["ids"]["kind"] == "buffer"
    assert doc["tensors"]["fc1.weight"] == {
        "dtype": "f32",
        "shape": [4, 3],
        "kind": "parameter",
        "sha256": __import__("hashlib").sha256(_tensors()["fc1.weight"].tobytes()).hexdigest(),
    }


def test_file_is_standard_safetensors(store_dir):
    from safetensors.numpy import load_file

    data = (store_dir / STORE_FILE).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert (8 + n) % 8 == 0  # the data section starts 8-byte aligned
    header = json.loads(data[8 : 8 + n])
    assert list(header) == sorted(header)
    # Tensors are packed in the given order (safetensors readers reject gaps).
    offsets = [header[k]["data_offsets"] for k in _tensors()]
    assert [o[0] for o in offsets[1:]] == [o[1] for o in offsets[:-1]]
    loaded = load_file(str(store_dir / STORE_FILE))  # the reference reader accepts our file
    np.testing.assert_array_equal(loaded["fc1.weight"], _tensors()["fc1.weight"])


def test_deterministic_bytes(tmp_path):
    write_store(tmp_path / "a", _tensors())
    write_store(tmp_path / "b", _tensors())
    for f in (STORE_FILE, MANIFEST_FILE):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [MANIFEST_FILE, STORE_FILE]  # no temp files left


def _corrupt(path, offset_from_end: int) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupted_byte_is_a_checksum_error_for_that_tensor_only(tmp_path):
    write_store(tmp_path, {"fc1.weight": np.ones((4, 4), np.float32), "fc2.weight": np.ones(8, np.float32)})
    _corrupt(tmp_path / STORE_FILE, 1)  # the last byte belongs to fc2.weight
    st = Store(tmp_path)
    st.get("fc1.weight")  # lazy: the corrupted neighbour is never read, so never noticed
    with pytest.raises(
        StoreError,
        match=r"weight 'fc2.weight' in weights.safetensors does not match its sha256 "
        r"in manifest.json: the store is corrupted",
    ):
        st.get("fc2.weight")


def test_lazy_reading_counts_only_what_was_asked(store_dir):
    st = Store(store_dir)
    st.get("fc1.weight")
    st.get("fc1.weight")
    assert st.reads == {"fc1.weight": 2}
    assert st.bytes_read == 2 * 4 * 3 * 4


def test_truncated_file(store_dir):
    f = store_dir / STORE_FILE
    f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(StoreError, match="is truncated: tensor '.*' ends at byte"):
        Store(store_dir)
    f.write_bytes(f.read_bytes()[:20])
    with pytest.raises(StoreError, match="is truncated: its header needs"):
        Store(store_dir)
    f.write_bytes(b"abc")
    with pytest.raises(StoreError, match="not even a header length"):
        Store(store_dir)


def test_missing_tensor(store_dir):
    with pytest.raises(StoreError, match=r"weight 'fc9.weight' is not in .*weights.safetensors \(it holds: "):
        Store(store_dir).get("fc9.weight")


def test_manifest_lists_a_tensor_the_file_lacks(store_dir):
    doc = json.loads((store_dir / MANIFEST_FILE).read_text())
    doc["tensors"]["ghost"] = dict(doc["tensors"]["ids"])
    (store_dir / MANIFEST_FILE).write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="tensor 'ghost' is listed in manifest.json but missing from"):
        Store(store_dir)


def test_wrong_shape_or_dtype_against_the_wir(store_dir):
    st = Store(store_dir)
    with pytest.raises(
        StoreError,
        match=r"weight 'fc1.weight' is declared tensor<3x4xf32> in the WIR but is "
        r"tensor<4x3xf32> in .*: the store does not belong to this model",
    ):
        st.get("fc1.weight", TensorType((3, 4), DType.f32))
    with pytest.raises(StoreError, match="declared tensor<4x3xf16>"):
        st.get("fc1.weight", TensorType((4, 3), DType.f16))


def test_manifest_and_header_disagree(store_dir):
    doc = json.loads((store_dir / MANIFEST_FILE).read_text())
    doc["tensors"]["ids"]["shape"] = [8]
    (store_dir / MANIFEST_FILE).write_text(json.dumps(doc))
    with pytest.raises(StoreError, match=r"tensor 'ids' is tensor<7xi64> in .* but i64\[8\] in manifest.json"):
        Store(store_dir)


def test_missing_files_and_bad_manifest(tmp_path):
    with pytest.raises(StoreError, match="no MemoryX store: .*weights.safetensors' does not exist"):
        Store(tmp_path)
    write_store(tmp_path, {"a": np.zeros(2, np.float32)})
    (tmp_path / MANIFEST_FILE).unlink()
    with pytest.raises(StoreError, match="manifest.json' is missing"):
        Store(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text('{"format": "other/2", "tensors": {}}')
    with pytest.raises(StoreError, match="is not a wafercc-memoryx/1 manifest"):
        Store(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(StoreError, match="is not a readable JSON manifest"):
        Store(tmp_path)


def test_write_rejects_bad_kind_and_dtype(tmp_path):
    with pytest.raises(StoreError, match="kind must be one of"):
        write_store(tmp_path, {"a": np.zeros(2, np.float32)}, {"a": "gradient"})
    with pytest.raises(StoreError, match="dtype complex64"):
        write_store(tmp_path, {"a": np.zeros(2, np.complex64)})


def test_store_errors_are_wafer_errors():
    assert issubclass(StoreError, WaferError)


def test_store_opens_from_its_file_path(store_dir):
    assert "ids" in Store(store_dir / STORE_FILE)
