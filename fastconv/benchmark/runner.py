"""Run the curated benchmark set in one process and collect rows for the report."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import numpy as np

import fastconv
import fastconv.functional as F
from fastconv.backends import blas_thread_limit
from fastconv.benchmark import cases, printed
from fastconv.benchmark.timing import ROUNDS, measure_interleaved


# --------------------------------------------------------------------------- threads
class ThreadSettings:
    """Apply one thread count to numba, PyTorch and numpy's BLAS for the whole run."""

    def __init__(self, threads: int):
        self.threads = threads
        self._blas_limits = None

    def apply(self, threads: int | None = None) -> None:
        threads = threads or self.threads
        try:
            from threadpoolctl import threadpool_limits

            if self._blas_limits is not None:
                self._blas_limits.restore_original_limits()
            self._blas_limits = threadpool_limits(limits=threads)
        except ImportError:
            pass
        for name in ("numba", "torch"):
            backend = _loaded_backend(name)
            if backend is not None and hasattr(backend, "set_num_threads"):
                backend.set_num_threads(threads)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(threads)

    def restore(self) -> None:
        if self._blas_limits is not None:
            self._blas_limits.restore_original_limits()


def _loaded_backend(name):
    if name not in fastconv.available_backends():
        return None
    with fastconv.use_backend(name) as backend:
        return backend


@contextlib.contextmanager
def conv_algorithm(backend, algorithm: str | None):
    """Force the numba backend's convolution algorithm (None: its own choice)."""
    if algorithm is None or not hasattr(backend, "set_conv_algorithm"):
        yield
        return
    backend.set_conv_algorithm(algorithm)
    try:
        yield
    finally:
        backend.set_conv_algorithm(None)   # FASTCONV_CONV_ALGO (or auto) again


def chosen_algorithm(backend, layer: cases.ConvLayer, dtype, pass_: str) -> str:
    choose = getattr(backend, "conv_algorithm", None)
    if choose is None:
        return ""
    try:
        return choose(layer.x_shape, layer.w_shape, (layer.stride,) * 2, (layer.padding,) * 2,
                      np.dtype(dtype), pass_=pass_)
    except Exception as error:  # the table must not die on a diagnostics call
        return f"? ({type(error).__name__})"


def _rounds(quick: bool) -> int:
    """Bursts per variant: one for ``--quick`` (it must finish in under a minute, and
    each burst starts with a settling pause), `timing.ROUNDS` for the published run."""
    return 1 if quick else ROUNDS


# --------------------------------------------------------------------------- kernels
QUICK_OPS = frozenset({"conv2d", "conv2d_3x3_stride1", "conv2d_relu_avgpool2", "im2col", "col2im",
                       "avg_pool2d", "max_pool2d", "softmax_cross_entropy", "batch_norm", "linear"})
"""The `fastconv.functional` kernels ``--quick`` runs (the reports' layers and steps; the
general convolutions are in the full run): only their kernels are compiled for it."""


