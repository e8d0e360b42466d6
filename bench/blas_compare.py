"""The kernels' BLAS candidates on the GEMM shapes the numba backend issues.

fastconv's own OpenBLAS (scipy-openblas32, the kernels OpenBLAS detects or
``FASTCONV_OPENBLAS_CORETYPE``), SciPy's OpenBLAS (the kernels ``OPENBLAS_CORETYPE``
sets, if anything) and MKL are bound at once (their own symbols) and called from a
numba kernel the way the backend calls them: single-threaded, from each of the
numba threads, interleaved, median of 60 runs.  Prints GFLOP/s per core and each
library's rate relative to the first.

    python bench/blas_compare.py
"""

from __future__ import annotations

import os
import time

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import njit, prange, types
from threadpoolctl import threadpool_limits

from fastconv.backends.numba_backend import blas

# (M, K, N): rows = output channels (or Winograd K), depth, columns (pixels / tiles)
SHAPES = [(64, 147, 1568), (32, 27, 1568), (16, 144, 1024), (32, 288, 1024), (64, 576, 512),
          (128, 576, 196), (128, 1152, 196), (256, 2304, 49), (512, 4608, 16), (64, 576, 64),
          (512, 256, 16), (16, 16, 16384), (64, 64, 256)]


def _kernel(symbol):
    sgemm = types.ExternalFunction(symbol, types.void(*([types.voidptr] * 13)))

    @njit(nogil=True)
    def gemm(a, b, c):                       # row-major c = a @ b as column-major c^T = b^T a^T
        m, k = a.shape
        n = b.shape[1]
        ints = np.array([n, m, k, n, k, n], np.int32)
        scalars = np.array([1.0, 0.0], np.float32)
        op = np.array([78], np.uint8)
        sgemm(op.ctypes, op.ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes,
              scalars.ctypes, b.ctypes, ints[3:].ctypes, a.ctypes, ints[4:].ctypes,
              scalars[1:].ctypes, c.ctypes, ints[5:].ctypes)

    @njit(nogil=True, parallel=True)
    def per_thread(a, b, c, threads):
        for t in prange(threads):
            gemm(a, b, c[t])

    return per_thread


def _libraries() -> dict:
    """name -> sgemm address of every library that loads here."""
    found = {}
    own = blas._own_openblas_gemms()
    if own is not None:
        found[own[0]] = own[1][0]
    found[f"scipy openblas ({os.environ.get('OPENBLAS_CORETYPE') or 'detected'})"] = blas._scipy_openblas_gemms()[1][0]
    mkl = blas._mkl_gemms()
    if mkl is not None:
        found["mkl"] = mkl[0]
    return found


def main() -> None:
    kernels = {}
    for i, (name, address) in enumerate(_libraries().items()):
        llvm.add_symbol(f"bench_sgemm_{i}", address)
        kernels[name] = _kernel(f"bench_sgemm_{i}")
    names = list(kernels)
    print("libraries:", "; ".join(names))
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            print(f"threads {threads}: GFLOP/s per core")
            for m, k, n in SHAPES:
                a = rng.standard_normal((m, k)).astype(np.float32)
                b = rng.standard_normal((k, n)).astype(np.float32)
                c = np.empty((threads, m, n), np.float32)
                times = {name: [] for name in kernels}
                for _ in range(60):
                    for name, kernel in kernels.items():
                        start = time.perf_counter()
                        kernel(a, b, c, threads)
                        times[name].append(time.perf_counter() - start)
                rate = {name: 2 * m * k * n / np.median(t[5:]) / 1e9 for name, t in times.items()}
                cells = [f"{rate[names[0]]:5.0f}"] + [f"{rate[name]:5.0f} ({rate[name] / rate[names[0]]:.2f})"
                                                       for name in names[1:]]
                print(f"  M{m:4d} K{k:5d} N{n:6d}: " + "  ".join(cells))


if __name__ == "__main__":
    main()
