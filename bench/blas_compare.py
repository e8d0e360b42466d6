"""MKL against SciPy's OpenBLAS on the GEMM shapes the numba backend issues.

Both libraries are bound at once (their own symbols) and called from a numba
kernel the way the backend calls them: single-threaded, from each of the numba
threads, interleaved, median of 60 runs.  Prints GFLOP/s per core and the ratio.

    python bench/blas_compare.py
"""

from __future__ import annotations

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


def main() -> None:
    mkl = blas._mkl_gemms()
    if mkl is None:
        raise SystemExit("MKL is not installed: pip install mkl")
    llvm.add_symbol("bench_sgemm_mkl", mkl[0])
    llvm.add_symbol("bench_sgemm_openblas", blas._openblas_gemms()[0])
    kernels = {"openblas": _kernel("bench_sgemm_openblas"), "mkl": _kernel("bench_sgemm_mkl")}
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
                print(f"  M{m:4d} K{k:5d} N{n:6d}: openblas {rate['openblas']:5.0f}  mkl {rate['mkl']:5.0f}"
                      f"  mkl/openblas {rate['mkl'] / rate['openblas']:.2f}")


if __name__ == "__main__":
    main()
