"""The few-column forward GEMM (`numba_backend.gemm._skinny`) against the BLAS path on
the same layers, forced `gemm`, interleaved in one process (medians, ms).  Each call
takes the next of enough weight copies to fill 64 MB, so the weights come from
memory as in a network's pass, not from cache.

    python bench/skinny_gemm.py
"""

from __future__ import annotations

import contextlib
import functools
import itertools

import numpy as np

import fastconv.functional as F
from fastconv.backends.numba_backend import gemm, select
from fastconv.benchmark.timing import measure_interleaved

# (batch, C_in, C_out, size, kernel, stride, padding)
LAYERS = [(1, 512, 512, 1, 3, 1, 1), (2, 512, 512, 1, 3, 1, 1), (1, 512, 512, 2, 3, 1, 1),
          (2, 512, 512, 2, 3, 1, 1), (1, 256, 512, 2, 3, 1, 1), (1, 128, 256, 2, 3, 1, 1),
          (1, 64, 128, 2, 3, 1, 1), (1, 512, 512, 4, 3, 1, 1), (1, 256, 512, 7, 1, 2, 0)]


@contextlib.contextmanager
def columns_limit(limit):
    select.set_conv_algorithm("gemm")
    saved, gemm._SKINNY_MAX_COLUMNS = gemm._SKINNY_MAX_COLUMNS, limit
    try:
        yield
    finally:
        gemm._SKINNY_MAX_COLUMNS = saved
        select.set_conv_algorithm(None)


def main() -> None:
    rng = np.random.default_rng(0)
    options = dict(repeat=9, warmup=2, budget=1.0, min_seconds=0.3)
    for n, c_in, c_out, size, k, stride, pad in LAYERS:
        x = rng.standard_normal((n, c_in, size, size)).astype(np.float32)
        w = (rng.standard_normal((c_out, c_in, k, k)) * 0.05).astype(np.float32)
        b = rng.standard_normal(c_out).astype(np.float32)
        copies = itertools.cycle([w.copy() for _ in range(max(1, (64 << 20) // w.nbytes))])
        call = lambda: F.conv2d(x, next(copies), b, stride, pad)                  # noqa: E731
        times = measure_interleaved({"blas": (call, options, functools.partial(columns_limit, 0)),
                                     "skinny": (call, options, functools.partial(columns_limit, 1 << 30))})
        columns = n * ((size + 2 * pad - k) // stride + 1) ** 2
        blas, skinny = times["blas"].median * 1e3, times["skinny"].median * 1e3
        print(f"N{n} {c_in}->{c_out} {k}x{k}/{stride} @{size} ({columns} columns): BLAS {blas:.3f} ms, "
              f"few-column {skinny:.3f} ms, BLAS / few-column {blas / skinny:.2f}", flush=True)


if __name__ == "__main__":
    main()
