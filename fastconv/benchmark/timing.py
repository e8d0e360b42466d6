"""Timing with warm-up and medians, the machine's description, and its matmul peak."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Timing:
    """Seconds per call: median and the spread that a single number would hide."""

    median: float
    q1: float
    q3: float
    minimum: float
    maximum: float
    repeats: int

    def as_dict(self) -> dict:
        return asdict(self)


# OpenBLAS (numpy's) and OpenMP (PyTorch's) worker threads busy-wait for ~0.1 s after
# a call.  On 2 cores that halves the speed of whatever runs next: numba's GEMM conv
# measured 25 ms instead of 12.4 ms right after the numpy backend's.  Idle first.
SETTLE_SECONDS = 0.15


def measure(fn, repeat: int = 7, warmup: int = 1, budget: float = 2.0, min_seconds: float = 0.0,
            max_repeat: int = 2000) -> Timing:
    """Call `fn` `warmup` times untimed, then at least `repeat` times (fewer when one
    call is slow, but at least 3 unless a single call exceeds the budget), and for
    fast calls keep sampling until `min_seconds` have passed: a 1 ms step then gets
    hundreds of samples, so its median is the steady state, not the first calls'."""
    time.sleep(SETTLE_SECONDS)
    for _ in range(warmup):
        fn()
    samples = []
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        spent = time.perf_counter() - started
        if len(samples) >= repeat and (spent >= min_seconds or len(samples) >= max_repeat):
            break
        if spent > budget and (len(samples) >= 3 or spent > 3 * budget):
            break
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    return Timing(float(median), float(q1), float(q3), float(min(samples)), float(max(samples)), len(samples))


def matmul_peak_gflops(size: int = 2048, repeat: int = 7) -> float:
    """float32 GEMM throughput of numpy's BLAS: the yardstick for '% of peak'.

    From the fastest call, not the median: a peak is what the machine can reach, and
    on this noisy 2-core machine the median of a 1024^3 product read 10 % low.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    timing = measure(lambda: a @ b, repeat=repeat, warmup=2)
    return 2.0 * size ** 3 / timing.minimum / 1e9


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_name() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy: no dict mode
        return "unknown"


def machine_info(threads: int) -> dict:
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas_name(),
    }
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        info["numba"] = None
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info
