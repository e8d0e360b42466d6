"""What machine this is, for keys that must not carry over to another CPU."""

from __future__ import annotations

import functools
import platform


@functools.lru_cache(maxsize=None)   # read once: convolution calls look it up
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what `platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