def kernel_calls(dtype, quick: bool):
    """(kernel, network, layer, shape text, flops, closure factory, conv layer or None)."""
    convs = cases.REPORT000_CONVS + (cases.REPORT003_CONVS[3:4] if quick else cases.REPORT003_CONVS)
    for layer in convs:
        x, w, b, grad_y = layer.inputs(dtype)
        s, p, k = layer.stride, layer.padding, layer.kernel
        yield ("conv2d", layer, layer.forward_flops, lambda x=x, w=w, b=b, s=s, p=p: F.conv2d(x, w, b, s, p))
        yield ("conv2d_backward", layer, layer.backward_flops,
               lambda g=grad_y, x=x, w=w, s=s, p=p: F.conv2d_backward(g, x, w, s, p))
        if not quick or layer.network == "report000":
            cols = F.im2col(x, k, s, p)
            yield ("im2col", layer, 0.0, lambda x=x, k=k, s=s, p=p: F.im2col(x, k, s, p))
            yield ("col2im", layer, 0.0,
                   lambda c=cols, hw=x.shape[2:], k=k, s=s, p=p: F.col2im(c, hw, k, s, p))
    if not quick:
        yield from general_conv_calls(dtype)
    pools = cases.REPORT000_POOLS + cases.REPORT003_POOLS[(1 if quick else 0):]
    for pool in pools:
        x = np.random.default_rng(1).standard_normal(pool.shape).astype(dtype)
        k = pool.kernel
        if pool.kind == "avg":
            grad_y = F.avg_pool2d(x, k)
            yield ("avg_pool2d", pool, 0.0, lambda x=x, k=k: F.avg_pool2d(x, k))
            yield ("avg_pool2d_backward", pool, 0.0,
                   lambda g=grad_y, shape=x.shape, k=k: F.avg_pool2d_backward(g, shape, k))
        else:
            grad_y, indices = F.max_pool2d(x, k)
            yield ("max_pool2d", pool, 0.0, lambda x=x, k=k: F.max_pool2d(x, k))
            yield ("max_pool2d_backward", pool, 0.0,
                   lambda g=grad_y, i=indices, shape=x.shape, k=k: F.max_pool2d_backward(g, i, shape, k))
    for loss_case in cases.LOSSES:
        rng = np.random.default_rng(2)
        logits = rng.standard_normal((loss_case.batch, loss_case.classes)).astype(dtype)
        labels = rng.integers(0, loss_case.classes, loss_case.batch)
        yield ("softmax_cross_entropy", loss_case, 0.0,
               lambda z=logits, y=labels: F.softmax_cross_entropy(z, y))


def general_conv_calls(dtype):
    """The general-convolution rows: depthwise, dilated and transposed convolution, each way."""
    for layer in cases.GENERAL_LAYERS:
        x, w, b, grad_y = layer.inputs(dtype)
        kw = layer.kwargs
        if layer.transposed:
            yield ("conv_transpose2d", layer, layer.forward_flops,
                   lambda x=x, w=w, b=b, kw=kw: F.conv_transpose2d(x, w, b, **kw))
            yield ("conv_transpose2d_backward", layer, layer.backward_flops,
                   lambda g=grad_y, x=x, w=w, kw=kw: F.conv_transpose2d_backward(g, x, w, **kw))
        else:
            yield ("conv2d", layer, layer.forward_flops, lambda x=x, w=w, b=b, kw=kw: F.conv2d(x, w, b, **kw))
            yield ("conv2d_backward", layer, layer.backward_flops,
                   lambda g=grad_y, x=x, w=w, kw=kw: F.conv2d_backward(g, x, w, **kw))


def _is_slow_numpy(kernel, layer, backend_name, quick):
    """The reference backend's report-003 conv kernels take seconds per call, its
    depthwise, dilated and transposed ones (im2col + batched matmul) a few hundred ms."""
    slow_layer = layer.network == "report003" or isinstance(layer, cases.GeneralConvLayer)
    return backend_name == "numpy" and slow_layer and kernel.startswith(("conv", "col2im"))


def run_kernels(backends, dtype, repeat, quick, peak_gflops, log):
    rows = []
    for kernel, layer, flops, call in kernel_calls(dtype, quick):
        variants = {}
        for name in backends:
            slow = _is_slow_numpy(kernel, layer, name, quick)
            options = dict(repeat=2, warmup=0, budget=4.0) if slow else dict(
                repeat=repeat, warmup=1, budget=1.0, min_seconds=0.1 if quick else 0.3)
            variants[name] = (call, options, lambda name=name: fastconv.use_backend(name))
        times = measure_interleaved(variants, _rounds(quick))
        for name, timing in times.items():
            algorithm = ""
            if name == "numba" and isinstance(layer, cases.ConvLayer) and kernel.startswith("conv2d"):
                with fastconv.use_backend(name) as backend:
                    algorithm = chosen_algorithm(
                        backend, layer, dtype, "backward" if kernel.endswith("backward") else "forward")
            rows.append(dict(kernel=kernel, network=layer.network, layer=layer.label,
                             shape=layer.shape_text, backend=name, algorithm=algorithm,
                             flops=flops, **{f"{k}_ms": v * 1e3 for k, v in timing.as_dict().items()
                                             if k != "repeats"}, repeats=timing.repeats))
        _add_ratios(rows[-len(backends):], times, peak_gflops)
        log(_format_kernel_rows(rows[-len(backends):]))
    return rows


