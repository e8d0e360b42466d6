"""Compile kernels up front: `warmup`, which groups a set of ops needs, and what the
compile cache already holds (`kernels_cached`)."""

from __future__ import annotations

import importlib
import sys
import time

import numba
import numpy as np

from fastconv.backends.numba_backend import dense, general, norm, pool, select, unfold
from fastconv.backends.numba_backend import kernels as _kernels_package
from fastconv.backends.numba_backend.kernels import blocked as _blocked
from fastconv.backends.numba_backend.kernels import dense as _dense
from fastconv.backends.numba_backend.kernels import depthwise as _depthwise
from fastconv.backends.numba_backend.kernels import direct as _conv
from fastconv.backends.numba_backend.kernels import gemm as _gemm
from fastconv.backends.numba_backend.kernels import grouped as _grouped
from fastconv.backends.numba_backend.kernels import im2col as _cols
from fastconv.backends.numba_backend.kernels import norm as _norm
from fastconv.backends.numba_backend.kernels import phases as _phases
from fastconv.backends.numba_backend.kernels import pool as _pool
from fastconv.backends.numba_backend.kernels import shifted as _shifted
from fastconv.backends.numba_backend.kernels import unfold_dilated as _unfold_dilated
from fastconv.backends.numba_backend.kernels import winograd as _winograd

KERNEL_MODULES = (_conv, _gemm, _shifted, _winograd, _blocked, _cols, _pool, _norm, _dense, _depthwise,
                  _grouped, _unfold_dilated, _phases)

# Warm-up groups besides one per convolution algorithm (`select.ALGORITHMS`), each
# with the jitted entry points it compiles (for `kernels_cached`); None: every public
# kernel of the modules.
_OTHER_GROUPS = {
    "loss": ((_pool,), ("softmax_cross_entropy",)),
    "pool": ((_pool,), ("avg_pool2d_forward", "avg_pool2d_backward", "max_pool2d_forward",
                        "max_pool2d_backward")),
    "norm": ((_norm,), ("batch_norm_forward", "batch_norm_backward")),
    "dense": ((_dense,), None),                     # fully connected layers
    "unfold": ((_cols,), ("im2col_into", "col2im_from")),
    # dilated, grouped, depthwise and transposed convolution
    "general": ((_depthwise, _grouped, _unfold_dilated, _phases), None),
}

# Rough first-compile seconds per group and dtype, measured once on a 2-core machine;
# only for telling the user about how long the wait is.
ROUGH_COMPILE_SECONDS = {"direct": 19.0, "gemm": 9.5, "shifted": 12.0, "shifted_rows": 0.5, "winograd": 8.0, "blocked": 10.0, "pool": 8.0,
                         "unfold": 4.0, "norm": 3.5, "dense": 3.8, "loss": 0.3, "general": 20.0}
_UNKNOWN_GROUP_SECONDS = 10.0


def groups() -> tuple[str, ...]:
    """Every warm-up group: one per convolution algorithm (read at call time: new
    algorithms join), then the others.  "direct" (~45 % of the compile time) first,
    as it is what a helper process takes over."""
    return tuple(select.ALGORITHMS) + tuple(_OTHER_GROUPS)


# An op `fastconv.startup.ops_of` adds for a 3x3 stride-1 convolution layer: the
# geometry the specialised algorithms (Winograd) run; other layers need only the
# algorithms that run any shape (Winograd's kernels cost ~27 s of a cold compile).
CONV_3X3_STRIDE1 = "conv2d_3x3_stride1"


def _any_shape_algorithms() -> list[str]:
    return [name for name, module in select.ALGORITHMS.items()
            if module.supports((1, 1, 9, 9), (1, 1, 5, 4), (2, 1), (0, 0))]


