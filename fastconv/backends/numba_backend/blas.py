"""Which BLAS the kernels' GEMMs call: Intel MKL (the ``mkl`` package) or OpenBLAS.

The kernels call the Fortran ``sgemm`` / ``dgemm`` through two symbols,
``fastconv_sgemm`` and ``fastconv_dgemm`` (`kernels/blas.py`), which this module
points at the chosen library before any kernel runs.  Cached kernels refer to the
symbols by name, so numba's on-disk cache stays valid across processes and
providers.

OpenBLAS is fastconv's own copy (the ``scipy-openblas32`` package, loaded by path:
nothing else in the process uses that file), on one thread -- the numba threads are
the parallelism -- and with the kernels OpenBLAS detects for this CPU.
``OPENBLAS_CORETYPE`` is not applied to it (``FASTCONV_OPENBLAS_CORETYPE`` is):
this project's machines set ``OPENBLAS_CORETYPE=Haswell`` for every process, which
puts an AVX-512 CPU (AMD EPYC Zen 5, detected as SkylakeX) on AVX2 kernels at about
half the speed (SkylakeX 1.2-2.0x Haswell on the shapes the kernels issue, but a
16-deep one; `bench/blas_compare.py`, 2026-12-02).  NumPy's and SciPy's own OpenBLAS
copies keep obeying it.  Without that package the kernels share SciPy's OpenBLAS
(pinned to one thread around each call, `runtime.single_threaded_blas`).

Why MKL on Intel, when installed (``pip install fastconv[mkl]``; it is 0.7 GB, so not a
default): interleaved in one process, on every GEMM shape the backend issues (16-512
rows, 16-4608 deep, 16-16384 columns), single-threaded MKL ran 1.1-2.9x faster than
SciPy's OpenBLAS on an Intel Xeon (not re-measured since: no Intel machine).  On AMD
EPYCs MKL runs AVX2 kernels: 0.52-0.71x OpenBLAS's SkylakeX kernels on a Zen 5 and
0.8-1.4x (median 0.98x) on a Zen 4, so ``auto`` takes MKL on Intel CPUs only.
``FASTCONV_BLAS=mkl|openblas|auto`` chooses; read once, when the backend loads.  MKL runs
with its sequential threading layer.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import importlib.metadata
import os
import sys

import llvmlite.binding as llvm

from fastconv.system import env
from fastconv.system.cpu import cpu_vendor

PROVIDERS = ("auto", "mkl", "openblas")
_MKL_SEQUENTIAL = 1           # MKL_THREADING_SEQUENTIAL for mkl_set_threading_layer
_provider: str | None = None
_library = ""                 # what `describe` names: "mkl", "openblas 0.3.34 SkylakeX", ...
_own_openblas = None          # fastconv's OpenBLAS (ctypes handle) when it is the one bound


def _package_library(package: str, prefix: str) -> str | None:
    """Path of the first file named ``prefix*`` that the installed ``package`` holds."""
    try:
        files = importlib.metadata.distribution(package).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [str(f.locate()) for f in files if os.path.basename(str(f)).startswith(prefix)]
    return next((path for path in found if os.path.exists(path)), None)


def _mkl_library() -> str | None:
    """Path of the ``mkl`` package's libmkl_rt, or None when it is not installed."""
    found = _package_library("mkl", "libmkl_rt.so")
    return found or next(iter(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*"))), None)


def _mkl_gemms():
    """(sgemm, dgemm) addresses in MKL, set to run sequentially; None if unavailable."""
    path = _mkl_library()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        lib.MKL_Set_Threading_Layer(ctypes.c_int(_MKL_SEQUENTIAL))
        return tuple(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in ("sgemm_", "dgemm_"))
    except (OSError, AttributeError):
        return None


def _set_environment(values: dict) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def _environment(settings: dict):
    """``os.environ`` with ``settings`` applied (None: unset) inside the block."""
    saved = {name: os.environ.get(name) for name in settings}
    _set_environment(settings)
    try:
        yield
    finally:
        _set_environment(saved)


def _own_openblas_gemms():
    """(description, (sgemm, dgemm) addresses, ctypes handle) of the ``scipy-openblas32``
    package's OpenBLAS, loaded on one thread (so it starts no thread pool) with
    ``FASTCONV_OPENBLAS_CORETYPE`` or its own CPU detection; None if that package is
    missing."""
    path = _package_library("scipy-openblas32", "libscipy_openblas")
    if path is None:
        return None
    settings = {"OPENBLAS_NUM_THREADS": "1", "OPENBLAS_CORETYPE": env.raw(env.OPENBLAS_CORETYPE) or None}
    try:
        with _environment(settings):      # the library reads both as it loads
            lib = ctypes.CDLL(path)
    except OSError:
        return None
    try:
        lib.scipy_openblas_set_num_threads(ctypes.c_int(1))
        lib.scipy_openblas_get_corename.restype = ctypes.c_char_p
        core = lib.scipy_openblas_get_corename().decode()
        version = importlib.metadata.version("scipy-openblas32")
        gemms = tuple(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
                      for name in ("scipy_sgemm_", "scipy_dgemm_"))
    except (AttributeError, importlib.metadata.PackageNotFoundError):
        return None
    return f"openblas {version} {core}", gemms, lib


def _scipy_openblas_gemms():
    """(description, (sgemm, dgemm) addresses, None) of SciPy's BLAS (what numba's
    ``np.dot`` calls)."""
    from numba.extending import get_cython_function_address

    return "openblas (SciPy's)", tuple(get_cython_function_address("scipy.linalg.cython_blas", name)
                                       for name in ("sgemm", "dgemm")), None


def provider() -> str:
    """The BLAS the kernels call: "mkl", "openblas", or "none" (no OpenBLAS package
    and no SciPy: the GEMM algorithms then report unavailable); chosen and bound on
    first call."""
    global _provider, _library, _own_openblas
    if _provider is None:
        wanted = env.choice(env.BLAS, PROVIDERS) or "auto"
        gemms = None
        if wanted == "mkl" or (wanted == "auto" and cpu_vendor() == "GenuineIntel"):
            gemms = _mkl_gemms()
            if gemms is None and wanted == "mkl":
                raise ImportError(f"{env.BLAS}=mkl but MKL cannot be loaded: pip install 'fastconv[mkl]'")
        name, _library = "mkl", "mkl"
        if gemms is None:
            name, loaded = "openblas", _own_openblas_gemms()
            if loaded is None:
                try:
                    loaded = _scipy_openblas_gemms()
                except (ImportError, ValueError):
                    name, loaded = "none", ("none", (0, 0), None)
            _library, gemms, _own_openblas = loaded
        for symbol, address in zip(("fastconv_sgemm", "fastconv_dgemm"), gemms):
            llvm.add_symbol(symbol, address)
        _provider = name
    return _provider


def describe() -> str:
    """The bound library with its version and kernels, e.g. "openblas 0.3.34 SkylakeX"."""
    provider()
    return _library


def keep_on_caller_thread() -> None:
    """Put fastconv's OpenBLAS back on one thread if something changed that
    (threadpoolctl's ``threadpool_limits(n)`` sets every OpenBLAS in the process):
    otherwise each numba thread's GEMM would start OpenBLAS threads of its own
    (measured: the zoo's networks ran 1.4-2x slower with both cores oversubscribed)."""
    if _own_openblas is not None and _own_openblas.scipy_openblas_get_num_threads() != 1:
        _own_openblas.scipy_openblas_set_num_threads(1)


def runs_on_caller_thread() -> bool:
    """Whether the bound library never starts threads of its own (MKL sequential,
    fastconv's OpenBLAS): then nothing needs pinning around the kernels' calls."""
    return provider() == "mkl" or _own_openblas is not None
