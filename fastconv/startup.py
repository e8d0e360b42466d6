"""What `fastconv train` and `fastconv bench` do before their first timed step:
check the backend's configuration, advise when the machine is busy, and compile the
kernels up front -- saying so, and how it goes, when the compile cache is cold.

Only the kernels the model runs are compiled (a model without convolutions needs no
convolution kernels), and of a convolution's algorithms only one before the first
step when the backend can compile the others in the background.
"""

from __future__ import annotations

import threading
import time

import numpy as np

import fastconv
from fastconv.system import env, load as machine_load

# Below this (rough) wait the compile goes unannounced: a notice would be noise.
_ANNOUNCE_SECONDS = 2.0


_PLAIN_CONV_OPS = frozenset({"conv2d", "conv2d_relu", "conv2d_relu_avgpool2"})


def _padding_pair(conv) -> tuple:
    if conv.padding == "same":
        return tuple((k - 1) // 2 for k in conv.kernel_size)
    if conv.padding == "valid":
        return (0, 0)
    return tuple(conv.padding)


def ops_of(model) -> set | None:
    """What training ``model`` runs, for `warmup`: the names of the `fastconv.functional`
    kernels its layers call (each `Module.kernel_ops`) and the softmax cross-entropy
    loss, plus ``("conv2d", kernel, stride, padding)`` for each plain convolution's
    geometry (only the algorithms that can run it compile); None when a module does
    not say (a user's own Module: then every kernel)."""
    from fastconv import nn

    ops: set = {"softmax_cross_entropy"}
    for module in model.modules():
        names = module.kernel_ops()
        if names is None:
            return None
        ops.update(names)
        if isinstance(module, nn.Conv2d) and names & _PLAIN_CONV_OPS:
            ops.add(("conv2d", tuple(module.kernel_size), tuple(module.stride), _padding_pair(module)))
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
    what = (f"the {backend.name} kernels this model needs first" if ops is not None
            else f"the {backend.name} kernels")
    names = "/".join(dtype.name for dtype in dtypes)
    basis = getattr(backend, "estimate_basis", lambda *args: "a rough estimate")(dtypes, ops)
    cache = getattr(backend, "cache_note", lambda: "they compile once: later runs load them from the cache")()
    return f"First run: compiling {what} ({names}), about {seconds:.0f} s ({basis}); {cache}."


class _Progress:
    """`warmup`'s progress callback: a line as each kernel group is ready and, between
    them, one every `TICK` seconds saying how long it has taken and about how long is
    left.  Plain lines through ``log``, so that a log file shows them as a terminal does."""

    TICK = 5.0

    def __init__(self, log, estimate: float, enabled: bool = True):
        self.log, self.estimate, self.enabled = log, estimate, enabled
        self.start = self.last_line = time.perf_counter()
        self.done, self.total = 0, 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def __call__(self, done: int, total: int, item: str | None) -> None:
        with self._lock:
            self.done, self.total = done, total
            if item is not None:
                self._say(f"  {item} ready ({self.done}/{self.total}, {self._elapsed():.0f} s)")
        if self._thread is None and self.enabled:
            self._thread = threading.Thread(target=self._tick, daemon=True, name="fastconv-progress")
            self._thread.start()

    def _elapsed(self) -> float:
        return time.perf_counter() - self.start

    def _say(self, text: str) -> None:
        if self.enabled:
            self.log(text)
            self.last_line = time.perf_counter()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                if time.perf_counter() - self.last_line >= self.TICK:
                    elapsed = self._elapsed()
                    left = self.estimate - elapsed
                    rest = f"about {left:.0f} s left" if left >= 1 else "taking longer than estimated"
                    self._say(f"  compiling: {self.done}/{self.total} kernel groups ready, "
                              f"{elapsed:.0f} s so far, {rest}")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def compile_kernels(backend, model=None, dtypes=np.float32, log=print, progress: bool = True,
                    jobs: int = 2, ops=None) -> float | None:
    """Compile (or load from the cache) the kernels ``model`` needs first (None: all)
    for ``dtypes``; returns the seconds it took, None for a backend with nothing to
    compile (``ops``, names of `fastconv.functional` kernels, instead of a model's).
    When the cache is cold, ``log`` says what, why and about how long first, then how
    it goes (`_Progress`)."""
    warmup = getattr(backend, "warmup", None)
    if warmup is None:
        return None
    dtypes = _dtype_tuple(dtypes)
    ops = ops_of(model) if model is not None else (None if ops is None else set(ops))
    cached = getattr(backend, "kernels_cached", lambda *args: False)(dtypes, ops)
    estimate = getattr(backend, "estimated_seconds", lambda *args: 30.0)(dtypes, ops, jobs)
    if cached or estimate < _ANNOUNCE_SECONDS:
        return warmup(dtypes=dtypes, jobs=jobs, ops=ops)
    log(_notice(backend, dtypes, ops, estimate))
    reporter = _Progress(log, estimate, progress)
    try:
        seconds = warmup(dtypes=dtypes, jobs=jobs, ops=ops, progress=reporter)
    finally:
        reporter.close()
    later = getattr(backend, "last_warmup", dict)().get("background")
    if later:
        log(f"  meanwhile a background process compiles the other candidate algorithms "
            f"({', '.join(item.split(':')[1] for item in later)}); this run times them once they "
            f"are ready, and later runs find them compiled")
    return seconds


def prepare_backend(model=None, dtypes=np.float32, log=print, progress: bool = True,
                    jobs: int = 2, ops=None, background: bool | None = None) -> float | None:
    """Everything before a timed run on the current backend: a misconfigured
    ``FASTCONV_*`` variable fails now (not minutes in), a busy machine gets a line of
    advice, `compile_kernels` runs, and from then on a kernel whose first use compiles
    for seconds is named (the backend's ``watch_compiles``).  ``background=False``
    compiles every candidate now (a benchmark times nothing while a helper compiles);
    None follows the backend's setting.  Returns the compile seconds (None: nothing
    compiled)."""
    backend = fastconv.get_backend()
    if background is not None:
        getattr(backend, "set_background_compile", lambda enabled: None)(background)
    check_mode = getattr(backend, "get_conv_algorithm_mode", None)
    if check_mode is not None:
        check_mode()                   # raises EnvironmentVariableError on a bad FASTCONV_CONV_ALGO
    _advise_if_busy(backend, log)
    seconds = compile_kernels(backend, model, dtypes, log, progress, jobs, ops)
    watch = getattr(backend, "watch_compiles", None)
    if watch is not None:               # what compiles later, on first use, is said too
        watch(log)
    return seconds