def groups_for(ops=None) -> tuple[str, ...]:
    """The groups that compile ``ops`` (names of `fastconv.functional` kernels, e.g.
    ``{"conv2d_relu_avgpool2", "softmax_cross_entropy"}``, and `CONV_3X3_STRIDE1`);
    None or an op this function does not know: every group."""
    if ops is None:
        return groups()
    needed = set()
    for op in ops:
        if op == CONV_3X3_STRIDE1:
            needed.update(select.ALGORITHMS)          # every algorithm may win such a layer
        elif op.startswith("conv2d") and op != "conv2d_general":
            needed.update(_any_shape_algorithms())
            if "pool" in op:             # algorithms that do not fuse the pooling run it apart
                needed.add("pool")
        elif op in ("avg_pool2d", "max_pool2d"):
            needed.add("pool")
        elif op == "softmax_cross_entropy":
            needed.add("loss")
        elif op == "batch_norm":
            needed.add("norm")
        elif op == "linear":
            needed.add("dense")
        elif op in ("im2col", "col2im"):
            needed.add("unfold")
        elif op in ("conv2d_general", "conv_transpose2d"):
            needed.add("general")
        else:
            return groups()
    return tuple(group for group in groups() if group in needed)


def _warm(dtype, group: str) -> None:
    """Run every kernel of ``group`` once on tiny ``dtype`` inputs (all code paths)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    w = rng.standard_normal((3, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    if group in select.ALGORITHMS:
        algorithm = select.ALGORITHMS[group]
        if not algorithm.supports(x.shape, w.shape, (1, 1), (1, 1)):
            return
        y = algorithm.forward(x, w, b, (1, 1), (1, 1), True)
        algorithm.backward(np.ones_like(y), x, w, y, (1, 1), (1, 1), True)
        if hasattr(algorithm, "warm"):           # code paths the tiny problem does not take
            algorithm.warm(x, w, b)
    elif group == "unfold":
        cols = unfold.im2col(x, (2, 2), (1, 1), (0, 0))
        unfold.col2im(cols, (6, 5), (2, 2), (1, 1), (0, 0))
    elif group == "pool":
        pool.avg_pool2d_backward(pool.avg_pool2d(x, (2, 2), (2, 2), (0, 0)), x.shape, (2, 2), (2, 2), (0, 0))
        y, idx = pool.max_pool2d(x, (2, 2), (2, 2), (0, 0))
        pool.max_pool2d_backward(y, idx, x.shape, (2, 2), (2, 2), (0, 0))
    elif group == "loss":
        pool.softmax_cross_entropy(x.reshape(2, -1), np.full((2, 90), 1 / 90, dtype=dtype))
    elif group == "norm":
        y, mean, var = norm.batch_norm(x, b, b, 1e-5)
        norm.batch_norm_backward(y, x, mean, var, b, 1e-5)
    elif group == "dense":
        flat = np.tile(x.reshape(2, -1), (dense._GEMM_ROWS, 1))     # 90 features -> 16
        y = dense.linear(flat, flat[::-1].copy(), rng.standard_normal(len(flat)).astype(dtype))
        dense.linear(flat, flat[::-1].copy(), None)
        dense.linear_backward(y, flat, flat[::-1].copy())
    elif group == "general":
        general.warm(dtype)
    else:
        raise ValueError(f"unknown warm-up group {group!r}; groups: {', '.join(groups())}")


# --------------------------------------------------------------------------- cache state
def _group_kernels(group: str) -> list:
    """The jitted entry points ``group`` compiles: an algorithm's are the public
    kernels of ``kernels/<name>.py``; [] when that module does not exist."""
    if group in _OTHER_GROUPS:
        modules, names = _OTHER_GROUPS[group]
        if names is not None:
            return [getattr(modules[0], name) for name in names]
    else:
        name = getattr(select.ALGORITHMS.get(group), "KERNELS", group)   # an algorithm may share another's
        try:
            modules = (importlib.import_module(f"{_kernels_package.__name__}.{name}"),)
        except ImportError:
            return []
    return [obj for module in modules for name, obj in vars(module).items()
            if isinstance(obj, numba.core.registry.CPUDispatcher) and not name.startswith("_")
            and obj.py_func.__module__ == module.__name__]


def _kernel_ready(kernel, dtype_name: str) -> bool:
    """Compiled for ``dtype_name`` in this process, or indexed in numba's on-disk cache
    (read through numba internals: if they change, the answer is False)."""
    if any(dtype_name in str(signature) for signature in kernel.signatures):
        return True
    try:
        return any(dtype_name in str(key[0]) for key in kernel._cache._cache_file._load_index())
    except Exception:  # noqa: BLE001 - numba internals moved: fall back to "not ready"
        return False


def group_ready(dtype_name: str, group: str) -> bool:
    """Whether loading ``group``'s kernels for ``dtype_name`` needs no compilation."""
    kernels = _group_kernels(group)
    return bool(kernels) and all(_kernel_ready(kernel, dtype_name) for kernel in kernels)


