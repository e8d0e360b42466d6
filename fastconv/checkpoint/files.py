"""Files a training run writes: atomic replacement, the output folder's lock, leftovers.

* `write_json_atomic` / `write_npz_atomic`: the data goes to a temporary file beside
  the target (``.<name>.<random>.tmp``), is flushed to disk, then renamed over the
  target (`os.replace`, atomic on POSIX and Windows): a crash leaves the old file or
  the new one, never half of one.  A failed write (a full disk, a too-long name)
  raises `OSError` naming the target.
* `locked_folder`: an OS lock (``fcntl.flock``) on ``<folder>/.fastconv.lock`` for the
  life of a run, so two runs cannot write into one folder.  The kernel drops the lock
  when the process ends, however it ends; the (empty) lock file stays.
* `remove_stale_temp_files`: temporary files a killed run left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

LOCK_NAME = ".fastconv.lock"


class FolderInUseError(OSError):
    """Another live process holds the lock of an output folder."""


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` with the target file in its message (a write's ENOSPC names none)."""
    if exc.filename is not None:
        return exc
    if exc.errno is None:
        return OSError(f"cannot write {path}: {exc}")
    return OSError(exc.errno, f"cannot write {path}: {exc.strerror}")


@contextlib.contextmanager
def atomic_target(path):
    """Yield a binary file object beside ``path``; on success it replaces ``path``,
    on any error (also `KeyboardInterrupt`) it is deleted."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _naming(exc, path) from exc
    try:
        with os.fdopen(handle, "wb") as tmp_file:
            yield tmp_file
            tmp_file.flush()
            os.fsync(tmp_file.fileno())
        # mkstemp creates the file 0600; give it the permissions open() would have.
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise


def write_json_atomic(path, data) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_target(Path(path)) as f:
        f.write(json.dumps(data, indent=1).encode())
    return Path(path)


def write_npz_atomic(path, arrays: dict[str, np.ndarray]) -> Path:
    """``np.savez`` to ``path`` atomically (no pickled objects: all arrays numeric or str)."""
    for key, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"checkpoint entry {key!r} is an object array; it would need pickle")
    with atomic_target(Path(path)) as f:
        np.savez(f, **arrays)
    return Path(path)


def remove_stale_temp_files(folder, names) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files of `atomic_target` for each of ``names`` in
    ``folder``: left by a killed run.  Only call it while holding the folder's lock."""
    removed = []
    for name in names:
        for leftover in Path(folder).glob(f".{name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                removed.append(leftover)
    return removed


@contextlib.contextmanager
def locked_folder(folder, what: str = "another fastconv run"):
    """Create ``folder`` if needed and hold its lock until the block ends.  A second
    holder gets `FolderInUseError` at once (no waiting)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise _naming(exc, folder) from exc
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise FolderInUseError(f"{folder} is in use by {what} (pid {holder}); wait for it "
                                       "to finish or choose another output folder") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)
