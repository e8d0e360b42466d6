"""What `fastconv train` and `fastconv bench` do before their first timed step:
check the backend's configuration, advise when the machine is busy, and compile the
kernels up front -- saying so, with a progress bar, when the compile cache is cold.

Only the kernels the model runs are compiled (a model without convolutions needs no
convolution kernels), so a first run waits for what it uses, not for everything.
"""

from __future__ import annotations

import sys

import numpy as np

import fastconv
from fastconv import env, machine_load

# Below this (rough) wait the compile goes unannounced: a notice would be noise.
_ANNOUNCE_SECONDS = 2.0


def ops_of(model) -> set[str] | None:
    """Names of the `fastconv.functional` kernels training ``model`` calls (its
    layers and a softmax cross-entropy loss), plus ``conv2d_3x3_stride1`` when a
    convolution has that geometry; None when it holds a layer this function does not
    know (then: every kernel)."""
    from fastconv import nn
    from fastconv.nn.norm import _BatchNorm

    # most specific class first: Conv2dReLUAvgPool is a Conv2d
    kernels_by_layer = ((nn.ConvTranspose2d, "conv_transpose2d"), (nn.Conv2dReLUAvgPool, "conv2d_relu_avgpool2"),
                        (nn.Conv2d, "conv2d"), (nn.AvgPool2d, "avg_pool2d"), (nn.MaxPool2d, "max_pool2d"),
                        (_BatchNorm, "batch_norm"), (nn.Linear, "linear"))
    without_kernels = (nn.ReLU, nn.Flatten, nn.Dropout, nn.Sequential, nn.Residual)
    ops = {"softmax_cross_entropy"}
    for module in model.modules():
        op = next((name for layer, name in kernels_by_layer if isinstance(module, layer)), None)
        if op is None:
            if not isinstance(module, without_kernels):
                return None
        elif op.startswith("conv2d") and (module.dilation != (1, 1) or module.groups != 1):
            ops.add("conv2d_general")       # dilated or grouped: the general kernels
        else:
            ops.add(op)                     # (padding="same"/"valid" alone runs the plain ones)
            if op.startswith("conv2d") and module.kernel_size == (3, 3) and module.stride == (1, 1):
                ops.add("conv2d_3x3_stride1")   # where the specialised algorithms run
    return ops


def _dtype_tuple(dtypes) -> tuple[np.dtype, ...]:
    if isinstance(dtypes, (str, np.dtype, type)):
        dtypes = (dtypes,)
    return tuple(np.dtype(d) for d in dtypes)


def _advise_if_busy(backend, log) -> None:
    """One line of advice when other processes hold cores the kernel threads need
    (not when the user chose the thread count)."""
    threads = getattr(backend, "get_num_threads", lambda: 1)()
    if threads < 2 or env.num_threads() is not None:
        return
    text = machine_load.advice(threads, machine_load.busy_cores(0.15), machine_load.available_cores())
    if text:
        log(f"note: {text}")


def _notice(backend, dtypes, ops, seconds: float) -> str:
    what = (f"the {backend.name} kernels this model needs" if ops is not None
            else f"all {backend.name} kernels")
    names = "/".join(dtype.name for dtype in dtypes)
    return (f"First run: compiling {what} ({names}), roughly "
            f"{seconds:.0f} s (on 2 idle cores; longer on a slower or busy machine). numba turns them "
            f"into machine code once and keeps it in its on-disk cache, so later runs load them in "
            f"about a second.")


class _Bar:
    """``warmup``'s progress callback, drawing a tqdm bar over the kernel groups."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def __call__(self, done: int, total: int, item: str | None) -> None:
        if self.bar is None:
            from tqdm import tqdm

            # mininterval=0: updates are seconds apart, draw each one
            self.bar = tqdm(total=total, desc="compiling kernels", unit="group", leave=False,
                            mininterval=0, disable=not self.enabled, dynamic_ncols=True,
                            file=sys.stderr)
        if item is not None:
            self.bar.set_postfix_str(f"{item} ready", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def compile_kernels(backend, model=None, dtypes=np.float32, log=print, progress: bool = True,
                    jobs: int = 2) -> float | None:
    """Compile (or load from the cache) the kernels ``model`` needs (None: all) for
    ``dtypes``; returns the seconds it took, None for a backend with nothing to
    compile.  When the cache is cold, ``log`` says what, why and about how long
    first, and a progress bar (``progress``) follows the kernel groups."""
    warmup = getattr(backend, "warmup", None)
    if warmup is None:
        return None
    dtypes = _dtype_tuple(dtypes)
    ops = None if model is None else ops_of(model)
    cached = getattr(backend, "kernels_cached", lambda *args: False)(dtypes, ops)
    estimate = getattr(backend, "estimated_seconds", lambda *args: 30.0)(dtypes, ops, jobs)
    if cached or estimate < _ANNOUNCE_SECONDS:
        return warmup(dtypes=dtypes, jobs=jobs, ops=ops)
    log(_notice(backend, dtypes, ops, estimate))
    bar = _Bar(progress)
    try:
        return warmup(dtypes=dtypes, jobs=jobs, ops=ops, progress=bar)
    finally:
        bar.close()


def prepare_backend(model=None, dtypes=np.float32, log=print, progress: bool = True,
                    jobs: int = 2) -> float | None:
    """Everything before a timed run on the current backend: a misconfigured
    ``FASTCONV_*`` variable fails now (not minutes in), a busy machine gets a line of
    advice, and `compile_kernels` runs.  Returns its seconds (None: nothing compiled)."""
    backend = fastconv.get_backend()
    check_mode = getattr(backend, "get_conv_algorithm_mode", None)
    if check_mode is not None:
        check_mode()                   # raises EnvironmentVariableError on a bad FASTCONV_CONV_ALGO
    _advise_if_busy(backend, log)
    return compile_kernels(backend, model, dtypes, log, progress, jobs)