def direct_ready(dtype_name: str) -> bool:
    """Whether the direct-convolution kernels are compiled or cached (then loading
    them takes ~0.1 s and a helper process would only cost its start-up)."""
    return group_ready(dtype_name, "direct")


# The two slowest groups to compile (~19 s and ~20 s of ~70 s): with ``jobs=2`` a
# helper process compiles these while this one compiles the rest.
_OFFLOADED_GROUPS = ("direct", "general")


def kernels_cached(dtypes=(np.float32,), ops=None) -> bool:
    """Whether `warmup` of ``ops`` (see `groups_for`) for ``dtypes`` only loads from
    numba's cache, compiling nothing (a hint: False when unsure)."""
    return all(group_ready(np.dtype(dtype).name, group) for dtype in dtypes for group in groups_for(ops))


def estimated_seconds(dtypes=(np.float32,), ops=None, jobs: int = 1) -> float:
    """Rough cold-compile wall time of `warmup` (`ROUGH_COMPILE_SECONDS`)."""
    times = [ROUGH_COMPILE_SECONDS.get(group, _UNKNOWN_GROUP_SECONDS)
             for _ in dtypes for group in groups_for(ops)]
    offloaded = [ROUGH_COMPILE_SECONDS[group] for _ in dtypes for group in _OFFLOADED_GROUPS
                 if jobs > 1 and group in groups_for(ops)]
    return max(sum(times) - sum(offloaded), sum(offloaded))


# --------------------------------------------------------------------------- warmup
def warm_items(items, progress=None) -> None:
    for item in items:
        dtype, group = item.split(":")
        _warm(dtype, group)
        if progress is not None:
            progress(item)


def warmup(dtypes=(np.float32,), jobs: int = 1, ops=None, progress=None) -> float:
    """Compile (or load from numba's cache) the kernels of ``ops`` (names of
    `fastconv.functional` kernels; None: all) for ``dtypes``; returns seconds.

    Runs each kernel once on tiny inputs -- every convolution algorithm, forward and
    backward, with and without ReLU/mask -- so that no later call pays compilation.
    With ``jobs=2`` a helper process compiles `_OFFLOADED_GROUPS` (direct and general
    convolution) into numba's cache while this one compiles the rest, then this
    process loads them:
    about half the cold wall time on two idle cores (each kernel is compiled by one
    process only, so the two never race on a cache index).  ``progress(done, total,
    item)`` is called once before anything compiles (``item`` None) and after each
    ``"dtype:group"`` item is ready.
    """
    start = time.perf_counter()
    items = [f"{np.dtype(d).name}:{group}" for d in dtypes for group in groups_for(ops)]
    offloaded = [item for item in items if jobs > 1 and item.split(":")[1] in _OFFLOADED_GROUPS
                 and not group_ready(*item.split(":"))]
    done = []

    def ready(item):
        done.append(item)
        if progress is not None:
            progress(len(done), len(items), item)

    if progress is not None:
        progress(0, len(items), None)
    helper = None
    if offloaded:
        import subprocess

        code = ("import sys; from fastconv.backends.numba_backend import warmup; "
                "warmup.warm_items(sys.argv[1:])")
        helper = subprocess.Popen([sys.executable, "-c", code, *offloaded],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        warm_items([item for item in items if item not in offloaded], ready)
    finally:
        if helper is not None:
            helper.wait()
    warm_items(offloaded, ready)   # cache hits now (or compiled here if the helper failed)
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
