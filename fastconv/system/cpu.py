"""What machine this is, for keys that must not carry over to another CPU."""

from __future__ import annotations

import functools
import platform


def _cpuinfo(field: str) -> str | None:
    """The first ``field`` line of ``/proc/cpuinfo``, None where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=None)   # read once: convolution calls look it up
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what `platform` says."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


@functools.lru_cache(maxsize=None)
def cpu_vendor() -> str:
    """The CPU vendor id, e.g. ``GenuineIntel`` or ``AuthenticAMD`` ("" if unknown)."""
    return _cpuinfo("vendor_id") or ""
