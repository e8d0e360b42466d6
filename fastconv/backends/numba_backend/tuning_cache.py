"""The autotuning cache: each timed problem's winner, kept per machine in one JSON file
(`autotune_cache`), so that later processes time nothing.

Whatever is found at its path cannot break or slow a run: a file above `MAX_BYTES`,
anything but a regular file (a FIFO would block the reader, a directory the writer),
invalid or too deeply nested JSON are ignored with one line and the process starts
from an empty cache; at most `MAX_ENTRIES` winners are kept, the oldest going first.
The file is read once per process, and again only when its inode, size or time
changed (another process saved), merging what that process added; a save writes a
temporary file and renames it over the cache (a reader never sees half a file),
removing the temporary file on any failure.  A path that holds something other than a
regular file is never written to: tuned choices then last for the process.

Validity of a winner's name is the caller's (`select`'s) business: ``valid`` below.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import stat
import tempfile

from fastconv.system import env
from fastconv.system.cpu import cpu_model

MAX_BYTES = 4 << 20              # a few thousand entries of ~250 bytes fit many times over
MAX_ENTRIES = 4000
MAX_KEY_CHARS = 800              # with MAX_ENTRIES: a full cache stays under MAX_BYTES

_log = logging.getLogger(__name__)


def autotune_cache() -> str:
    """Path of this machine's autotuning cache: ``FASTCONV_CACHE_DIR`` (default
    ``~/.cache/fastconv``), one file per CPU model and fastconv version."""
    from fastconv import __version__

    cpu = "".join(ch if ch.isalnum() else "-" for ch in cpu_model()).strip("-")[:60] or "cpu"
    return os.path.join(env.cache_dir(), f"conv-algorithms-{cpu}-{__version__}.json")


class _Cache:
    """The winners of one cache file as this process knows them."""

    def __init__(self, path: str):
        self.path = path
        self.winners: dict = {}
        self.stamp = None            # the file's `_stamp` when last read or written
        self.writable = True         # False: something other than a regular file is there
        self.save_failed = False     # said once


_cache: _Cache | None = None


def _stamp(info: os.stat_result):
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _current_stamp(path: str):
    try:
        return _stamp(os.stat(path))
    except OSError:
        return None


# --------------------------------------------------------------------------- reading
def _read_bytes(path: str):
    """(bytes or None, stamp or None, regular, refusal or None).  Opened non-blocking
    and checked on the open descriptor: a FIFO or a device is never read from."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None, None, True, None
    except OSError as err:
        return None, _current_stamp(path), os.path.isfile(path), f"cannot open it ({err.strerror or err})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, _stamp(info), False, "it is not a regular file"
        data = _read_at_most(fd, MAX_BYTES + 1) if info.st_size <= MAX_BYTES else None
        if data is None or len(data) > MAX_BYTES:            # (or it grew while being read)
            return None, _stamp(info), True, f"it is larger than {MAX_BYTES / 2 ** 20:g} MB"
        return data, _stamp(info), True, None
    except OSError as err:
        return None, _current_stamp(path), True, f"cannot read it ({err.strerror or err})"
    finally:
        os.close(fd)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _trim(entries: dict) -> dict:
    """Drop the oldest entries beyond `MAX_ENTRIES` (in place)."""
    excess = len(entries) - MAX_ENTRIES
    if excess > 0:
        for key in list(itertools.islice(entries, excess)):
            del entries[key]
    return entries


def _entries(data: bytes, valid) -> tuple[dict, str | None]:
    """The usable ``key -> winner`` entries of a file's bytes (the newest
    `MAX_ENTRIES`), and why none could be read."""
    try:
        loaded = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as err:     # RecursionError: deeply nested JSON
        return {}, f"it is not a valid cache ({type(err).__name__})"
    if not isinstance(loaded, dict):
        return {}, "it is not a valid cache (not a JSON object)"
    return _trim({k: v for k, v in loaded.items() if isinstance(k, str) and len(k) <= MAX_KEY_CHARS
                  and isinstance(v, str) and (valid is None or valid(v))}), None


def _load(path: str, valid) -> tuple[dict, object, bool]:
    """(entries, stamp, writable) of the file at ``path``: a file that cannot be used
    is said in one line and reads as empty; only a regular file (or none) may be
    replaced."""
    data, stamp, regular, refusal = _read_bytes(path)
    entries = {}
    if data is not None:
        entries, refusal = _entries(data, valid)
    if refusal:
        _log.warning("ignoring the autotuning cache %s: %s; starting from an empty one", path, refusal)
    return entries, stamp, regular


def read(path: str, valid=None) -> dict:
    """The winners stored in the file at ``path`` (empty when it cannot be used)."""
    return _load(path, valid)[0]


def winners(valid=None) -> dict:
    """This process's ``tuned key -> winner`` dict for the current cache path: read
    on first use, merged again only when the file changed since."""
    global _cache
    path = autotune_cache()
    if _cache is None or _cache.path != path:
        _cache = _Cache(path)
        _cache.winners, _cache.stamp, _cache.writable = _load(path, valid)
    else:
        _refresh(_cache, valid)
    return _cache.winners


def _refresh(cache: _Cache, valid) -> None:
    """Merge the file's entries into ``cache`` if another process changed it (its
    winner of a problem is the newer timing, so it wins)."""
    if _current_stamp(cache.path) == cache.stamp:
        return
    entries, cache.stamp, cache.writable = _load(cache.path, valid)
    cache.winners.update(entries)
    _trim(cache.winners)


# --------------------------------------------------------------------------- writing
def save(tuned_key: str, name: str, valid=None) -> None:
    """Keep ``tuned_key -> name`` in this process and in the cache file (merged with
    what other processes saved since this one last looked)."""
    entries = winners(valid)                            # merges another process's saves
    entries.pop(tuned_key, None)                        # re-inserted as the newest
    entries[tuned_key] = name
    _trim(entries)
    cache = _cache
    if not cache.writable or len(tuned_key) > MAX_KEY_CHARS:   # kept for this process only
        return
    try:
        cache.stamp = _write(cache.path, entries)
    except OSError as err:
        if not cache.save_failed:
            cache.save_failed = True
            _log.warning("cannot save the autotuning cache %s (%s); tuned choices last for this process",
                         cache.path, err.strerror or err)


def _write(path: str, entries: dict):
    """Write ``entries`` to a temporary file beside ``path`` and rename it over it;
    returns the new file's stamp.  The temporary file never outlives a failure."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".conv-algorithms-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=0)
        os.chmod(tmp, 0o644)                 # mkstemp's 0600 would hide it from other users
        stamp = _stamp(os.stat(tmp))         # a rename keeps inode, size and time
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return stamp


def clear(memory_only: bool = False) -> None:
    """Forget the winners (this process's, and the cache file unless memory_only;
    only a regular file or a link is removed)."""
    global _cache
    _cache = None
    if memory_only:
        return
    path = autotune_cache()
    try:
        if not os.path.isdir(path) or os.path.islink(path):
            os.remove(path)
    except FileNotFoundError:
        pass
