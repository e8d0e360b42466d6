"""The numba backend: JIT-compiled kernels behind the `fastconv.functional` interface.

Kernels live in ``_numba_conv`` (direct convolution), ``_numba_gemm`` (im2col +
BLAS convolution), ``_numba_im2col`` (im2col, col2im), ``_numba_pool`` (pooling,
softmax cross-entropy) and ``_numba_norm`` (batch norm).  They are ``@njit(cache=True)``: compiled on first use, once
per dtype (float32, float64) -- every shape and hyper-parameter is passed as a plain
int, and read-only or unaligned inputs are copied, so nothing else ever triggers a
recompile -- and loaded from numba's on-disk cache by later processes.  `warmup`
compiles everything up front (~25 s cold for float32, ~0.4 s from the cache).

Convolution has two algorithms, chosen per (shapes, stride, padding, dtype, pass):

* ``"direct"``: fused loops, no column buffer, over a group of images' padded
  planes at a time; bias, ReLU (and the fused 2x2 pooling) applied on write-out; the
  backward computes grad_x, grad_w and grad_b in one pass over each group with
  per-thread partial sums for grad_w/grad_b.  Wins for small channel counts
  (report 000).
* ``"gemm"``: each thread unfolds groups of images into its own L2-sized column
  buffer and calls single-threaded BLAS on it (see ``_numba_gemm`` for why not one
  whole-batch matmul); backward ``grad_w += G @ cols.T``, ``grad_cols = W.T @ G``,
  col2im.  Wins once channel counts make the GEMM big (report 003).

The choice is `conv_algorithm` (a heuristic fitted to measurements, see
`_heuristic`); ``FASTCONV_CONV_ALGO=direct|gemm|auto|benchmark`` (read at every
call) or `set_conv_algorithm` overrides it; ``benchmark`` times both candidates once
per key, like cuDNN's benchmark mode.  The algorithms that ran are recorded in
`last_conv_algorithms`.

Fused ops beyond the common kernel set: `conv2d_relu`, `conv2d_relu_backward`
(with ``input_grad=False`` to skip grad_x), `conv2d_backward_weights`, and
`conv2d_relu_avgpool2` / `conv2d_relu_avgpool2_backward` (report 000's block: conv,
bias, ReLU and 2x2 average pooling in one pass each way when the direct algorithm
runs).

Threads: ``FASTCONV_NUM_THREADS`` (default: all cores, numba's
``NUMBA_NUM_THREADS``) is applied at import; `set_num_threads` / `get_num_threads`
change / read it.  Kernels too small to gain from a second thread run on the calling
thread alone.  Unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is set, importing
this module sets ``GOMP_SPINCOUNT=10000`` (see below).

Arguments arrive validated and normalised by `fastconv.functional`; the kernels do
no bounds checking, so call them only through it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
import warnings

# libgomp's workers (numba's "omp" threading layer) spin ~300,000 iterations after
# every parallel kernel before sleeping.  On a loaded machine that turned 0.2 ms
# kernels into 8-30 ms ones (spinning workers holding the cores others need);
# OMP_WAIT_POLICY=PASSIVE avoids that but pays a futex wake-up per launch (report
# 000 training step 2.95 ms vs 2.63 ms).  A bounded spin of 10,000 iterations
# (~0.1 ms) measured 2.63 ms idle and held up under load like PASSIVE.  Only a
# default: explicit OMP_WAIT_POLICY / GOMP_SPINCOUNT settings win.  Must be set
# before numba starts its thread pool (first parallel kernel call).
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"

import numba  # noqa: E402
import numpy as np  # noqa: E402

from fastconv.backends import _numba_conv as _conv
from fastconv.backends import _numba_gemm as _gemm
from fastconv.backends import _numba_norm as _norm
from fastconv.backends import _numba_im2col as _cols
from fastconv.backends import _numba_pool as _pool

name = "numba"

ALGORITHMS = ("direct", "gemm")
# NumPy's BLAS threads would spin against this backend's (see `blas_thread_limit`).
blas_threads = 1
_MODES = ("auto", "benchmark") + ALGORITHMS

# --------------------------------------------------------------------------- threads
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
        warnings.warn(f"{n} threads requested, numba's pool has {limit}; using {limit}",
                      RuntimeWarning, stacklevel=2)
        n = limit
    previous = _num_threads
    _num_threads = int(n)
    numba.set_num_threads(_num_threads)
    return previous


def _threads_from_env() -> None:
    value = os.environ.get("FASTCONV_NUM_THREADS", "").strip()
    if not value:
        return
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"FASTCONV_NUM_THREADS must be a positive int, got {value!r}") from None
    set_num_threads(count)


def _launch(kernel, *args):
    """Call a parallel kernel whose last argument is its number of chunks.

    A single chunk runs with numba's thread count set to 1 for the call, so the
    OpenMP team is just the calling thread: otherwise every launch wakes (and waits
    at the closing barrier for) the idle workers, ~10-50 us per call here, and far
    more on a loaded machine where a worker may not get a core for a time slice.
    """
    if args[-1] == 1 and _num_threads > 1:
        numba.set_num_threads(1)
        try:
            return kernel(*args)
        finally:
            numba.set_num_threads(_num_threads)
    return kernel(*args)


def _chunks(items: int, work: float, min_work: float = 2e5) -> int:
    """Parallel chunks for a kernel: one per thread, but no more than the items and
    none smaller than ``min_work`` flops-ish (a parallel launch costs a few us)."""
    by_work = int(work // min_work)
    return max(1, min(_num_threads, items, by_work))


# --------------------------------------------------------------------------- arrays
def _kernel_array(a: np.ndarray) -> np.ndarray:
    """C-contiguous, aligned and writable: the one array type each kernel is compiled
    for (a read-only input would otherwise trigger a second compilation)."""
    if a.flags.c_contiguous and a.flags.aligned and a.flags.writeable:
        return a
    return np.array(a, order="C", copy=True)


_dummy_cache: dict = {}


def _dummy(dtype, ndim: int) -> np.ndarray:
    """Placeholder for an unused optional array argument (keeps one specialisation)."""
    key = (np.dtype(dtype), ndim)
    if key not in _dummy_cache:
        _dummy_cache[key] = np.zeros((1,) * ndim, dtype=dtype)
    return _dummy_cache[key]


_local = threading.local()


def _workspace(slot: str, size: int, dtype) -> np.ndarray:
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


def clear_workspace() -> None:
    """Free this thread's cached GEMM buffers."""
    _local.spaces = {}


