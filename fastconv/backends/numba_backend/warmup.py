"""Compile kernels before a run: which groups a model's ops need on this CPU
(`groups_for`), which of them first and which in the background (`compile_plan`),
`warmup`, and what the compile cache already holds (`kernels_cached`)."""

from __future__ import annotations

import threading
import time

import numba
import numpy as np

from fastconv.backends.numba_backend import background as background_compile
from fastconv.backends.numba_backend import (compile_clock, compile_watch, dense, elementwise, general, jit_cache,
                                             norm, pool, readiness, select, unfold)
from fastconv.backends.numba_backend.kernels import blocked as _blocked
from fastconv.backends.numba_backend.kernels import dense as _dense
from fastconv.backends.numba_backend.kernels import depthwise as _depthwise
from fastconv.backends.numba_backend.kernels import elementwise as _elementwise
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
                  _grouped, _unfold_dilated, _phases, _elementwise)

# Warm-up groups besides one per convolution algorithm (`select.ALGORITHMS`), each
# with the jitted entry points it compiles (for `kernels_cached`); None: every public
# kernel of the modules.
_OTHER_GROUPS = {
    "loss": ((_pool,), ("softmax_cross_entropy",)),
    "pool": ((_pool,), ("avg_pool2d_forward", "avg_pool2d_backward", "max_pool2d_forward",
                        "max_pool2d_backward")),
    "norm": ((_norm,), ("batch_norm_forward", "batch_norm_backward")),
    "dense": ((_dense,), None),                     # fully connected layers
    "elementwise": ((_elementwise,), None),         # ReLU, clamp, sums
    "unfold": ((_cols,), ("im2col_into", "col2im_from")),
    # dilated, grouped, depthwise and transposed convolution
    "general": ((_depthwise, _grouped, _unfold_dilated, _phases), None),
}


def _can_run(name: str, module) -> bool:
    """An algorithm autotuning may choose on this CPU (or the one forced)."""
    return getattr(module, "worth_timing", lambda: True)() or select.get_conv_algorithm_mode() == name


def groups() -> tuple[str, ...]:
    """Every warm-up group this CPU can use: one per convolution algorithm that can be
    chosen here (read at call time: new algorithms join; `blocked` only where its
    registers exist), then the others."""
    return tuple(name for name, module in select.ALGORITHMS.items() if _can_run(name, module)) \
        + tuple(_OTHER_GROUPS)


# An op `fastconv.startup.ops_of` adds for a 3x3 stride-1 convolution layer when it
# does not know the layer's geometry otherwise (``("conv2d", kernel, stride, padding)``).
CONV_3X3_STRIDE1 = "conv2d_3x3_stride1"
FIRST_ALGORITHM = select.FIRST_ALGORITHM


def _conv_algorithms(kernel=(1, 1), stride=(1, 1), padding=(0, 0), any_shape=False) -> set:
    """The algorithms that may run a convolution of this geometry here: the one forced
    (and `FIRST_ALGORITHM` where it cannot run it), or the autotuning candidates."""
    mode = select.get_conv_algorithm_mode()
    x_shape, w_shape = (1, 1, 64, 64), (1, 1, *kernel)
    if mode in select.ALGORITHMS:
        if select.ALGORITHMS[mode].supports(x_shape, w_shape, stride, padding) and not any_shape:
            return {mode}
        return {mode, FIRST_ALGORITHM}
    found = set(select.candidates(x_shape, w_shape, stride, padding))
    if any_shape:      # the algorithms that run any geometry
        found &= set(select.candidates((1, 1, 9, 9), (1, 1, 5, 4), (2, 1), (0, 0)))
    return found


def groups_for(ops=None) -> tuple[str, ...]:
    """The groups that compile ``ops``: names of `fastconv.functional` kernels (e.g.
    ``{"conv2d_relu_avgpool2", "softmax_cross_entropy"}``), `CONV_3X3_STRIDE1`, and
    ``("conv2d", kernel, stride, padding)`` for a layer's geometry (then only its
    candidates compile); None or an op this function does not know: every group."""
    if ops is None:
        return groups()
    needed = set()
    for op in ops:
        if isinstance(op, tuple) and op[0] == "conv2d":
            needed.update(_conv_algorithms(*op[1:]))
        elif op == CONV_3X3_STRIDE1:
            needed.update(_conv_algorithms((3, 3), (1, 1), (1, 1)))
        elif op.startswith("conv2d") and op != "conv2d_general":
            needed.update(_conv_algorithms(any_shape=True))
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
        elif op in ("relu", "clamp", "add", "channel_affine"):
            needed.add("elementwise")
        elif op in ("im2col", "col2im"):
            needed.add("unfold")
        elif op in ("conv2d_general", "conv_transpose2d"):
            needed.add("general")
        else:
            return groups()
    return tuple(group for group in groups() if group in needed)


