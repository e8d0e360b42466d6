"""Reader and writer for the IDX format of MNIST / Fashion-MNIST.

Layout (all integers big-endian), from the MNIST page by LeCun, Cortes and Burges::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4*d bytes   the size of each dimension, uint32
    then        prod(sizes) elements, row-major (C order)

Files may be gzip-compressed; the reader recognises gzip by its magic bytes (an IDX
file always starts with two zero bytes, so the two cannot be confused) and not by
the file name, so a mis-named file still loads.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from fastconv.data.errors import DataError

__all__ = ["IDX_DTYPES", "read_idx", "write_idx"]

# IDX type code -> big-endian NumPy dtype of the payload
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's IDX bytes, decompressed if it is gzip."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc
    if raw[:2] != _GZIP_MAGIC:
        if path.suffix == ".gz":
            raise DataError(f"{path} is named .gz but is not gzip data (starts with {raw[:4].hex() or 'nothing'})")
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        # BadGzipFile is an OSError; a cut-off stream is an EOFError
        raise DataError(f"corrupt or truncated gzip file {path}: {exc}") from exc


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian, writable array.

    Parameters
    ----------
    path : the file; ``.gz`` or not, detected from its content.
    ndim : if given, the number of dimensions the file must have (3 for MNIST
        images, 1 for labels).

    Raises
    ------
    FileNotFoundError if the file does not exist; `DataError` (a ``ValueError``)
    naming the file if it is not valid IDX: bad magic, unknown type code, wrong
    number of dimensions, or a payload shorter or longer than the header says.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path} is too short ({len(data)} bytes) to be an IDX file")
    zero0, zero1, type_code, n_dims = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise DataError(f"{path} is not an IDX file: magic number {data[:4].hex()} does not start with 0000")
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX element type 0x{type_code:02X} (known: {known})")
    if ndim is not None and n_dims != ndim:
        raise DataError(f"{path}: expected an IDX file with {ndim} dimension(s), the header says {n_dims}")
    header_len = 4 + 4 * n_dims
    if len(data) < header_len:
        raise DataError(f"{path} is truncated: header declares {n_dims} dimensions but the file has "
                        f"{len(data)} bytes")
    shape = struct.unpack(f">{n_dims}I", data[4:header_len])
    dtype = IDX_DTYPES[type_code]
    expected_len = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    payload_len = len(data) - header_len
    if payload_len != expected_len:
        what = "truncated" if payload_len < expected_len else "longer than its header says"
        raise DataError(f"{path} is {what}: shape {tuple(shape)} of {dtype.name} needs {expected_len} bytes "
                        f"of data, found {payload_len}")
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    # astype copies: the result is writable, native-endian and owns its memory
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed if ``path`` ends with ``.gz``.

    The dtype must be one IDX can hold (uint8, int8, int16, int32, float32,
    float64); the write is atomic (temp file in the same folder, then rename).
    Returns the path written.
    """
    path = Path(path)
    array = np.asarray(array)
    by_dtype = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in by_dtype:
        valid = ", ".join(d.name for d in by_dtype)
        raise TypeError(f"IDX cannot store dtype {array.dtype}; valid dtypes: {valid}")
    if array.ndim > 255:
        raise ValueError(f"IDX holds at most 255 dimensions, got {array.ndim}")
    if any(size >= 2**32 for size in array.shape):
        raise ValueError(f"IDX dimension sizes must fit in uint32, got shape {array.shape}")
    type_code = by_dtype[native]
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[type_code]).tobytes()
    content = header + payload
    if path.suffix == ".gz":
        # mtime=0 keeps the bytes (and so the checksum) reproducible
        content = gzip.compress(content, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
