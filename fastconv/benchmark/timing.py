"""Timing with warm-up and medians, the machine's description, and its matmul peak."""

from __future__ import annotations

import contextlib
import inspect
import os
import platform
import time
from dataclasses import asdict, dataclass

import numpy as np

from fastconv.system.cpu import cpu_model


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


def _samples(fn, repeat: int, warmup: int, budget: float, min_seconds: float,
             max_repeat: int) -> list[float]:
    """Seconds of each timed call of `fn` (see `measure` for the rules)."""
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
    return samples


def summarize(samples) -> Timing:
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    return Timing(float(median), float(q1), float(q3), float(min(samples)), float(max(samples)),
                  len(samples))


def measure(fn, repeat: int = 7, warmup: int = 1, budget: float = 2.0, min_seconds: float = 0.0,
            max_repeat: int = 2000) -> Timing:
    """Call `fn` `warmup` times untimed, then at least `repeat` times (fewer when one
    call is slow, but at least 3 unless a single call exceeds the budget), and for
    fast calls keep sampling until `min_seconds` have passed: a 1 ms step then gets
    hundreds of samples, so its median is the steady state, not the first calls'."""
    return summarize(_samples(fn, repeat, warmup, budget, min_seconds, max_repeat))


ROUNDS = 3
# `measure`'s keyword defaults, which each variant's options of `measure_interleaved` override.
_MEASURE_DEFAULTS = {name: param.default for name, param in inspect.signature(measure).parameters.items()
                     if param.default is not inspect.Parameter.empty}


def measure_interleaved(variants: dict, rounds: int = ROUNDS) -> dict:
    """`measure` several variants of one job in turns: ``rounds`` bursts each, in the
    order variant 1, 2, ..., 1, 2, ..., and one `Timing` per variant from all of its
    bursts' samples.  This machine's speed drifts for seconds at a time; measured one
    after the other, a variant caught in a slow spell read 2x slower than the same
    code measured next, while spread over rounds a slow spell costs every variant one
    burst and leaves the medians alone.

    ``variants`` maps a label to ``(fn, options)`` or ``(fn, options, context)``:
    ``options`` are `measure`'s keyword arguments for the variant's whole
    measurement (split evenly over the bursts, at least one call per burst; the
    warm-up runs once), ``context`` a factory of the context manager each burst runs
    in (a backend switch, say).
    """
    samples = {label: [] for label in variants}
    for round_index in range(rounds):
        for label, (fn, options, *context) in variants.items():
            burst = _MEASURE_DEFAULTS | options
            burst["warmup"] = burst["warmup"] if round_index == 0 else 0
            for key in ("budget", "min_seconds"):
                burst[key] /= rounds
            burst["repeat"] = max(1, -(-burst["repeat"] // rounds))
            burst["max_repeat"] = max(1, burst["max_repeat"] // rounds)
            with (context[0]() if context else contextlib.nullcontext()):
                samples[label] += _samples(fn, **burst)
    return {label: summarize(values) for label, values in samples.items()}


def matmul_peak_gflops(size: int = 2048, repeat: int = 7, rounds: int = 1) -> float:
    """float32 GEMM throughput, the yardstick for '% of peak': the faster of numpy's
    matmul and the numba kernels' BLAS with one product per thread at once (numpy's
    OpenBLAS runs the kernels ``OPENBLAS_CORETYPE`` says: on this project's AMD EPYC,
    forced to AVX2, half of what the CPU does).

    From the fastest call of ``rounds`` rounds (each after a settling pause), not the
    median: a peak is what the machine can reach, and on this noisy 2-core machine
    the median of a 1024^3 product read 10 % low.  Measure it when nothing else runs:
    taken while numba compiled in the background it read 79 GFLOP/s, and kernels
    then showed 105 % of "peak".
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    fastest = _fastest_call(lambda: a @ b, repeat, rounds)
    return max(2.0 * size ** 3 / fastest / 1e9, kernel_blas_peak_gflops(a, b, repeat, rounds))


def _fastest_call(fn, repeat: int, rounds: int) -> float:
    """Seconds of the fastest call over ``rounds`` rounds (warm-up in the first only)."""
    return min(measure(fn, repeat=repeat, warmup=2 if round_index == 0 else 0).minimum
               for round_index in range(rounds))


def kernel_blas_peak_gflops(a, b, repeat: int, rounds: int) -> float:
    """``a @ b`` on every numba thread at once through the kernels' BLAS, GFLOP/s
    (0 without numba or a BLAS for it)."""
    try:
        import numba

        from fastconv.backends.numba_backend import blas
        from fastconv.backends.numba_backend.kernels.blas import gemm_on_each_thread
    except ImportError:
        return 0.0
    if blas.provider() == "none":
        return 0.0
    threads = numba.get_num_threads()
    out = np.empty((threads, a.shape[0], b.shape[1]), dtype=a.dtype)
    blas.keep_on_caller_thread()
    fastest = _fastest_call(lambda: gemm_on_each_thread(a, b, out, threads), repeat, rounds)
    return 2.0 * threads * a.shape[0] * a.shape[1] * b.shape[1] / fastest / 1e9


def _blas_name() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy: no dict mode
        return "unknown"


def machine_info(threads: int) -> dict:
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas_name(),
    }
    try:
        import numba

        info["numba"] = numba.__version__
        from fastconv.backends.numba_backend.blas import describe

        info["kernel_blas"] = describe()
    except ImportError:
        info["numba"] = None
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info