def compile_plan(ops=None, background: bool | None = None) -> tuple[tuple, tuple]:
    """(groups to compile before the first step, groups a helper process compiles
    while it runs).  Without background compilation: everything first.  With it, one
    convolution algorithm (`FIRST_ALGORITHM`) first and the other candidates later --
    and the separate pooling kernels too, when only the algorithms that do not fuse
    report 000's conv-ReLU-pool block need them."""
    needed = groups_for(ops)
    algorithms = [group for group in needed if group in select.ALGORITHMS]
    if not (background_compile.enabled() if background is None else background) or len(algorithms) < 2:
        return needed, ()
    first = FIRST_ALGORITHM if FIRST_ALGORITHM in algorithms else algorithms[0]
    later = [group for group in algorithms if group != first]
    plain_ops = {op for op in (ops or ()) if isinstance(op, str)}
    if ("pool" in needed and select.ALGORITHMS[first].FUSES_POOL
            and not plain_ops & {"avg_pool2d", "max_pool2d"}):
        later.append("pool")
    return tuple(group for group in needed if group not in later), tuple(later)


def _warm(dtype, group: str, part: str | None = None) -> None:
    """Run every kernel of ``group`` once on tiny ``dtype`` inputs (all code paths);
    of a convolution algorithm, only its forward or backward kernels with ``part``
    (`compile_clock.PARTS`)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
    w = rng.standard_normal((3, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype)
    if group in select.ALGORITHMS:
        algorithm = select.ALGORITHMS[group]
        if not algorithm.supports(x.shape, w.shape, (1, 1), (1, 1)):
            return
        if part == "backward":    # a stand-in output: 3x3, padding 1, stride 1 keep x's size
            y = np.ones((x.shape[0], w.shape[0], *x.shape[2:]), dtype)
        else:
            y = algorithm.forward(x, w, b, (1, 1), (1, 1), True)
        if part != "forward":
            algorithm.backward(np.ones_like(y), x, w, y, (1, 1), (1, 1), True)
        if part != "backward" and hasattr(algorithm, "warm"):   # paths the tiny problem does not take
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
    elif group == "elementwise":
        elementwise.warm(dtype)
    else:
        raise ValueError(f"unknown warm-up group {group!r}; groups: {', '.join(groups())}")


# --------------------------------------------------------------------------- cache state
def group_kernels(group: str) -> list:
    """The jitted entry points ``group`` compiles."""
    if group in _OTHER_GROUPS:
        modules, names = _OTHER_GROUPS[group]
        if names is not None:
            return [getattr(modules[0], name) for name in names]
        return [kernel for module in modules for kernel in readiness.module_kernels(module)]
    algorithm = select.ALGORITHMS.get(group)
    return [] if algorithm is None else readiness.algorithm_kernels(algorithm)


def group_ready(dtype_name: str, group: str) -> bool:
    """Whether loading ``group``'s kernels for ``dtype_name`` needs no compilation."""
    return readiness.kernels_ready(group, dtype_name, group_kernels(group))


def _items(dtypes, groups_) -> list:
    return [f"{np.dtype(dtype).name}:{group}" for dtype in dtypes for group in groups_]


def _cold(items) -> list:
    return [item for item in items if not group_ready(*item.split(":"))]


def _parts(items) -> list:
    """``items`` with each convolution algorithm's group split into its forward and
    backward parts (`compile_clock.PARTS`), for two processes to share: one large
    group (direct convolution: 14-17 s) then no longer leaves the other one idle."""
    split = []
    for item in items:
        if item.split(":")[1] in select.ALGORITHMS:
            split += [f"{item}:{part}" for part in compile_clock.PARTS]
        else:
            split.append(item)
    return split


def kernels_cached(dtypes=(np.float32,), ops=None) -> bool:
    """Whether `warmup` of ``ops`` for ``dtypes`` only loads from numba's cache,
    compiling nothing before the first step (a hint: False when unsure)."""
    return not _cold(_items(dtypes, compile_plan(ops)[0]))


def estimated_seconds(dtypes=(np.float32,), ops=None, jobs: int = 1) -> float:
    """Wall seconds `warmup` of ``ops`` waits for compilation (`compile_clock`)."""
    cold = _cold(_items(dtypes, compile_plan(ops)[0]))
    return compile_clock.estimate(_parts(cold) if jobs > 1 else cold, jobs)[0]


def cache_note() -> str:
    """What happens to the compiled kernels, for the user."""
    if jit_cache.disk_cache_works():
        return ("numba turns them into machine code once and keeps it in its on-disk cache: later runs "
                "load them in about a second")
    return ("no folder is writable for numba's cache, so every run compiles them again (point "
            "FASTCONV_CACHE_DIR or NUMBA_CACHE_DIR at a writable folder)")


