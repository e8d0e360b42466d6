"""Reading an ``.npz`` archive someone else may have made, without surprises.

`numpy.load` trusts the archive: a small deflated member can inflate to gigabytes,
and an ``.npy`` header may declare a shape far larger than the bytes behind it (the
array is allocated before the bytes are read).  `read_npz` checks every member
first, from the zip directory and the ``.npy`` headers alone:

* each name must be accepted by the caller (unknown members are an error);
* members must be stored uncompressed, as `numpy.savez` writes them, so reading
  never needs more memory than the file's own size;
* each header's shape times item size must equal the member's byte count exactly;
* no object arrays (they would need pickle).

Any failure -- these checks, a truncated file, a flipped bit (CRC), a bad header --
is a `ValueError` whose message starts with the path.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
                TypeError, SyntaxError)


def _array_bytes(member) -> tuple[int, int]:
    """(header length, data bytes the header declares) of an open ``.npy`` member."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    if dtype.hasobject:
        raise ValueError("holds an object array (would need pickle)")
    return member.tell(), math.prod(shape) * dtype.itemsize


def _check_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int | None) -> None:
    name = info.filename[:-4]
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"member {name!r} is compressed (fastconv writes uncompressed npz files)")
    if max_bytes is not None and info.file_size > max_bytes:
        raise ValueError(f"member {name!r} has {info.file_size} bytes, more than the {max_bytes} allowed")
    with archive.open(info) as member:
        header, data = _array_bytes(member)
    if header + data != info.file_size:
        raise ValueError(f"member {name!r} declares {data} bytes of data but holds "
                         f"{info.file_size - header}")


def read_npz(path, accept: Callable[[str], bool], max_bytes: Callable[[str], int | None] = lambda name: None,
             what: str = "npz file") -> dict[str, np.ndarray]:
    """Every array of the npz at ``path`` by name (without ``.npy``), after the checks
    above.  ``accept(name)`` says which names may occur; ``max_bytes(name)`` an
    optional cap per member.  Errors read ``"<path> is not a <what>: ..."``."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            names = [info.filename for info in infos]
            if len(set(names)) != len(names):
                raise ValueError("duplicate member names")
            for info in infos:
                if not info.filename.endswith(".npy") or not accept(info.filename[:-4]):
                    raise ValueError(f"unknown member {info.filename!r}")
            for info in infos:
                _check_member(archive, info, max_bytes(info.filename[:-4]))
            arrays = {}
            for info in infos:
                with archive.open(info) as member:
                    arrays[info.filename[:-4]] = np.lib.format.read_array(member, allow_pickle=False)
            return arrays
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise  # they name the file already, and "not valid" would mislead
    except _READ_ERRORS as exc:
        raise ValueError(f"{path} is not a {what}: {exc}") from None
