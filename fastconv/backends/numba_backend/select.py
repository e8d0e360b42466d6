"""Which convolution algorithm runs: forced, heuristic, or timed once per problem.

Every algorithm module (``direct``, ``gemm``, ...) has ``NAME``, ``EXACT`` (plain
summation, no transform arithmetic), ``supports(x_shape, w_shape, stride, padding)``
and ``forward`` / ``backward``.  The mode is `set_conv_algorithm`'s argument, else
``FASTCONV_CONV_ALGO`` (read at every call), else ``auto``:

* an algorithm's name forces it (where it does not support a shape, the exact
  fallback ``gemm``/``direct`` runs, and `last_conv_algorithms` says so);
* ``auto`` / ``heuristic`` pick by a rule;
* ``benchmark`` times the candidates once per key, like cuDNN's benchmark mode.
"""

from __future__ import annotations

import time

import numpy as np

from fastconv import env
from fastconv.backends.numba_backend import direct, gemm

ALGORITHMS = {module.NAME: module for module in (direct, gemm)}
MODES = ("auto", "benchmark") + tuple(ALGORITHMS)

_forced: str | None = None
last_conv_algorithms: dict = {}
"""``(pass, x_shape, w_shape, stride, padding, dtype) -> algorithm name`` for every
convolution run so far (the latest choice per key), for benchmark tables."""
_benchmarked: dict = {}


def set_conv_algorithm(algorithm: str | None) -> None:
    """Force an algorithm, pick per shape (``"auto"``), time the candidates once per
    key (``"benchmark"``), or ``None`` to follow ``FASTCONV_CONV_ALGO`` again."""
    global _forced
    if algorithm is not None:
        algorithm = _check_mode(algorithm, "set_conv_algorithm")
    _forced = algorithm


def get_conv_algorithm_mode() -> str:
    """The selection mode in force: setter, else ``FASTCONV_CONV_ALGO``, else ``auto``."""
    if _forced is not None:
        return _forced
    return env.choice(env.CONV_ALGO, MODES) or "auto"   # a bad value: EnvironmentVariableError


def _check_mode(mode, source) -> str:
    if not isinstance(mode, str) or mode.strip().lower() not in MODES:
        raise ValueError(f"{source}: unknown convolution algorithm {mode!r}; "
                         f"valid: {', '.join(MODES)}")
    return mode.strip().lower()


def key(pass_, x_shape, w_shape, stride, padding, dtype):
    return (pass_, tuple(int(v) for v in x_shape), tuple(int(v) for v in w_shape),
            tuple(stride), tuple(padding), np.dtype(dtype).name)


def heuristic(x_shape, w_shape, stride, padding, dtype, pass_) -> str:
    """Direct loops unless the GEMM is big enough in every dimension to pay off.

    Fitted to a grid of 72 shapes (C_in 1-64, C_out 4-64, k 3/5, 8x8-32x32, batch 32,
    forward and backward, 2 threads): this rule's total time was within 9 % of
    always picking the faster algorithm, against +30 % for always-direct and +46 %
    for always-GEMM.  The reasons:

    * C_out < 16: a GEMM with so few rows runs far below BLAS peak, while the direct
      kernel handles two output channels per pass at full speed;
    * C_in*kh*kw < 64: the GEMM's inner dimension is too short and im2col (one write
      and one read of the column buffer per output) dominates;
    * C_out < 32 on planes >= 24 wide: the direct kernel is at its best on long rows
      (little wasted border work) and wins ~2x (e.g. 64->16, k5, 32x32);
    * stride != 1: the direct kernel's strided path is plain loops, not tuned.
    """
    c_out, c_in, kh, kw = w_shape
    if not gemm.available():
        return "direct"
    if tuple(stride) != (1, 1):
        return "gemm"
    out_w = (x_shape[3] + 2 * padding[1] - kw) // stride[1] + 1
    if c_out < 16 or c_in * kh * kw < 64:
        return "direct"
    if c_out < 32 and out_w >= 24:
        return "direct"
    return "gemm"


def candidates(x_shape, w_shape, stride, padding) -> list[str]:
    """Algorithms that can run this problem, in the order they are tried."""
    return [name for name, module in ALGORITHMS.items()
            if module.supports(x_shape, w_shape, stride, padding)]


def _as_pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def conv_algorithm(x_shape, w_shape, stride=(1, 1), padding=(0, 0), dtype=np.float32,
                   pass_: str = "forward") -> str:
    """The algorithm a convolution with these arguments runs now, under the current
    mode (forced, heuristic or benchmarked)."""
    if pass_ not in ("forward", "backward"):
        raise ValueError(f"pass_ must be 'forward' or 'backward', got {pass_!r}")
    stride, padding = _as_pair(stride), _as_pair(padding)
    mode = get_conv_algorithm_mode()
    runnable = candidates(x_shape, w_shape, stride, padding)
    if mode in ALGORITHMS:
        return mode if mode in runnable else heuristic(x_shape, w_shape, stride, padding, dtype, pass_)
    if mode == "benchmark":
        chosen = _benchmarked.get(key(pass_, x_shape, w_shape, stride, padding, dtype))
        if chosen is not None:
            return chosen
    return heuristic(tuple(x_shape), tuple(w_shape), stride, padding, dtype, pass_)


def choose(pass_, x, w, stride, padding, run) -> str:
    """Pick (and record) the algorithm for this call; ``run(algo)`` executes one.

    In ``benchmark`` mode the first call for a key runs every candidate twice (the
    first run compiles and faults in buffers) and keeps the fastest.
    """
    k = key(pass_, x.shape, w.shape, stride, padding, x.dtype)
    if get_conv_algorithm_mode() == "benchmark" and k not in _benchmarked:
        timings = {}
        for algo in candidates(x.shape, w.shape, stride, padding):
            run(algo)
            start = time.perf_counter()
            run(algo)
            timings[algo] = time.perf_counter() - start
        _benchmarked[k] = min(timings, key=timings.get)
    algo = conv_algorithm(x.shape, w.shape, stride, padding, x.dtype, pass_)
    last_conv_algorithms[k] = algo
    return algo