def estimate_basis(dtypes=(np.float32,), ops=None) -> str:
    """Where `estimated_seconds` comes from, for the user."""
    known = compile_clock.estimate(_cold(_items(dtypes, compile_plan(ops)[0])))[1]
    return ("from compile times measured on this machine" if known
            else f"measured on {compile_clock.REFERENCE_MACHINE}; longer on a slower or busy machine")


# --------------------------------------------------------------------------- warmup
def warm_items(items, progress=None) -> None:
    """Compile (or load) each ``"dtype:group"`` or ``"dtype:group:part"`` (`_parts`);
    the seconds of one that was cold are recorded."""
    for item in items:
        dtype, group, *part = item.split(":")
        cold = not group_ready(dtype, group)
        start = time.perf_counter()
        _warm(dtype, group, *part)
        if cold:
            compile_clock.record(item, time.perf_counter() - start)
        if progress is not None:
            progress(item)


def _share(items) -> tuple[list, list]:
    """Split cold ``items`` between this process and a helper, longest first, so that
    both finish at about the same time."""
    mine, theirs, load = [], [], [0.0, 0.0]
    for item in sorted(items, key=lambda item: -compile_clock.seconds(item)[0]):
        side = 0 if load[0] <= load[1] else 1
        (mine if side == 0 else theirs).append(item)
        load[side] += compile_clock.seconds(item)[0]
    return mine, theirs


last_run: dict = {}
"""What the latest `warmup` did: the items compiled ``here`` and by the ``helper``,
those it reported ready, its exit code, and those left to the ``background``."""


def warmup(dtypes=(np.float32,), jobs: int = 1, ops=None, progress=None, background=None) -> float:
    """Compile (or load from numba's cache) the kernels ``ops`` need first (names of
    `fastconv.functional` kernels and layer geometries, `groups_for`; None: every group
    this CPU can use) for ``dtypes``; returns seconds.

    Runs each kernel once on tiny inputs -- every convolution algorithm, forward and
    backward, with and without ReLU/mask -- so that no later call pays compilation.
    With ``jobs=2`` a helper process compiles about half of the cold groups into
    numba's cache while this one compiles the others, then this process loads them
    (each group is compiled by one process only; a convolution algorithm's forward
    and backward kernels count as two, `_parts`).  With background compilation
    (`compile_plan`), the groups only the other autotuning candidates need are left to
    a low-priority helper that keeps compiling while the run works.  ``progress(done,
    total, item)`` is called once before anything compiles (``item`` None) and after
    each ``"dtype:group"`` item is ready.
    """
    with compile_watch.quiet():          # its progress is ``progress``'s to tell
        return _warmup(dtypes, jobs, ops, progress, background)


def _warmup(dtypes, jobs, ops, progress, background) -> float:
    start = time.perf_counter()
    now, later = compile_plan(ops, background)
    items = _items(dtypes, now)
    if jobs > 1:
        cold = _cold(items)
        parts = _parts(cold)
        items = [item for item in items if item not in cold] + parts
        theirs = _share(parts)[1]
    else:
        theirs = []
    mine = [item for item in items if item not in theirs]
    done = []
    lock = threading.Lock()

    def ready(item):
        with lock:
            done.append(item)
            if progress is not None:
                progress(len(done), len(items), item)

    if progress is not None:
        progress(0, len(items), None)
    helper = background_compile.Helper(theirs, on_ready=ready) if theirs else None
    try:
        warm_items(mine, ready)
        if helper is not None:
            helper.wait()
    except BaseException:            # Ctrl-C: the helper is in its own session, stop it too
        if helper is not None:
            helper.process.kill()
        raise
    missing = helper.missing() if helper is not None else []
    last_run.update(here=mine, helper=theirs, helper_ready=list(helper.ready) if helper else [],
                    helper_exit=helper.returncode if helper else None, background=_items(dtypes, later))
    warm_items(missing, ready)        # what a failed helper left (else: cache loads)
    for item in theirs:
        if item not in missing:
            _warm(*item.split(":"))   # load what the helper compiled into this process
    if later:
        background_compile.request(_items(dtypes, later))
    return time.perf_counter() - start


def last_warmup() -> dict:
    """`last_run`, for callers that hold the backend rather than this module."""
    return dict(last_run)


def compiled_signatures() -> dict:
    """``kernel name -> number of compiled specialisations`` (should be <= 2 each)."""
    kernels = {}
    for module in KERNEL_MODULES:
        for attr in dir(module):
            obj = getattr(module, attr)
            if isinstance(obj, numba.core.registry.CPUDispatcher) and not attr.startswith("_"):
                kernels[attr] = len(obj.signatures)
    return kernels
