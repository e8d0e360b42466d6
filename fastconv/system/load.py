"""How busy this process's cores are right now, and the advice that follows.

A parallel kernel ends at a barrier, so it is as slow as its slowest thread.  When
fastconv runs one thread per core and another process keeps one of those cores busy,
the thread sharing that core is late at every barrier: on 2 cores with one
busy-looping process, report 000's training step measured 2.4x slower with 2 threads
than with 1 (``fastconv bench`` measures this on your machine, "under load").  The
thread count is not changed automatically -- results would then depend on the load
(the order of floating-point sums follows the threads) -- but a run on a busy
machine says what to set.
"""

from __future__ import annotations

import os
import time

_PROC_STAT = "/proc/stat"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times(cpus) -> dict[int, tuple[int, int]]:
    """``cpu -> (busy, total)`` jiffies from /proc/stat for the given CPUs."""
    times = {}
    with open(_PROC_STAT) as stat:
        for line in stat:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            cpu = int(name[3:])
            if cpu in cpus:
                values = [int(v) for v in fields[:8]]
                idle = values[3] + values[4]            # idle + iowait
                times[cpu] = (sum(values) - idle, sum(values))
    return times


COMPILE_HELPER = "fastconv.backends.numba_backend.background"
"""The module a background compile helper runs (``python -m``): niced with its
session, it yields its core to this process, so its CPU time is not load."""


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and of fastconv's niced compile helpers (one
    started by an earlier run may still be finishing the kernels of the next)."""
    times = os.times()
    return times.user + times.system + _helper_cpu_seconds()


def _helper_cpu_seconds() -> float:
    ticks = 0
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if COMPILE_HELPER.encode() not in cmdline.read():
                    continue
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:              # ended meanwhile, or not ours to read
            continue
        if int(fields[16]) > 0:      # nice: a helper compiling in the background
            ticks += int(fields[11]) + int(fields[12])          # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def busy_cores(seconds: float = 0.25) -> float | None:
    """How many of this process's cores other work kept busy over the next
    ``seconds`` (this thread sleeps meanwhile); None where /proc/stat is missing.

    This process's own other threads do not count: a BLAS thread pool still spinning
    after a matmul (OpenBLAS's do, for a while) would otherwise read as another
    process and advise one thread for no reason.
    """
    try:
        cpus = set(os.sched_getaffinity(0))
        before, own_before = _cpu_times(cpus), _own_cpu_seconds()
        time.sleep(seconds)
        after, own = _cpu_times(cpus), _own_cpu_seconds() - own_before
    except (AttributeError, OSError, ValueError):
        return None
    busy, elapsed = 0.0, []
    for cpu, (busy_after, total_after) in after.items():
        busy_before, total_before = before.get(cpu, (busy_after, total_after))
        if total_after > total_before:
            busy += (busy_after - busy_before) / (total_after - total_before)
            elapsed.append((total_after - total_before) / os.sysconf("SC_CLK_TCK"))
    if elapsed:
        busy -= own / (sum(elapsed) / len(elapsed))
    return max(0.0, busy)


def advice(threads: int, busy: float | None, cores: int) -> str | None:
    """What to do when ``threads`` threads would share cores with ``busy`` cores' worth
    of other work; None when every thread has a core of its own."""
    if busy is None or threads < 2:
        return None
    free = max(1, cores - round(busy))
    if threads <= free:
        return None
    return (f"this machine is busy: other processes keep {busy:.1f} of its {cores} cores busy, and "
            f"{threads} kernel threads would each wait for the slowest at every step (measured: "
            f"2.4x slower than 1 thread with one core busy); for this run set "
            f"FASTCONV_NUM_THREADS={free}")