def _add_ratios(rows, times, peak_gflops):
    for row in rows:
        median = times[row["backend"]].median
        row["speedup_vs_numpy"] = times["numpy"].median / median if "numpy" in times else None
        row["vs_torch"] = times["torch"].median / median if "torch" in times else None
        row["gflops"] = row["flops"] / median / 1e9 if row["flops"] else None
        row["pct_peak"] = 100 * row["gflops"] / peak_gflops if row["gflops"] else None
        # No kernel beats the BLAS matmul it is measured against: above it is noise.
        row["above_peak"] = bool(row["pct_peak"] and row["pct_peak"] > 100)


def _format_kernel_rows(rows):
    from fastconv.benchmark.report import format_row

    return "\n".join(format_row(row) for row in rows)


# --------------------------------------------------------------------------- steps
def fastconv_step(model_name: str, batch: int, dtype, seed: int = 0):
    """One SGD training step of a fastconv model on a fixed random batch."""
    from fastconv import models, nn, optim

    model = models.build_model(model_name, dtype=dtype, seed=seed)
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=1e-4, weight_decay=2e-4)
    rng = np.random.default_rng(seed)
    size = 28 if model_name in ("cnn", "mlp1", "mlp2") else 32
    classes = 10 if model_name in ("cnn", "mlp1", "mlp2") else 26
    images = rng.random((batch, 1, size, size)).astype(dtype)
    labels = rng.integers(0, classes, batch)
    model.train()

    def step():
        optimizer.zero_grad()
        loss = loss_fn.forward(model.forward(images), labels)
        model.backward(loss_fn.backward())
        optimizer.step()
        return loss

    return step


def torch_native_step(model_name: str, batch: int, seed: int = 0):
    import torch

    from fastconv.benchmark import torch_models

    model = torch_models.kaiming_init(
        torch_models.report000_cnn() if model_name == "cnn" else torch_models.letters_cnn(), seed)
    step = torch_models.training_step(model)
    size, classes = (28, 10) if model_name == "cnn" else (32, 26)
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand((batch, 1, size, size), generator=generator)
    labels = torch.randint(0, classes, (batch,), generator=generator)
    return lambda: step(images, labels)


STEP_NETWORKS = (("report000", "cnn", 50), ("report003", "letters-cnn", 64))


def _step_seconds(quick: bool) -> float:
    """Least sampling time of a training step: 500 samples of report 000's 1 ms step
    in ``--quick``, twice that in the published run."""
    return 0.5 if quick else 1.0


@contextlib.contextmanager
def _as_trained(backend_name: str):
    """A backend as the trainer runs it: selected, under its BLAS thread limit."""
    with fastconv.use_backend(backend_name), blas_thread_limit():
        yield


