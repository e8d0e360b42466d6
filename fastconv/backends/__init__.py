"""Backend registry: which kernel implementation `fastconv.functional` dispatches to.

A backend is any object with a ``name`` attribute and the kernel functions listed in
`KERNELS`, optionally also those of `OPTIONAL_KERNELS` (see `fastconv.functional` for
their contracts).  The functional layer has
already validated and normalised every argument before a backend sees it:

* arrays are C-contiguous, float32 or float64, of matching dtype and shape;
* ``kernel_size``, ``stride`` and ``padding`` are ``(h, w)`` tuples of Python ints;
* ``labels`` for `softmax_cross_entropy` is an ``(N, K)`` float target of the logits'
  dtype (integer class labels are turned into one-hot rows by the caller).

A backend may also have ``warmup(dtypes, jobs, ops=None, progress=None)``, compiling
the kernels the `fastconv.functional` ops ``ops`` need first (default all) up front and
returning the seconds it took, with ``kernels_cached(dtypes, ops)``,
``estimated_seconds(dtypes, ops, jobs)``, ``estimate_basis(dtypes, ops)`` (where the
estimate comes from) and ``set_background_compile(enabled)``; `fastconv.startup` calls
them before training or benchmarking.

To add a backend, write a module exposing ``BACKEND`` (such an object) and register
its import path in `_BACKEND_MODULES` (or call `register_backend` at run time).  Nothing
in `fastconv.nn` changes: layers only ever call `fastconv.functional`.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Iterator

from fastconv.system import env

KERNELS = (
    "im2col",
    "col2im",
    "conv2d",
    "conv2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "softmax_cross_entropy",
)
# Fused kernels a backend may add; `fastconv.functional` composes them from `KERNELS`
# for a backend that does not have them.
OPTIONAL_KERNELS = ("conv2d_relu", "conv2d_relu_backward", "conv2d_backward_weights",
                    "conv2d_relu_avgpool2", "conv2d_relu_avgpool2_backward",
                    "batch_norm", "batch_norm_backward", "linear", "linear_backward",
                    # elementwise (`fastconv.functional.elementwise`): relu(x), relu_backward(grad_y, y),
                    # clamp(x, low, high), clamp_backward(grad_y, y, low, high), add(a, b),
                    # channel_affine(x, scale, shift) -> new array
                    "relu", "relu_backward", "clamp", "clamp_backward", "add", "channel_affine",
                    # sgd_step(param, grad, buffer or None, lr, momentum, weight_decay): in place
                    "sgd_step")
# General convolution, also optional; `fastconv.functional.compose` composes
# them from `KERNELS` (dilated unfold + one batched matmul over the groups):
#   im2col_dilated(x, kernel_size, stride, padding, dilation)
#   col2im_dilated(cols, output_size, kernel_size, stride, padding, dilation)
#   conv2d_general(x, w, b, stride, padding, dilation, groups) -> y
#   conv2d_general_backward(grad_y, x, w, stride, padding, dilation, groups, input_grad)
#       -> (grad_x or None, grad_w, grad_b)
#   conv_transpose2d(x, w, b, stride, padding, output_padding, dilation, groups) -> y
#   conv_transpose2d_backward(grad_y, x, w, stride, padding, output_padding, dilation, groups)
#       -> (grad_x, grad_w, grad_b)
# ``dilation`` is an (h, w) tuple, ``groups`` an int; ``padding`` is always a symmetric
# (h, w) tuple (functional turns "same" into that plus an explicit pad of x).  The
# plain case (dilation (1, 1), groups 1) of conv2d never reaches conv2d_general*.
GENERAL_KERNELS = ("im2col_dilated", "col2im_dilated", "conv2d_general", "conv2d_general_backward",
                   "conv_transpose2d", "conv_transpose2d_backward")
OPTIONAL_KERNELS += GENERAL_KERNELS

# name -> module holding a ``BACKEND`` object; imported lazily so that selecting
# numpy never pays numba's import time, and a missing optional dependency only
# removes that one backend from `available_backends()`.
_BACKEND_MODULES: dict[str, str] = {
    "numpy": "fastconv.backends.numpy_backend",
    "numba": "fastconv.backends.numba_backend",
    "torch": "fastconv.backends.torch_backend",  # optional: only when PyTorch is installed
}
_loaded: dict[str, object] = {}
_current: object | None = None

DEFAULT_BACKEND = "numba"


def register_backend(name: str, module_path: str) -> None:
    """Make ``name`` selectable; ``module_path`` must define a ``BACKEND`` object."""
    _BACKEND_MODULES[name] = module_path
    _loaded.pop(name, None)


def _load(name: str):
    if name not in _BACKEND_MODULES:
        raise ValueError(f"unknown backend {name!r}; {_valid_backends()}")
    if name not in _loaded:
        try:
            module = importlib.import_module(_BACKEND_MODULES[name])
        except ImportError as exc:
            raise ImportError(f"backend {name!r} is not available here: {exc}") from exc
        backend = module.BACKEND
        missing = [k for k in KERNELS if not callable(getattr(backend, k, None))]
        if missing:
            raise TypeError(f"backend {name!r} lacks kernels: {', '.join(missing)}")
        _loaded[name] = backend
    return _loaded[name]


def registered_backends() -> list[str]:
    """Every registered backend name, usable here or not (see `backend_problems`)."""
    return list(_BACKEND_MODULES)


def backend_problems() -> dict[str, str]:
    """``name -> why it cannot be used`` for each registered backend that does not
    load here (a missing package, a bad environment variable)."""
    problems = {}
    for name in _BACKEND_MODULES:
        try:
            _load(name)
        except (ImportError, env.EnvironmentVariableError) as exc:
            problems[name] = str(exc)
    return problems


def _valid_backends() -> str:
    """The backends one could select, and the unusable ones with the reason."""
    problems = backend_problems()
    usable = [name for name in sorted(_BACKEND_MODULES) if name not in problems]
    text = f"valid backends are: {', '.join(usable)}"
    if problems:
        text += " (not usable here: " + "; ".join(f"{n}: {why}" for n, why in problems.items()) + ")"
    return text


def available_backends() -> list[str]:
    """Names of the registered backends whose dependencies import on this machine."""
    names = []
    for name in _BACKEND_MODULES:
        try:
            _load(name)
        except ImportError:
            continue
        names.append(name)
    return names


def set_backend(name: str):
    """Select the backend every kernel call (and so every layer) uses from now on."""
    global _current
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a str, got {type(name).__name__}")
    _current = _load(name.strip().lower())
    return _current


def get_backend():
    """The backend in use (it has a ``.name``); the default is chosen on first use."""
    if _current is None:
        _select_default()
    return _current


def optional_kernel(op: str):
    """The current backend's kernel ``op`` of `OPTIONAL_KERNELS`, or None when it has
    none (the caller then composes it)."""
    return getattr(get_backend(), op, None)


def _select_default() -> None:
    """``FASTCONV_BACKEND`` if set (an unknown name is an error, not a silent fallback);
    otherwise numba, falling back to numpy when numba cannot be imported.  Runs on
    first use, not at ``import fastconv`` (which stays fast and never fails)."""
    requested = env.raw(env.BACKEND)
    if requested:
        try:
            set_backend(requested)
        except (ValueError, ImportError) as exc:
            raise env.EnvironmentVariableError(f"{env.BACKEND}={requested!r}: {exc}") from None
        return
    try:
        set_backend(DEFAULT_BACKEND)
    except ImportError:
        set_backend("numpy")


def blas_thread_limit():
    """A context manager applying the BLAS thread count the selected backend asks for.

    A backend with its own thread pool (numba) sets ``blas_threads = 1``: NumPy's
    OpenBLAS workers, used by the `Linear` layers, busy-wait for ~0.1 s after every
    multi-threaded call and take the cores the backend's kernels need next (report
    003's training step: 350 ms, 311 ms with this limit).  The trainer (for models
    with convolutions) and the benchmark's steps run inside it; other backends get a
    no-op.
    """
    threads = getattr(get_backend(), "blas_threads", None)
    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[object]:
    """Temporarily switch backend; the previous one is restored even on error."""
    global _current
    previous = _current       # None: the default is chosen again on the next use
    backend = set_backend(name)
    try:
        yield backend
    finally:
        _current = previous