# --------------------------------------------------------------------------- im2col
def _out_hw(height, width, kernel_size, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1


def im2col(x, kernel_size, stride, padding):
    x = _kernel_array(x)
    n, c, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    out_h, out_w = _out_hw(height, width, kernel_size, stride, padding)
    rows, windows = c * kh * kw, out_h * out_w
    cols = np.empty((n, rows, windows), dtype=x.dtype)
    _launch(_cols.im2col_into, x, kh, kw, sh, sw, ph, pw, out_h, out_w, cols.reshape(-1),
            windows, rows * windows, _chunks(n * c, cols.size))
    return cols


def col2im(cols, output_size, kernel_size, stride, padding):
    cols = _kernel_array(cols)
    n, rows, windows = cols.shape
    (height, width), (kh, kw), (sh, sw), (ph, pw) = output_size, kernel_size, stride, padding
    c = rows // (kh * kw)
    out_h, out_w = _out_hw(height, width, kernel_size, stride, padding)
    grad_x = np.empty((n, c, height, width), dtype=cols.dtype)
    _launch(_cols.col2im_from, cols.reshape(-1), windows, rows * windows, kh, kw, sh, sw, ph, pw,
            out_h, out_w, grad_x, _chunks(n * c, cols.size))
    return grad_x


# --------------------------------------------------------------------------- algorithm choice
_forced_algorithm: str | None = None
last_conv_algorithms: dict = {}
"""``(pass, x_shape, w_shape, stride, padding, dtype) -> "direct" | "gemm"`` for every
convolution run so far (the latest choice per key), for benchmark tables."""
_benchmarked: dict = {}


def set_conv_algorithm(algorithm: str | None) -> None:
    """Force ``"direct"`` or ``"gemm"``, pick per shape (``"auto"``), time both once per
    key (``"benchmark"``), or ``None`` to follow ``FASTCONV_CONV_ALGO`` again."""
    global _forced_algorithm
    if algorithm is not None:
        algorithm = _check_mode(algorithm, "set_conv_algorithm")
    _forced_algorithm = algorithm


def get_conv_algorithm_mode() -> str:
    """The selection mode in force: setter, else ``FASTCONV_CONV_ALGO``, else ``auto``."""
    if _forced_algorithm is not None:
        return _forced_algorithm
    env = os.environ.get("FASTCONV_CONV_ALGO", "").strip().lower()
    return _check_mode(env, "FASTCONV_CONV_ALGO") if env else "auto"


def _check_mode(mode, source) -> str:
    if not isinstance(mode, str) or mode.strip().lower() not in _MODES:
        raise ValueError(f"{source}: unknown convolution algorithm {mode!r}; "
                         f"valid: {', '.join(_MODES)}")
    return mode.strip().lower()


def _key(pass_, x_shape, w_shape, stride, padding, dtype):
    return (pass_, tuple(int(v) for v in x_shape), tuple(int(v) for v in w_shape),
            tuple(stride), tuple(padding), np.dtype(dtype).name)


def _heuristic(x_shape, w_shape, stride, padding, dtype, pass_) -> str:
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

    The dtype and the pass do not change the choice on the measured shapes.
    """
    c_out, c_in, kh, kw = w_shape
    if tuple(stride) != (1, 1):
        return "gemm"
    out_w = (x_shape[3] + 2 * padding[1] - kw) // stride[1] + 1
    if c_out < 16 or c_in * kh * kw < 64:
        return "direct"
    if c_out < 32 and out_w >= 24:
        return "direct"
    return "gemm"


def _gemm_available() -> bool:
    """numba's ``np.dot`` needs SciPy's BLAS; without SciPy only ``direct`` runs."""
    global _HAS_SCIPY
    if _HAS_SCIPY is None:
        _HAS_SCIPY = importlib.util.find_spec("scipy") is not None
    return _HAS_SCIPY


_HAS_SCIPY = None


def conv_algorithm(x_shape, w_shape, stride=(1, 1), padding=(0, 0), dtype=np.float32,
                   pass_: str = "forward") -> str:
    """Which algorithm (``"direct"`` or ``"gemm"``) a convolution with these arguments
    runs now, under the current mode (forced, heuristic or benchmarked).  Always
    ``"direct"`` when SciPy (whose BLAS the GEMM path calls) is not installed."""
    if pass_ not in ("forward", "backward"):
        raise ValueError(f"pass_ must be 'forward' or 'backward', got {pass_!r}")
    stride = _as_pair(stride)
    padding = _as_pair(padding)
    mode = get_conv_algorithm_mode()
    if not _gemm_available():
        return "direct"
    if mode in ALGORITHMS:
        return mode
    if mode == "benchmark":
        key = _key(pass_, x_shape, w_shape, stride, padding, dtype)
        if key in _benchmarked:
            return _benchmarked[key]
    return _heuristic(tuple(x_shape), tuple(w_shape), stride, padding, dtype, pass_)


def _as_pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _choose(pass_, x, w, stride, padding, run) -> str:
    """Pick (and record) the algorithm for this call; ``run(algo)`` executes one.

    In ``benchmark`` mode the first call for a key runs both algorithms twice (the
    first run compiles and faults in buffers) and keeps the faster.
    """
    key = _key(pass_, x.shape, w.shape, stride, padding, x.dtype)
    if get_conv_algorithm_mode() == "benchmark" and key not in _benchmarked and _gemm_available():
        timings = {}
        for algo in ALGORITHMS:
            run(algo)
            start = time.perf_counter()
            run(algo)
            timings[algo] = time.perf_counter() - start
        _benchmarked[key] = min(timings, key=timings.get)
    algo = conv_algorithm(x.shape, w.shape, stride, padding, x.dtype, pass_)
    last_conv_algorithms[key] = algo
    return algo


# --------------------------------------------------------------------------- conv: direct
# Images whose padded planes the direct kernels stack into one flat loop: enough to
# amortise each tap loop's set-up, few enough that a thread's buffers stay in L2.
_DIRECT_GROUP_BYTES = 1 << 17


def _direct_group(images: int, per_image_planes: int, plane: int, itemsize: int) -> int:
    """Group size for ``images`` images, as even as the L2 budget allows."""
    largest = max(1, min(images, _DIRECT_GROUP_BYTES // (per_image_planes * plane * itemsize)))
    groups = -(-images // largest)
    return -(-images // groups)


def _pooled_shape(y_shape) -> tuple:
    """Shape of a 2x2, stride 2 (floor) pooling of ``y_shape``."""
    return (*y_shape[:2], y_shape[2] // 2, y_shape[3] // 2)


def _direct_forward(x, w, b, stride, padding, relu, pool=False):
    """``y``, or ``(pooled, y)`` with ``pool`` (2x2 average pooling fused in)."""
    n, _, height, width = x.shape
    c_out, c_in, kh, kw = w.shape
    out_h, out_w = _out_hw(height, width, (kh, kw), stride, padding)
    y = np.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    pooled = np.empty(_pooled_shape(y.shape), dtype=x.dtype) if pool else _dummy(x.dtype, 4)
    work = 2.0 * y.size * c_in * kh * kw
    plane = (height + 2 * padding[0]) * (width + 2 * padding[1])
    pairs = (c_out + 1) // 2
    # Split the batch over the threads only when the channel pairs alone cannot.
    share = n if pairs >= _num_threads else -(-n // _num_threads)
    group = _direct_group(share, c_in + 2, plane, x.itemsize)
    chunks = _chunks(-(-n // group) * pairs, work)
    _launch(_conv.conv2d_direct_forward, x, w, b, stride[0], stride[1], padding[0], padding[1],
            bool(relu), group, y, bool(pool), pooled, chunks)
    return (pooled, y) if pool else y


def _direct_backward(grad_y, x, w, mask, stride, padding, need_grad_x, pooled=False):
    """With ``pooled``, ``grad_y`` is the gradient of the 2x2-pooled ReLU output ``mask``."""
    n, c_in, height, width = x.shape
    c_out = w.shape[0]
    work = 4.0 * (mask.size if pooled else grad_y.size) * w[0].size
    chunks = _chunks(n, work)
    plane = (height + 2 * padding[0]) * (width + 2 * padding[1])
    group = _direct_group(-(-n // chunks), c_in + c_out + 2, plane, x.itemsize)
    grad_w_parts = np.zeros((chunks,) + w.shape, dtype=x.dtype)
    grad_b_parts = np.zeros((chunks, c_out), dtype=x.dtype)
    grad_x = np.empty_like(x) if need_grad_x else _dummy(x.dtype, 4)
    use_mask = mask is not None
    _launch(_conv.conv2d_direct_backward, grad_y, x, w, mask if use_mask else _dummy(x.dtype, 4),
            use_mask, bool(pooled), stride[0], stride[1], padding[0], padding[1],
            bool(need_grad_x), group, grad_x, grad_w_parts, grad_b_parts, chunks)
    grad_w = grad_w_parts[0] if chunks == 1 else grad_w_parts.sum(axis=0)
    grad_b = grad_b_parts[0] if chunks == 1 else grad_b_parts.sum(axis=0)
    return (grad_x if need_grad_x else None), grad_w, grad_b


# --------------------------------------------------------------------------- conv: gemm
# Column buffer per thread and group of images: small enough to stay in L2 (2 MB per
# core here), large enough that the GEMM's short dimension (group * L) is not tiny.
_GEMM_GROUP_BYTES = 1 << 20


class _SingleThreadedBlas:
    """Context manager: the BLAS that numba's ``np.dot`` calls (SciPy's) runs on one
    thread while the numba threads each call it, then gets its thread count back.

    Uses threadpoolctl; without it ``available`` is False and the GEMM path runs on
    one numba thread calling the (multi-threaded) BLAS instead.
    """

    def __init__(self):
        self._libs = None

    def _find(self):
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (what numba's np.dot calls)
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return []
        blas = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
        scipy_own = [lib for lib in blas if "scipy" in os.path.basename(os.path.dirname(lib.filepath))]
        return scipy_own or blas

    @property
    def available(self) -> bool:
        if self._libs is None:
            self._libs = self._find()
        return bool(self._libs)

    def __enter__(self):
        self._saved = []
        if self.available:
            for lib in self._libs:
                count = lib.get_num_threads()
                if count != 1:
                    lib.set_num_threads(1)
                    self._saved.append((lib, count))
        return self

    def __exit__(self, *exc):
        for lib, count in self._saved:
            lib.set_num_threads(count)
        return False


_single_threaded_blas = _SingleThreadedBlas()


def _gemm_plan(n, depth, c_out, windows, itemsize):
    """(threads, images per group) for the per-thread GEMM."""
    chunks = _chunks(n, 2.0 * n * c_out * depth * windows, 1e6)
    if not _single_threaded_blas.available:
        chunks = 1
    per_thread = -(-n // chunks)
    group = max(1, min(per_thread, _GEMM_GROUP_BYTES // max(1, depth * windows * itemsize)))
    return chunks, group


def _gemm_forward(x, w, b, stride, padding, relu):
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    out_h, out_w = _out_hw(height, width, (kh, kw), stride, padding)
    windows, depth = out_h * out_w, c_in * kh * kw
    y = np.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    chunks, group = _gemm_plan(n, depth, c_out, windows, x.itemsize)
    span = group * windows
    ws_cols = _workspace("cols", chunks * depth * span, x.dtype).reshape(chunks, depth * span)
    ws_rows = _workspace("rows", chunks * c_out * span, x.dtype).reshape(chunks, c_out * span)
    with _single_threaded_blas:
        _launch(_gemm.conv2d_gemm_forward, x, w.reshape(c_out, depth), b, kh, kw, sh, sw, ph, pw,
                out_h, out_w, bool(relu), group,
                y.reshape(n, c_out, windows), ws_cols, ws_rows, chunks)
    return y


def _gemm_backward(grad_y, x, w, mask, stride, padding, need_grad_x):
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    out_h, out_w = grad_y.shape[2:]
    windows, depth = out_h * out_w, c_in * kh * kw
    chunks, group = _gemm_plan(n, depth, c_out, windows, x.itemsize)
    span = group * windows
    ws_cols = _workspace("cols", chunks * depth * span, x.dtype).reshape(chunks, depth * span)
    ws_rows = _workspace("rows", chunks * c_out * span, x.dtype).reshape(chunks, c_out * span)
    ws_w = _workspace("wpart", chunks * depth * c_out, x.dtype).reshape(chunks, depth, c_out)
    grad_w_parts = np.zeros((chunks, depth, c_out), dtype=x.dtype)   # transposed grad_w
    grad_b_parts = np.zeros((chunks, c_out), dtype=x.dtype)
    grad_x = np.empty_like(x) if need_grad_x else _dummy(x.dtype, 4)
    use_mask = mask is not None
    mask3 = mask.reshape(n, c_out, windows) if use_mask else _dummy(x.dtype, 3)
    w2 = w.reshape(c_out, depth)
    with _single_threaded_blas:
        _launch(_gemm.conv2d_gemm_backward, grad_y.reshape(n, c_out, windows), x, w2,
                np.ascontiguousarray(w2.T), mask3, use_mask,
                kh, kw, sh, sw, ph, pw, out_h, out_w, group,
                bool(need_grad_x), grad_x, grad_w_parts, grad_b_parts,
                ws_cols, ws_rows, ws_w, chunks)
    grad_w = grad_w_parts[0] if chunks == 1 else grad_w_parts.sum(axis=0)
    grad_b = grad_b_parts[0] if chunks == 1 else grad_b_parts.sum(axis=0)
    return (grad_x if need_grad_x else None), np.ascontiguousarray(grad_w.T).reshape(w.shape), grad_b


# --------------------------------------------------------------------------- conv: entry points
_POOL2 = ((2, 2), (2, 2), (0, 0))   # kernel, stride, padding of the fused pooling


def _forward(x, w, b, stride, padding, relu, pool=False):
    x = _kernel_array(x)
    w = _kernel_array(w)
    b = np.zeros(w.shape[0], dtype=x.dtype) if b is None else _kernel_array(b)

    def run(algo):
        if algo == "direct":
            return _direct_forward(x, w, b, stride, padding, relu, pool)
        y = _gemm_forward(x, w, b, stride, padding, relu)
        return (avg_pool2d(y, *_POOL2), y) if pool else y

    algo = _choose("forward", x, w, stride, padding, run)
    return run(algo)


def _backward(grad_y, x, w, mask, stride, padding, need_grad_x, pooled=False):
    grad_y = _kernel_array(grad_y)
    x = _kernel_array(x)
    w = _kernel_array(w)
    mask = None if mask is None else _kernel_array(mask)

    def run(algo):
        if algo == "direct":
            return _direct_backward(grad_y, x, w, mask, stride, padding, need_grad_x, pooled)
        grad_conv = avg_pool2d_backward(grad_y, mask.shape, *_POOL2) if pooled else grad_y
        return _gemm_backward(grad_conv, x, w, mask, stride, padding, need_grad_x)

    algo = _choose("backward", x, w, stride, padding, run)
    return run(algo)


def conv2d(x, w, b, stride, padding):
    return _forward(x, w, b, stride, padding, relu=False)


def conv2d_backward(grad_y, x, w, stride, padding):
    return _backward(grad_y, x, w, None, stride, padding, need_grad_x=True)


def conv2d_relu(x, w, b, stride, padding):
    return _forward(x, w, b, stride, padding, relu=True)


def conv2d_relu_backward(grad_y, y, x, w, stride, padding, input_grad):
    return _backward(grad_y, x, w, y, stride, padding, need_grad_x=input_grad)


def conv2d_backward_weights(grad_y, x, w, stride, padding):
    _, grad_w, grad_b = _backward(grad_y, x, w, None, stride, padding, need_grad_x=False)
    return grad_w, grad_b


def conv2d_relu_avgpool2(x, w, b, stride, padding):
    return _forward(x, w, b, stride, padding, relu=True, pool=True)


def conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, stride, padding, input_grad):
    return _backward(grad_pooled, x, w, y, stride, padding, need_grad_x=input_grad, pooled=True)


# --------------------------------------------------------------------------- batch norm
def batch_norm(x, weight, bias, eps):
    x3 = _kernel_array(x).reshape(x.shape[0], x.shape[1], -1)
    c = x3.shape[1]
    y3 = np.empty_like(x3)
    mean = np.empty(c, dtype=x.dtype)
    var = np.empty(c, dtype=x.dtype)
    _launch(_norm.batch_norm_forward, x3, _kernel_array(weight), _kernel_array(bias), eps,
            y3, mean, var, _chunks(c, 4.0 * x3.size, 1e5))
    return y3.reshape(x.shape), mean, var


def batch_norm_backward(grad_y, x, mean, var, weight, eps):
    x3 = _kernel_array(x).reshape(x.shape[0], x.shape[1], -1)
    c = x3.shape[1]
    grad3 = _kernel_array(grad_y).reshape(x3.shape)
    grad_x3 = np.empty_like(x3)
    grad_weight = np.empty(c, dtype=x.dtype)
    grad_bias = np.empty(c, dtype=x.dtype)
    _launch(_norm.batch_norm_backward, grad3, x3, _kernel_array(mean), _kernel_array(var),
            _kernel_array(weight), eps, grad_x3, grad_weight, grad_bias, _chunks(c, 4.0 * x3.size, 1e5))
    return grad_x3.reshape(x.shape), grad_weight, grad_bias


# --------------------------------------------------------------------------- pooling
def avg_pool2d(x, kernel_size, stride, padding):
    x = _kernel_array(x)
    n, c, height, width = x.shape
    out_h, out_w = _out_hw(height, width, kernel_size, stride, padding)
    y = np.empty((n, c, out_h, out_w), dtype=x.dtype)
    _launch(_pool.avg_pool2d_forward, x, *kernel_size, *stride, *padding, y,
            _chunks(n * c, x.size, 1e5))
    return y


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding):
    grad_y = _kernel_array(grad_y)
    n, c = x_shape[:2]
    grad_x = np.empty(tuple(x_shape), dtype=grad_y.dtype)
    _launch(_pool.avg_pool2d_backward, grad_y, *kernel_size, *stride, *padding, grad_x,
            _chunks(n * c, grad_x.size, 1e5))
    return grad_x


def max_pool2d(x, kernel_size, stride, padding):
    x = _kernel_array(x)
    n, c, height, width = x.shape
    out_h, out_w = _out_hw(height, width, kernel_size, stride, padding)
    y = np.empty((n, c, out_h, out_w), dtype=x.dtype)
    indices = np.empty((n, c, out_h, out_w), dtype=np.int64)
    _launch(_pool.max_pool2d_forward, x, *kernel_size, *stride, *padding, y, indices,
            _chunks(n * c, x.size, 1e5))
    return y, indices


def max_pool2d_backward(grad_y, indices, x_shape, kernel_size, stride, padding):
    n, c, height, width = x_shape
    grad_y = _kernel_array(grad_y)
    indices = _kernel_array(np.asarray(indices, dtype=np.int64))
    grad_x = np.empty((n, c, height * width), dtype=grad_y.dtype)
    _launch(_pool.max_pool2d_backward, grad_y.reshape(n, c, -1), indices.reshape(n, c, -1), grad_x,
            _chunks(n * c, grad_x.size, 1e5))
    return grad_x.reshape(n, c, height, width)


# --------------------------------------------------------------------------- loss
def softmax_cross_entropy(logits, target):
    logits = _kernel_array(logits)
    target = _kernel_array(target)
    grad = np.empty_like(logits)
    loss = _pool.softmax_cross_entropy(logits, target, grad)
    return logits.dtype.type(loss), grad


# --------------------------------------------------------------------------- compile cost
# Kernel groups for `warmup`; "direct" (the two fused direct-convolution kernels) is
# ~45 % of the compile time, so it is what a second process takes over.
_WARMUP_GROUPS = ("direct", "gemm", "other")


def _warm(dtype, group: str) -> None:
    """Run every kernel of ``group`` once on tiny ``dtype`` inputs (all code paths)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    w = rng.standard_normal((3, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    if group in ALGORITHMS:
        if group == "gemm" and not _gemm_available():
            return
        fwd = _direct_forward if group == "direct" else _gemm_forward
        bwd = _direct_backward if group == "direct" else _gemm_backward
        y = fwd(x, w, b, (1, 1), (1, 1), True)
        bwd(np.ones_like(y), x, w, y, (1, 1), (1, 1), True)
        return
    cols = im2col(x, (2, 2), (1, 1), (0, 0))
    col2im(cols, (6, 5), (2, 2), (1, 1), (0, 0))
    avg_pool2d_backward(avg_pool2d(x, (2, 2), (2, 2), (0, 0)), x.shape, (2, 2), (2, 2), (0, 0))
    y, idx = max_pool2d(x, (2, 2), (2, 2), (0, 0))
    max_pool2d_backward(y, idx, x.shape, (2, 2), (2, 2), (0, 0))
    softmax_cross_entropy(x.reshape(2, -1), np.full((2, 90), 1 / 90, dtype=dtype))
    y, mean, var = batch_norm(x, b, b, 1e-5)
    batch_norm_backward(y, x, mean, var, b, 1e-5)


def _direct_ready(dtype_name: str) -> bool:
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


def _warm_items(items) -> None:
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
                 if jobs > 1 and item.endswith(":direct") and not _direct_ready(item.split(":")[0])]
    helper = None
    if offloaded:
        import subprocess

        code = ("import sys; from fastconv.backends import numba_backend as nb; "
                "nb._warm_items(sys.argv[1:])")
        helper = subprocess.Popen([sys.executable, "-c", code, *offloaded],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _warm_items([item for item in items if item not in offloaded])
    finally:
        if helper is not None:
            helper.wait()
    _warm_items(offloaded)          # cache hits now (or compiled here if the helper failed)
    return time.perf_counter() - start


def compiled_signatures() -> dict:
    """``kernel name -> number of compiled specialisations`` (should be <= 2 each)."""
    kernels = {}
    for module in (_conv, _gemm, _cols, _pool, _norm):
        for attr in dir(module):
            obj = getattr(module, attr)
            if isinstance(obj, numba.core.registry.CPUDispatcher) and not attr.startswith("_"):
                kernels[attr] = len(obj.signatures)
    return kernels


_threads_from_env()

BACKEND = sys.modules[__name__]
