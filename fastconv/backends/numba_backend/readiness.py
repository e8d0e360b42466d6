"""Which kernels can run without compiling: compiled in this process, or indexed in
numba's on-disk cache.

Autotuning times only the algorithms that are ready (`fastconv.backends.numba_backend.
select`), so a first call never waits for the compilation of a candidate it may not
keep; `background` compiles the others meanwhile.  An algorithm that has run in this
process also counts as ready: its kernels for the paths it took are loaded.
"""

from __future__ import annotations

import importlib

import numba

from fastconv.backends.numba_backend import kernels as _kernels_package

_ready: set = set()          # (dtype name, group) known ready: readiness only grows
_ran: set = set()            # (dtype name, algorithm) run in this process


def module_kernels(module) -> list:
    """The public jitted entry points defined in ``module``."""
    return [obj for name, obj in vars(module).items()
            if isinstance(obj, numba.core.registry.CPUDispatcher) and not name.startswith("_")
            and obj.py_func.__module__ == module.__name__]


def algorithm_kernels(algorithm) -> list:
    """The public kernels of ``kernels/<name>.py`` that an algorithm module's warm-up
    compiles (``KERNELS`` names another algorithm's module where it shares that one's
    kernels; ``LAZY_KERNELS`` are compiled on first use); [] when that module does not
    exist."""
    name = getattr(algorithm, "KERNELS", algorithm.NAME)
    try:
        module = importlib.import_module(f"{_kernels_package.__name__}.{name}")
    except ImportError:
        return []
    lazy = getattr(algorithm, "LAZY_KERNELS", ())
    return [kernel for kernel in module_kernels(module) if kernel.py_func.__name__ not in lazy]


def kernel_ready(kernel, dtype_name: str) -> bool:
    """Compiled for ``dtype_name`` in this process, or indexed in numba's on-disk cache
    (read through numba internals: if they change, the answer is False)."""
    if any(dtype_name in str(signature) for signature in kernel.signatures):
        return True
    try:
        return any(dtype_name in str(key[0]) for key in kernel._cache._cache_file._load_index())
    except Exception:  # noqa: BLE001 - numba internals moved, or no cache: "not ready"
        return False


def kernels_ready(group: str, dtype_name: str, kernels) -> bool:
    """Whether every one of ``kernels`` (the group ``group``'s) is ready; a True answer
    is remembered (the cache only grows while a process runs)."""
    if (dtype_name, group) in _ready:
        return True
    if kernels and all(kernel_ready(kernel, dtype_name) for kernel in kernels):
        _ready.add((dtype_name, group))
        return True
    return False


def algorithm_ready(algorithm, dtype_name: str) -> bool:
    """Whether timing ``algorithm`` (a module of `select.ALGORITHMS`) compiles nothing
    for the paths a warm-up takes: it ran in this process, or its kernels are ready."""
    return ((dtype_name, algorithm.NAME) in _ran
            or kernels_ready(algorithm.NAME, dtype_name, algorithm_kernels(algorithm)))


def note_ran(algorithm_name: str, dtype_name: str) -> None:
    _ran.add((dtype_name, algorithm_name))


def forget() -> None:
    """Drop what this process knows (tests that empty the cache)."""
    _ready.clear()
    _ran.clear()
