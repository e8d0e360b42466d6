"""How long compiling a warm-up group takes on this machine: measured seconds kept in
the fastconv cache folder, else a reference measurement scaled by how fast this
machine compiled the groups it has done in this process.  Only for telling the user
how long a wait is: nothing else depends on it."""

from __future__ import annotations

import json
import os
import stat
import tempfile

from fastconv.system import env

# Seconds per group, float32, one process, cold cache, in `warmup.groups()` order, on
# a 2-core Intel Xeon (family 6 model 167) (`python bench/compile_times.py`).  A later
# group loads the helpers an earlier one compiled (shifted_rows runs shifted's kernels).
REFERENCE_SECONDS = {"direct": 7.4, "gemm": 11.6, "shifted": 11.0, "shifted_rows": 0.1, "winograd": 17.9,
                     "blocked": 9.3, "loss": 0.2, "pool": 4.2, "norm": 1.2, "dense": 2.0, "unfold": 0.6,
                     "general": 26.6, "elementwise": 2.6}
REFERENCE_MACHINE = "a 2-core Intel Xeon"
# A convolution algorithm's group splits into these parts when two processes share a
# cold compile (`warmup`); each part's seconds are kept under ``"dtype:group:part"``.
PARTS = ("forward", "backward")
_UNKNOWN_GROUP_SECONDS = 10.0
_FILE = "compile-seconds.json"
_MAX_BYTES = 1 << 16             # a few dozen entries; anything bigger is not ours

_measured: dict | None = None     # "dtype:group" -> seconds, this machine
_speed: list = []                 # (measured, reference) seconds of groups done in this process


def _path() -> str:
    return os.path.join(env.cache_dir(), _FILE)


def _read() -> dict:
    try:
        info = os.stat(_path())
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_BYTES:   # a FIFO would block
            return {}
        with open(_path(), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def _load() -> dict:
    global _measured
    if _measured is None:
        _measured = _read()
    return _measured


def _reference(item: str) -> float:
    _, group, *part = item.split(":")
    return REFERENCE_SECONDS.get(group, _UNKNOWN_GROUP_SECONDS) / (len(PARTS) if part else 1)


def seconds(item: str) -> tuple[float, bool]:
    """(estimated cold seconds of ``"dtype:group"`` or ``"dtype:group:part"``, whether
    measured on this machine)."""
    measured = _load().get(item)
    if measured is None and item.count(":") == 1:      # a group last compiled in parts
        parts = [_load().get(f"{item}:{part}") for part in PARTS]
        measured = None if None in parts else sum(parts)
    if measured is not None:
        return measured, True
    if _speed:
        factor = sum(m for m, _ in _speed) / max(sum(r for _, r in _speed), 1e-9)
        return _reference(item) * factor, True
    return _reference(item), False


def record(item: str, elapsed: float) -> None:
    """Keep a cold compile's seconds (written atomically; a failure only loses it)."""
    _speed.append((elapsed, _reference(item)))
    _load()[item] = round(elapsed, 2)
    measured = _read()              # merged with what a helper process wrote meanwhile
    measured[item] = round(elapsed, 2)
    try:
        os.makedirs(env.cache_dir(), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=env.cache_dir(), prefix=".compile-seconds-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(measured, f, indent=0, sort_keys=True)
            os.replace(tmp, _path())
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


def estimate(items, jobs: int = 1) -> tuple[float, bool]:
    """(wall seconds to compile ``items`` cold on ``jobs`` processes, whether every
    part was measured on this machine)."""
    parts = [seconds(item) for item in items]
    total = sum(s for s, _ in parts)
    wall = max(total / max(1, min(jobs, len(parts))), max((s for s, _ in parts), default=0.0))
    return wall, all(known for _, known in parts)
