"""Per-call cost of fastconv's Python layers on problems too small to take any
compute time: a 1x1 convolution of a 4x4 image, ReLU and 2x2 max pooling, best of 5
rounds of 20,000 calls, microseconds (numba backend, autotuned choice cached).

    python bench/dispatch_overhead.py
"""

from __future__ import annotations

import time

import numpy as np

import fastconv
import fastconv.functional as F


def per_call_us(fn, calls: int = 20000, rounds: int = 5) -> float:
    for _ in range(200):
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main() -> None:
    fastconv.set_backend("numba")
    x = np.random.default_rng(0).random((1, 1, 4, 4), dtype=np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    b = np.zeros(1, np.float32)
    for name, fn in {"F.conv2d": lambda: F.conv2d(x, w, b), "F.conv2d_relu": lambda: F.conv2d_relu(x, w, b),
                     "F.relu": lambda: F.relu(x), "F.max_pool2d": lambda: F.max_pool2d(x, 2),
                     "np.maximum (for scale)": lambda: np.maximum(x, 0)}.items():
        print(f"{name:24} {per_call_us(fn):7.2f} us")


if __name__ == "__main__":
    main()
