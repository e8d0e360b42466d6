"""Batch-1 convolutions on one thread vs all threads, and what two GEMMs cost side by side.

Part 1 times ``F.conv2d`` forward at batch 1 with the GEMM algorithm on 1 and on all
threads, and PyTorch, interleaved (bursts of 10 calls, median of 15 rounds).  Part 2
runs one single-threaded BLAS GEMM alone, split in two over the threads (by rows,
by columns), and two whole GEMMs at once (one per thread): on a machine whose
threads share a core, the last is far slower than the first.  Autotuning times the
one-thread variant itself (``select._variants``); this script shows why it has to.

    python bench/batch1_threads.py
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit, prange

import fastconv
import fastconv.functional as F
from fastconv.backends.numba_backend import blas as blas_binding
from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend import select
from fastconv.backends.numba_backend.kernels import blas

LAYERS = [(16, 16, 32, 3, 1), (32, 32, 16, 3, 1), (64, 64, 8, 3, 1), (128, 128, 14, 3, 1),
          (256, 256, 7, 3, 1), (512, 512, 4, 3, 1), (3, 64, 112, 7, 2)]   # c_in, c_out, size, k, stride
GEMMS = [(64, 576, 64), (32, 288, 256), (64, 576, 128)]


def _median_us(variants, rounds=15, burst=10):
    for fn in variants.values():
        fn()
    samples = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(burst):
                fn()
            samples[name].append((time.perf_counter() - start) / burst)
    return {name: float(np.median(v)) * 1e6 for name, v in samples.items()}


def conv_layers(threads):
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    fastconv.set_backend("numba")
    select.set_conv_algorithm("gemm")
    rng = np.random.default_rng(0)
    for c_in, c_out, size, k, stride in LAYERS:
        x = rng.standard_normal((1, c_in, size, size)).astype(np.float32)
        w = rng.standard_normal((c_out, c_in, k, k)).astype(np.float32)
        b = np.zeros(c_out, np.float32)
        variants = {}
        for count in sorted({1, threads}):
            def run(count=count):
                with rt.thread_limit(count):
                    F.conv2d(x, w, b, stride, k // 2)
            variants[f"gemm, {count} thread(s)"] = run
        if torch is not None:
            xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))

            def run_torch():
                with torch.no_grad():
                    torch.nn.functional.conv2d(xt, wt, bt, stride, k // 2)
            variants["PyTorch"] = run_torch
        times = _median_us(variants)
        print(f"{c_in}->{c_out} {k}x{k}/{stride} @{size}: "
              + "  ".join(f"{name} {us:.0f} us" for name, us in times.items()), flush=True)
    select.set_conv_algorithm(None)


@njit(nogil=True)
def _alone(a, b, c):
    blas.gemm(a, b, c)


@njit(parallel=True, nogil=True)
def _by_rows(a, b, c):
    m = a.shape[0]
    for t in prange(2):
        blas.gemm(a[t * m // 2:(t + 1) * m // 2], b, c[t * m // 2:(t + 1) * m // 2])


@njit(parallel=True, nogil=True)
def _by_columns(a, b, c):
    n = b.shape[1]
    for t in prange(2):
        blas.gemm(a, b[:, t * n // 2:(t + 1) * n // 2], c[:, t * n // 2:(t + 1) * n // 2])


@njit(parallel=True, nogil=True)
def _two_at_once(a, b, c2):
    for t in prange(2):
        blas.gemm(a, b, c2[t])


def gemm_pairs():
    blas_binding.provider()
    for m, k, n in GEMMS:
        a = np.random.rand(m, k).astype(np.float32)
        b = np.random.rand(k, n).astype(np.float32)
        c = np.empty((m, n), np.float32)
        c2 = np.empty((2, m, n), np.float32)
        times = _median_us({"alone": lambda: _alone(a, b, c), "split by rows": lambda: _by_rows(a, b, c),
                            "split by columns": lambda: _by_columns(a, b, c),
                            "two at once": lambda: _two_at_once(a, b, c2)}, burst=50)
        print(f"GEMM {m}x{k}x{n}: " + "  ".join(f"{name} {us:.1f} us" for name, us in times.items()))


if __name__ == "__main__":
    print(f"{rt.get_num_threads()} threads, GEMMs on {blas_binding.provider()}")
    conv_layers(rt.get_num_threads())
    if rt.get_num_threads() >= 2:
        gemm_pairs()
