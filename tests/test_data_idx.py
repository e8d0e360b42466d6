"""IDX reader/writer: round trips, the exact byte layout, and clear errors on bad files."""

from __future__ import annotations

import contextlib
import gzip
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastconv.data import DataError, read_idx, write_idx
from tests.conftest import shared_data_dir

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@contextlib.contextmanager
def _raises_naming(path: Path, *fragments: str):
    """Expect a DataError whose message names ``path`` and contains every fragment."""
    with pytest.raises(DataError) as caught:
        yield
    message = str(caught.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", IDX_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (2, 1, 3, 2), (0, 28, 28)])
def test_round_trip(tmp_path, suffix, dtype, shape):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        array = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        array = rng.standard_normal(shape).astype(dtype)
    path = write_idx(tmp_path / f"a-idx{len(shape)}{suffix}", array)
    back = read_idx(path, ndim=len(shape))
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable and back.flags.c_contiguous
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(dtype=st.sampled_from([np.dtype(d) for d in IDX_DTYPES]),
                  shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)),
       st.booleans())
def test_round_trip_property(array, compressed):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_idx(Path(tmp) / ("x.gz" if compressed else "x"), array)
        np.testing.assert_array_equal(read_idx(path), array)  # NaNs compare equal here


def test_byte_layout_is_big_endian_per_spec(tmp_path):
    """A file written by hand from the spec, not by write_idx."""
    header = bytes([0, 0, 0x0B, 2]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big")
    payload = b"".join(v.to_bytes(2, "big", signed=True) for v in (1, -2, 258, -32768))
    path = tmp_path / "hand-made"
    path.write_bytes(header + payload)
    np.testing.assert_array_equal(read_idx(path), [[1, -2], [258, -32768]])
    # and write_idx produces exactly those bytes
    write_idx(tmp_path / "written", np.array([[1, -2], [258, -32768]], dtype=np.int16))
    assert (tmp_path / "written").read_bytes() == header + payload


def test_gzip_detected_by_content_not_name(tmp_path):
    raw = tmp_path / "labels"
    write_idx(raw, np.arange(5, dtype=np.uint8))
    misnamed = tmp_path / "labels-without-suffix"
    misnamed.write_bytes(gzip.compress(raw.read_bytes()))
    np.testing.assert_array_equal(read_idx(misnamed), np.arange(5))


def test_write_leaves_no_temp_files(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((2, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["x.gz"]


@pytest.mark.parametrize("bad", [np.zeros(3, np.int64), np.zeros(3, bool), np.zeros(3, np.uint16)])
def test_write_rejects_dtypes_idx_cannot_hold(tmp_path, bad):
    with pytest.raises(TypeError, match="IDX cannot store"):
        write_idx(tmp_path / "x", bad)


# ----------------------------------------------------------------- broken files
def _valid_bytes(shape=(4, 3, 3)) -> bytes:
    array = np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape)
    return bytes([0, 0, 0x08, len(shape)]) + b"".join(s.to_bytes(4, "big") for s in shape) + array.tobytes()


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_payload(tmp_path, suffix):
    data = _valid_bytes()[:-5]
    path = tmp_path / f"images{suffix}"
    path.write_bytes(gzip.compress(data) if suffix else data)
    with _raises_naming(path, "truncated", "36 bytes", "found 31"):
        read_idx(path)


def test_payload_longer_than_header_says(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(_valid_bytes() + b"\x00")
    with _raises_naming(path, "longer than its header"):
        read_idx(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(_valid_bytes()[:9])  # 3 dims declared, 5 header bytes after magic
    with _raises_naming(path, "truncated", "3 dimensions"):
        read_idx(path)


@pytest.mark.parametrize("content", [b"", b"\x00\x00"], ids=["empty", "two-bytes"])
def test_too_short(tmp_path, content):
    path = tmp_path / "tiny"
    path.write_bytes(content)
    with _raises_naming(path, "too short"):
        read_idx(path)


@pytest.mark.parametrize("magic", [b"\x00\x01\x08\x03", b"\x89PNG", b"\x01\x00\x08\x01"])
def test_bad_magic(tmp_path, magic):
    path = tmp_path / "images"
    path.write_bytes(magic + _valid_bytes()[4:])
    with _raises_naming(path, "not an IDX file", magic[:4].hex()):
        read_idx(path)


@pytest.mark.parametrize("type_code", [0x00, 0x07, 0x0A, 0x0F, 0xFF])
def test_unknown_type_code(tmp_path, type_code):
    path = tmp_path / "images"
    data = bytearray(_valid_bytes())
    data[2] = type_code
    path.write_bytes(bytes(data))
    with _raises_naming(path, f"0x{type_code:02X}"):
        read_idx(path)


def test_wrong_number_of_dimensions(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.arange(10, dtype=np.uint8))
    assert read_idx(path, ndim=1).shape == (10,)
    with _raises_naming(path, "expected an IDX file with 3 dimension(s)", "says 1"):
        read_idx(path, ndim=3)


def test_corrupt_gzip_stream(tmp_path):
    compressed = bytearray(gzip.compress(_valid_bytes((20, 28, 28))))
    middle = len(compressed) // 2
    compressed[middle:middle + 8] = b"\xff" * 8
    path = tmp_path / "images.gz"
    path.write_bytes(bytes(compressed))
    with _raises_naming(path, "corrupt", "gzip"):
        read_idx(path)


def test_cut_off_gzip_stream(tmp_path):
    compressed = gzip.compress(_valid_bytes((20, 28, 28)))
    path = tmp_path / "images.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with _raises_naming(path, "corrupt or truncated gzip"):
        read_idx(path)


def test_gz_name_without_gzip_content(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(b"hello, not gzip")
    with _raises_naming(path, "not gzip"):
        read_idx(path)


def test_errors_are_value_errors_and_missing_file_is_file_not_found(tmp_path):
    assert issubclass(DataError, ValueError)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent.gz")


def test_real_mnist_test_files():
    data_dir = shared_data_dir()
    if data_dir is None or not (data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("real MNIST files not available (set FASTCONV_DATA)")
    images = read_idx(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz", ndim=3)
    labels = read_idx(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz", ndim=1)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and images.min() == 0
    np.testing.assert_array_equal(labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])  # the famous first digits


def _gzip_bomb(path, shape, payload_mib: int):
    """A gzip IDX file whose header declares ``shape`` (uint8) but whose payload
    inflates to ``payload_mib`` MiB of zeros; written in 1 MiB pieces (a ~1000:1 ratio,
    so the file stays small)."""
    header = bytes([0, 0, 0x08, len(shape)]) + b"".join(s.to_bytes(4, "big") for s in shape)
    zeros = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(header)
        for _ in range(payload_mib):
            handle.write(zeros)
    return path


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    import tracemalloc

    path = _gzip_bomb(tmp_path / "bomb-images.gz", (10, 28, 28), payload_mib=64)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with _raises_naming(path, "inflates to more than the 7840 bytes"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak / 2**20:.0f} MiB allocated for a 7840-byte declared payload"


def test_header_is_checked_before_the_payload_is_inflated(tmp_path):
    import tracemalloc

    path = _gzip_bomb(tmp_path / "bomb-labels.gz", (10, 28, 28), payload_mib=64)
    tracemalloc.start()
    try:
        with _raises_naming(path, "expected an IDX file with 1 dimension(s)"):
            read_idx(path, ndim=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_declared_size_beyond_what_gzip_can_hold(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 0x08, 3]) + (2**31).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2))
    with _raises_naming(path, "more than a", "gzip file can hold"):
        read_idx(path)