def run_steps(backends, dtype, repeat, quick, torch_available, log):
    rows = []
    for network, model_name, batch in STEP_NETWORKS:
        variants = {}
        for name in backends:
            if name in ("numpy", "torch") and network == "report003" and quick:
                continue  # 3 s and 0.3-0.5 s per step; the full run measures them
            slow = name == "numpy" and network == "report003"
            options = dict(repeat=2 if slow else repeat * 3, warmup=1, budget=8.0 if slow else 2.0,
                           min_seconds=_step_seconds(quick))
            variants[name] = (fastconv_step(model_name, batch, dtype), options,
                              lambda name=name: _as_trained(name))
        if torch_available:
            variants["torch (native nn)"] = (torch_native_step(model_name, batch), dict(
                repeat=repeat * 3, warmup=2, budget=2.0, min_seconds=_step_seconds(quick)))
        times = measure_interleaved(variants, _rounds(quick))
        anchor = times.get("torch (native nn)")
        for name, timing in times.items():
            row = dict(network=network, model=model_name, batch=batch, backend=name,
                       **{f"{k}_ms": v * 1e3 for k, v in timing.as_dict().items() if k != "repeats"},
                       repeats=timing.repeats, images_per_s=batch / timing.median)
            row["speedup_vs_numpy"] = times["numpy"].median / timing.median if "numpy" in times else None
            row["vs_torch"] = anchor.median / timing.median if anchor else None
            if network == "report000":
                row["seconds_per_60k_epoch"] = timing.median * cases.MNIST_TRAIN_IMAGES / batch
            rows.append(row)
            log(f"  step {network:9s} {name:18s} {timing.median * 1e3:10.2f} ms "
                f"(IQR {timing.q1 * 1e3:.2f}-{timing.q3 * 1e3:.2f})")
    return rows


# --------------------------------------------------------------------------- compile
_FIRST_STEP_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import fastconv
fastconv.set_backend("numba")
t_import = time.perf_counter() - t0
from fastconv.benchmark.runner import fastconv_step
import numpy as np
result = {"import_s": t_import, "warmup_s": None}
if sys.argv[1:] == ["warmup"]:   # what `fastconv train` does before its first epoch
    result["warmup_s"] = fastconv.get_backend().warmup(dtypes=(np.float32,), jobs=2)
for model_name, batch in (("cnn", 50), ("letters-cnn", 8)):
    step = fastconv_step(model_name, batch, np.float32)
    t0 = time.perf_counter(); step(); result[model_name + "_first_step_s"] = time.perf_counter() - t0
    t0 = time.perf_counter(); step(); result[model_name + "_second_step_s"] = time.perf_counter() - t0
