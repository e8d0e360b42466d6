"""Reader and writer for the IDX format of MNIST / Fashion-MNIST.

Layout (all integers big-endian), from the MNIST page by LeCun, Cortes and Burges:

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
import math
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
# Deflate expands at most ~1032:1, so a gzip file of n bytes cannot hold more than
# this many times n bytes of IDX data; a header declaring more is corrupt.
_DEFLATE_MAX_RATIO = 1032
_CHUNK = 1 << 20


def _gzip_errors():
    # BadGzipFile is an OSError; a cut-off stream is an EOFError
    return (OSError, EOFError, zlib.error)


def _read_exactly(stream, size: int) -> np.ndarray:
    """Up to ``size`` bytes of ``stream`` into one preallocated buffer (no copies, and
    nothing inflated beyond it); the returned array is shorter if the stream ended."""
    buffer = np.empty(size, dtype=np.uint8)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = stream.readinto(view[got:got + _CHUNK])
        if not count:
            break
        got += count
    return buffer[:got]


def _header(stream, path: Path, ndim: int | None) -> tuple[np.dtype, tuple[int, ...], int]:
    """``(dtype, shape, header bytes)`` from the first bytes of the IDX stream."""
    magic = stream.read(4)
    if len(magic) < 4:
        raise DataError(f"{path} is too short ({len(magic)} bytes) to be an IDX file")
    zero0, zero1, type_code, n_dims = magic
    if zero0 != 0 or zero1 != 0:
        raise DataError(f"{path} is not an IDX file: magic number {magic.hex()} does not start with 0000")
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_DTYPES)
        raise DataError(f"{path}: unknown IDX element type 0x{type_code:02X} (known: {known})")
    if ndim is not None and n_dims != ndim:
        raise DataError(f"{path}: expected an IDX file with {ndim} dimension(s), the header says {n_dims}")
    sizes = stream.read(4 * n_dims)
    if len(sizes) < 4 * n_dims:
        raise DataError(f"{path} is truncated: header declares {n_dims} dimensions but the file has "
                        f"{4 + len(sizes)} bytes")
    return IDX_DTYPES[type_code], struct.unpack(f">{n_dims}I", sizes), 4 + 4 * n_dims


def _truncated(path: Path, dtype, shape, expected: int, found: int) -> DataError:
    return DataError(f"{path} is truncated: shape {tuple(shape)} of {dtype.name} needs {expected} bytes "
                     f"of data, found {found}")


def _raw_payload(handle, path: Path, dtype, shape, remaining: int) -> np.ndarray:
    """The data of an uncompressed file, whose size says up front whether it fits."""
    expected = math.prod(shape) * dtype.itemsize
    if remaining != expected:
        if remaining < expected:
            raise _truncated(path, dtype, shape, expected, remaining)
        raise DataError(f"{path} is longer than its header says: shape {tuple(shape)} of {dtype.name} "
                        f"needs {expected} bytes of data, found {remaining}")
    return _read_exactly(handle, expected)


def _gzip_payload(stream, path: Path, dtype, shape, stored: int) -> np.ndarray:
    """The data of a gzip file, inflated no further than the declared size plus one
    byte (the check that nothing follows)."""
    expected = math.prod(shape) * dtype.itemsize
    if expected > stored * _DEFLATE_MAX_RATIO:
        raise DataError(f"{path} is corrupt: its header declares shape {tuple(shape)} of {dtype.name} "
                        f"({expected} bytes), more than a {stored}-byte gzip file can hold")
    payload = _read_exactly(stream, expected)
    if len(payload) < expected:
        raise _truncated(path, dtype, shape, expected, len(payload))
    if stream.read(1):
        raise DataError(f"{path} is corrupt gzip data or longer than its header says: it inflates to "
                        f"more than the {expected} bytes of shape {tuple(shape)} of {dtype.name}")
    return payload


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian, writable array.

    The header is read and checked first; the data is then read (inflated, for gzip)
    into one buffer of the declared size and no further, so a small file whose
    payload would inflate to gigabytes costs no more memory than its header claims.

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
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc
    with handle:
        stored = os.fstat(handle.fileno()).st_size
        start = handle.read(4)
        handle.seek(0)
        if start[:2] != _GZIP_MAGIC:
            if path.suffix == ".gz":
                raise DataError(f"{path} is named .gz but is not gzip data (starts with {start.hex() or 'nothing'})")
            dtype, shape, header_len = _header(handle, path, ndim)
            payload = _raw_payload(handle, path, dtype, shape, stored - header_len)
        else:
            try:
                with gzip.GzipFile(fileobj=handle, mode="rb") as stream:
                    dtype, shape, _ = _header(stream, path, ndim)
                    payload = _gzip_payload(stream, path, dtype, shape, stored)
            except _gzip_errors() as exc:
                raise DataError(f"corrupt or truncated gzip file {path}: {exc}") from exc
    array = payload.view(dtype).reshape(shape)
    # native byte order: a copy for multi-byte types, the buffer itself for uint8/int8
    return array.astype(dtype.newbyteorder("="), copy=False)


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
