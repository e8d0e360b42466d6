"""Threads, parallel launches, kernel array types and per-thread workspaces.

Threads: ``FASTCONV_NUM_THREADS`` (default: all cores, numba's ``NUMBA_NUM_THREADS``)
is applied at import; `set_num_threads` / `get_num_threads` change / read it.
Kernels too small to gain from a second thread run on the calling thread alone.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings

import numba
import numpy as np
from numba.np.ufunc import parallel as _numba_parallel

from fastconv.system import env
from fastconv.backends.numba_backend import blas

_num_threads = numba.config.NUMBA_NUM_THREADS


def get_num_threads() -> int:
    """Threads the kernels use (at most numba's ``NUMBA_NUM_THREADS``)."""
    return _num_threads


def set_num_threads(n: int) -> int:
    """Use ``n`` threads in the numba kernels; returns the previous count.

    ``n`` is clipped to numba's ``NUMBA_NUM_THREADS`` (the size of its thread pool,
    fixed at first use).  The GEMM path calls BLAS single-threaded from each of these
    threads, so NumPy's own BLAS thread count is left alone.
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"number of threads must be an int, got {n!r}")
    if n < 1:
        raise ValueError(f"number of threads must be >= 1, got {n}")
    limit = numba.config.NUMBA_NUM_THREADS
    if n > limit:
        warnings.warn(f"{n} threads requested (FASTCONV_NUM_THREADS or set_num_threads), but numba's pool "
                      f"has {limit} (NUMBA_NUM_THREADS, default: the cores); using {limit}",
                      RuntimeWarning, stacklevel=2)
        n = limit
    previous = _num_threads
    _num_threads = int(n)
    numba.set_num_threads(_num_threads)
    return previous


def threads_from_env() -> None:
    """Apply ``FASTCONV_NUM_THREADS`` (a bad value: `fastconv.system.env.EnvironmentVariableError`)."""
    count = env.num_threads()
    if count is not None:
        set_num_threads(count)


def _set_team(n: int) -> None:
    """numba's thread count for the next kernels, ``n`` already checked (1 ..
    its pool): numba's own setter without its checks once its threading layer runs
    (0.25 us a call against 1 us; a one-chunk launch sets it twice), the public one
    where numba has no such function."""
    global _unchecked_setter
    if _unchecked_setter is not None:
        _unchecked_setter(n)
        return
    unchecked = getattr(_numba_parallel, "_set_num_threads", None)
    if unchecked is None or not getattr(_numba_parallel, "_is_initialized", False):
        numba.set_num_threads(n)        # starts the threading layer, checks n
    else:
        _unchecked_setter = unchecked
        unchecked(n)


_unchecked_setter = None     # numba's setter without checks, once its threading layer runs


def launch(kernel, *args):
    """Call a parallel kernel whose last argument is its number of chunks.

    A single chunk runs with numba's thread count set to 1 for the call, so the
    OpenMP team is just the calling thread: otherwise every launch wakes (and waits
    at the closing barrier for) the idle workers, ~10-50 us per call here, and far
    more on a loaded machine where a worker may not get a core for a time slice.
    """
    if args[-1] == 1 and _num_threads > 1:
        _set_team(1)
        try:
            return kernel(*args)
        finally:
            _set_team(_num_threads)
    return kernel(*args)


class _ThreadLimit:
    def __init__(self, threads: int):
        self.threads = threads

    def __enter__(self):
        global _num_threads
        self.previous = _num_threads
        _num_threads = self.threads
        _set_team(self.threads)

    def __exit__(self, *exc):
        global _num_threads
        _num_threads = self.previous
        _set_team(self.previous)


_NO_LIMIT = contextlib.nullcontext()


def thread_limit(threads):
    """Context manager: the kernels use at most ``threads`` threads inside it (None:
    no limit, and no cost)."""
    if threads is None or threads >= _num_threads:
        return _NO_LIMIT
    return _ThreadLimit(int(threads))


def chunks(items: int, work: float, min_work: float = 2e5) -> int:
    """Parallel chunks for a kernel: one per thread, but no more than the items and
    none smaller than ``min_work`` flops-ish (a parallel launch costs a few us)."""
    by_work = int(work // min_work)
    return max(1, min(_num_threads, items, by_work))


# --------------------------------------------------------------------------- BLAS
class _SingleThreadedBlas:
    """Context manager: SciPy's OpenBLAS (the kernels' GEMMs where neither MKL nor
    fastconv's own OpenBLAS is bound, see `blas`) runs on one thread while the numba
    threads each call it, then gets its thread count back.

    Uses threadpoolctl; without it ``available`` is False and the GEMM path runs on
    one numba thread calling the (multi-threaded) BLAS instead.  With MKL (sequential)
    or fastconv's OpenBLAS (loaded on one thread) there is nothing to pin and entering
    costs nothing.
    """

    def __init__(self):
        self._libs = None

    def _find(self):
        if blas.runs_on_caller_thread():
            return []
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (what numba's np.dot calls)
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return []
        libs = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
        scipy_own = [lib for lib in libs if "scipy" in os.path.basename(os.path.dirname(lib.filepath))]
        return scipy_own or libs

    @property
    def available(self) -> bool:
        if self._libs is None:
            self._libs = self._find()
        return bool(self._libs) or blas.runs_on_caller_thread()

    def __enter__(self):
        self._saved = []
        blas.keep_on_caller_thread()
        if self.available:
            for lib in self._libs:          # empty with MKL or fastconv's OpenBLAS
                count = lib.get_num_threads()
                if count != 1:
                    lib.set_num_threads(1)
                    self._saved.append((lib, count))
        return self

    def __exit__(self, *exc):
        for lib, count in self._saved:
            lib.set_num_threads(count)
        return False


single_threaded_blas = _SingleThreadedBlas()


# --------------------------------------------------------------------------- arrays
def kernel_array(a: np.ndarray) -> np.ndarray:
    """C-contiguous, aligned and writable: the one array type each kernel is compiled
    for (a read-only input would otherwise trigger a second compilation)."""
    if a.flags.c_contiguous and a.flags.aligned and a.flags.writeable:
        return a
    return np.array(a, order="C", copy=True)


_dummy_cache: dict = {}


def dummy(dtype, ndim: int) -> np.ndarray:
    """Placeholder for an unused optional array argument (keeps one specialisation)."""
    array = _dummy_cache.get((dtype, ndim))
    if array is None:
        array = _dummy_cache[(dtype, ndim)] = np.zeros((1,) * ndim, dtype=dtype)
    return array


_local = threading.local()


def workspace(slot: str, size: int, dtype) -> np.ndarray:
    """A flat per-thread scratch buffer, reused across calls (the GEMM path's
    per-thread column and row buffers, a few MB): a fresh ``np.empty`` above glibc's
    mmap threshold would page-fault all of it in again on every call."""
    spaces = getattr(_local, "spaces", None)
    if spaces is None:
        spaces = _local.spaces = {}
    key = (slot, np.dtype(dtype))
    buf = spaces.get(key)
    if buf is None or buf.size < size:
        buf = spaces[key] = np.empty(size, dtype=dtype)
    return buf[:size]


def parts_workspace(slot: str, shape, dtype, zero: bool = False) -> np.ndarray:
    """A `workspace` of ``shape`` for the threads' partial results (a weight
    gradient per thread: twice the weights, 19 MB for a 512->512 3x3 layer, whose
    fresh pages cost 10-15 % of its backward here), zeroed when ``zero``.  Read it
    out with `summed`: the buffer is reused by the next call."""
    buf = workspace(slot, int(np.prod(shape)), dtype).reshape(shape)
    if zero:
        buf.fill(0)
    return buf


def summed(parts: np.ndarray) -> np.ndarray:
    """The sum of a `parts_workspace` over its first axis, as a new array."""
    return parts[0].copy() if parts.shape[0] == 1 else parts.sum(axis=0)


def clear_workspace() -> None:
    """Free this thread's cached scratch buffers."""
    _local.spaces = {}


def out_hw(height, width, kernel_size, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
