"""Compile every kernel up front: `warmup`, and what the compile cache holds."""

from __future__ import annotations

import sys
import time

import numba
import numpy as np

from fastconv.backends.numba_backend import general, norm, pool, select, unfold
from fastconv.backends.numba_backend.kernels import direct as _conv
from fastconv.backends.numba_backend.kernels import gemm as _gemm
from fastconv.backends.numba_backend.kernels import im2col as _cols
from fastconv.backends.numba_backend.kernels import norm as _norm
from fastconv.backends.numba_backend.kernels import pool as _pool
from fastconv.backends.numba_backend.kernels import depthwise as _depthwise
from fastconv.backends.numba_backend.kernels import grouped as _grouped
from fastconv.backends.numba_backend.kernels import phases as _phases
from fastconv.backends.numba_backend.kernels import unfold_dilated as _unfold_dilated

KERNEL_MODULES = (_conv, _gemm, _cols, _pool, _norm, _depthwise, _grouped, _unfold_dilated, _phases)

# Kernel groups for `warmup`: one per convolution algorithm, then the rest; "direct"
# (the two fused direct-convolution kernels) is ~45 % of the compile time, so it is
# what a second process takes over.
_WARMUP_GROUPS = tuple(select.ALGORITHMS) + ("other", "general")


def _warm(dtype, group: str) -> None:
    """Run every kernel of ``group`` once on tiny ``dtype`` inputs (all code paths)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    w = rng.standard_normal((3, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    if group == "general":            # dilated, grouped, depthwise, transposed
        general.warm(dtype)
        return
    if group in select.ALGORITHMS:
        algorithm = select.ALGORITHMS[group]
        if not algorithm.supports(x.shape, w.shape, (1, 1), (1, 1)):
            return
        y = algorithm.forward(x, w, b, (1, 1), (1, 1), True)
        algorithm.backward(np.ones_like(y), x, w, y, (1, 1), (1, 1), True)
        return
    cols = unfold.im2col(x, (2, 2), (1, 1), (0, 0))
    unfold.col2im(cols, (6, 5), (2, 2), (1, 1), (0, 0))
    pool.avg_pool2d_backward(pool.avg_pool2d(x, (2, 2), (2, 2), (0, 0)), x.shape, (2, 2), (2, 2), (0, 0))
    y, idx = pool.max_pool2d(x, (2, 2), (2, 2), (0, 0))
    pool.max_pool2d_backward(y, idx, x.shape, (2, 2), (2, 2), (0, 0))
    pool.softmax_cross_entropy(x.reshape(2, -1), np.full((2, 90), 1 / 90, dtype=dtype))
    y, mean, var = norm.batch_norm(x, b, b, 1e-5)
    norm.batch_norm_backward(y, x, mean, var, b, 1e-5)


def direct_ready(dtype_name: str) -> bool:
    """Whether the direct-convolution kernels for ``dtype_name`` are compiled in this
    process or indexed in numba's on-disk cache (then loading them takes ~0.1 s and
    a helper process would only cost its start-up).  Reads numba's cache index
    through internals; if they change, the answer is False and `warmup` merely
    starts a helper it did not need."""
    kernels = (_conv.conv2d_direct_forward, _conv.conv2d_direct_backward)
    try:
        return all(
            any(str(sig[0].dtype) == dtype_name for sig in kernel.signatures)
            or any(dtype_name in str(key[0]) for key in kernel._cache._cache_file._load_index())
            for kernel in kernels)
    except Exception:  # noqa: BLE001 - numba internals moved: fall back to "not ready"
        return False


def warm_items(items) -> None:
    for item in items:
        dtype, group = item.split(":")
        _warm(dtype, group)


def warmup(dtypes=(np.float32,), jobs: int = 1) -> float:
    """Compile (or load from numba's cache) every kernel for ``dtypes``; returns seconds.

    Runs each kernel once on tiny inputs -- both convolution algorithms, forward and
    backward, with and without ReLU/mask -- so that no later call pays compilation.
    With ``jobs=2`` a helper process compiles the direct-convolution kernels into
    numba's cache while this one compiles the rest, then this process loads them:
    about half the cold wall time on two idle cores (each kernel is compiled by one
    process only, so the two never race on a cache index).
    """
    start = time.perf_counter()
    items = [f"{np.dtype(d).name}:{group}" for d in dtypes for group in _WARMUP_GROUPS]
    offloaded = [item for item in items
                 if jobs > 1 and item.endswith(":direct") and not direct_ready(item.split(":")[0])]
    helper = None
    if offloaded:
        import subprocess

        code = ("import sys; from fastconv.backends.numba_backend import warmup; "
                "warmup.warm_items(sys.argv[1:])")
        helper = subprocess.Popen([sys.executable, "-c", code, *offloaded],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        warm_items([item for item in items if item not in offloaded])
    finally:
        if helper is not None:
            helper.wait()
    warm_items(offloaded)          # cache hits now (or compiled here if the helper failed)
    return time.perf_counter() - start


def compiled_signatures() -> dict:
    """``kernel name -> number of compiled specialisations`` (should be <= 2 each)."""
    kernels = {}
    for module in KERNEL_MODULES:
        for attr in dir(module):
            obj = getattr(module, attr)
            if isinstance(obj, numba.core.registry.CPUDispatcher) and not attr.startswith("_"):
                kernels[attr] = len(obj.signatures)
    return kernels