print(json.dumps(result))
"""


def first_step_latency(cache_dir: str | None, warmup: bool = True) -> dict:
    """Import, `warmup` (every kernel, two processes) unless ``warmup=False``, and the
    first training steps of both networks in a fresh process.

    With an empty ``cache_dir`` every kernel is compiled (cold): up front with
    ``warmup``, else lazily by the first steps.  Run again on the same directory and
    the process only loads the cache (warm).
    """
    env = dict(os.environ, FASTCONV_BACKEND="numba", FASTCONV_BACKGROUND_COMPILE="0")  # every kernel, this process
    if cache_dir:
        env["NUMBA_CACHE_DIR"] = cache_dir
    t0 = time.perf_counter()
    command = [sys.executable, "-c", _FIRST_STEP_SCRIPT] + (["warmup"] if warmup else [])
    result = subprocess.run(command, env=env, capture_output=True,
                            text=True, timeout=600)
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    data = json.loads(result.stdout.strip().splitlines()[-1])
    data["process_wall_s"] = wall
    return data


# --------------------------------------------------------------------------- scaling
def run_scaling(backends, dtype, repeat, quick, threads, thread_settings, log):
    """Forward+backward time of one 3x3 conv layer vs batch size and vs channels,
    each numba algorithm forced, and 1 vs all threads."""
    batch_sizes = [1, 8, 64] if quick else [1, 2, 4, 8, 16, 32, 64, 128, 256]
    channel_counts = [1, 8, 64] if quick else [1, 2, 4, 8, 16, 32, 64, 128]
    variants = [(name, None) for name in backends if name != "numba"]
    if "numba" in backends:
        variants += [("numba", "direct"), ("numba", "gemm"), ("numba", None)]
    rows = []

    @contextlib.contextmanager
    def selected(name, algorithm):
        with fastconv.use_backend(name) as backend, conv_algorithm(backend, algorithm):
            yield

    def time_layer(layer, variants):
        """{label: Timing} of one layer's forward + backward for each variant."""
        x, w, _, grad_y = layer.inputs(dtype)

        def fwd_bwd():
            F.conv2d(x, w, None, 1, 1)
            F.conv2d_backward(grad_y, x, w, 1, 1)

        jobs = {}
        for name, algorithm in variants:
            slow = name == "numpy" and layer.forward_flops > 2e8
            # Sampled for a minimum time like the kernels: 7 samples of a 0.2 ms call
            # right after PyTorch's measured up to 8x slow (its OpenMP workers still awake).
            options = dict(repeat=2 if slow else repeat, warmup=0 if slow else 1, budget=1.0,
                           min_seconds=0.1 if quick else 0.3)
            label = name if algorithm is None else f"{name} ({algorithm})"
            jobs[label] = (fwd_bwd, options, lambda n=name, a=algorithm: selected(n, a))
        return measure_interleaved(jobs, _rounds(quick))

    for sweep, values in (("batch", batch_sizes), ("channels", channel_counts)):
        for value in values:
            layer = (cases.ConvLayer("scaling", "conv", value, 64, 64, 16, 3, 1) if sweep == "batch"
                     else cases.ConvLayer("scaling", "conv", 32, value, value, 16, 3, 1))
            cheap_enough = [(name, algorithm) for name, algorithm in variants
                            if name != "numpy" or layer.forward_flops <= (1e8 if quick else 1e9)]
            for label, timing in time_layer(layer, cheap_enough).items():
                rows.append(dict(sweep=sweep, value=value, backend=label, threads=threads,
                                 median_ms=timing.median * 1e3,
                                 gflops=3 * layer.forward_flops / timing.median / 1e9))
            log(printed.scaling_line(sweep, value, rows))
    if threads > 1:
        layer = cases.ConvLayer("scaling", "conv", 64, 64, 64, 16, 3, 1)
        for count in (1, threads):
            thread_settings.apply(count)
            compiled = [(name, algorithm) for name, algorithm in variants if name != "numpy"]
            for label, timing in time_layer(layer, compiled).items():
                rows.append(dict(sweep="threads", value=count, backend=label, threads=count,
                                 median_ms=timing.median * 1e3,
                                 gflops=3 * layer.forward_flops / timing.median / 1e9))
            log(printed.scaling_line("threads", count, rows))
        thread_settings.apply(threads)
    return rows


# --------------------------------------------------------------------------- under load
@contextlib.contextmanager
def busy_process():
    """A busy-looping Python process for the block's duration, pinned to this
    process's last core where the OS allows (one core taken, as by another job)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = (lambda: os.sched_setaffinity(0, {cores[-1]})) if cores else None
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pin,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.2)          # let it start spinning
        yield process
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def _threads(thread_settings: ThreadSettings, count: int):
    """The numba backend as trained, on ``count`` threads (restored afterwards)."""
    thread_settings.apply(count)
    try:
        with _as_trained("numba"):
            yield
    finally:
        thread_settings.apply()


def run_under_load(dtype, repeat, quick, threads, thread_settings, log):
    """Report 000's training step (numba) on 1 thread and on ``threads`` threads,
    interleaved, on an idle machine and beside one busy-looping process: with every
    core running a kernel thread, the thread that shares its core is late at every
    barrier (measured: 2.4x slower than 1 thread on 2 cores)."""
    step = fastconv_step("cnn", 50, dtype)
    options = dict(repeat=repeat * 3, warmup=1, budget=2.0, min_seconds=1.0)
    rows = []
    for load in ("idle", "one busy process"):
        variants = {count: (step, options, lambda count=count: _threads(thread_settings, count))
                    for count in (1, threads)}
        with busy_process() if load != "idle" else contextlib.nullcontext():
            times = measure_interleaved(variants, _rounds(quick))
        for count, timing in times.items():
            rows.append(dict(network="report000", load=load, threads=count, median_ms=timing.median * 1e3,
                             q1_ms=timing.q1 * 1e3, q3_ms=timing.q3 * 1e3))
            log(f"  step report000 numba {load:16s} {count} thread(s) {timing.median * 1e3:8.2f} ms")
    return rows
