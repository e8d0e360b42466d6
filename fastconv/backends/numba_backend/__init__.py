"""The numba backend: JIT-compiled kernels behind the `fastconv.functional` interface.

Layout (planning in Python, arithmetic in ``kernels/``):

* ``runtime``  -- threads, parallel launches, single-threaded BLAS, per-thread workspaces;
* ``select``   -- which convolution algorithm runs (forced, heuristic, autotuned);
* ``direct``, ``gemm`` -- one module per convolution algorithm (planning and
  workspaces; their loops live in ``kernels/<name>.py``);
* ``conv``     -- the convolution entry points (plain, +ReLU, +ReLU+2x2 avg pool);
* ``general``  -- dilated, grouped and transposed convolution entry points, on
  ``depthwise`` (direct kernels) and ``grouped`` (per-group GEMMs);
* ``unfold``, ``pool``, ``norm``, ``dense``, ``elementwise`` -- im2col/col2im, pooling
  and loss, batch norm, fully connected layers, ReLU / clamp / sums;
* ``warmup``   -- compile what a model needs up front; ``readiness`` (what is compiled),
  ``background`` (helper processes that compile the rest while a run works) and
  ``compile_clock`` (how long compiling takes here).

Kernels are ``@njit(cache=True)``: compiled on first use, once per dtype (float32,
float64) -- every shape and hyper-parameter is passed as a plain int, and read-only
or unaligned inputs are copied, so nothing else ever triggers a recompile -- and
loaded from numba's on-disk cache by later processes.

Arguments arrive validated and normalised by `fastconv.functional`; the kernels do no
bounds checking, so call them only through it.
"""

from __future__ import annotations

import os
import sys

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

from fastconv.backends.numba_backend import runtime as _runtime  # noqa: E402
from fastconv.backends.numba_backend.conv import (  # noqa: E402,F401
    conv2d, conv2d_backward, conv2d_backward_weights, conv2d_relu, conv2d_relu_avgpool2,
    conv2d_relu_avgpool2_backward, conv2d_relu_backward)
from fastconv.backends.numba_backend.dense import linear, linear_backward  # noqa: E402,F401
from fastconv.backends.numba_backend.elementwise import (  # noqa: E402,F401
    add, channel_affine, clamp, clamp_backward, relu, relu_backward, sgd_step)
from fastconv.backends.numba_backend.general import (  # noqa: E402,F401
    col2im_dilated, conv2d_general, conv2d_general_backward, conv_transpose2d, conv_transpose2d_backward,
    im2col_dilated)
from fastconv.backends.numba_backend.norm import batch_norm, batch_norm_backward  # noqa: E402,F401
from fastconv.backends.numba_backend.pool import (  # noqa: E402,F401
    avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward, softmax_cross_entropy)
from fastconv.backends.numba_backend.runtime import (  # noqa: E402,F401
    clear_workspace, get_num_threads, set_num_threads)
from fastconv.backends.numba_backend.select import (  # noqa: E402,F401
    ALGORITHMS, autotune_cache, autotune_stats, clear_autotune_cache, conv_algorithm, exact_only,
    get_conv_algorithm_mode, last_conv_algorithms, set_conv_algorithm, set_exact_only)
from fastconv.backends.numba_backend.unfold import col2im, im2col  # noqa: E402,F401
from fastconv.backends.numba_backend.background import set_enabled as set_background_compile  # noqa: E402,F401
from fastconv.backends.numba_backend.compile_watch import watch as watch_compiles  # noqa: E402,F401
from fastconv.backends.numba_backend.warmup import (  # noqa: E402,F401
    KERNEL_MODULES, cache_note, compiled_signatures, estimate_basis, estimated_seconds, kernels_cached,
    last_warmup, warmup)

name = "numba"
# NumPy's BLAS threads would spin against this backend's (see `blas_thread_limit`).
blas_threads = 1

_runtime.threads_from_env()

BACKEND = sys.modules[__name__]
