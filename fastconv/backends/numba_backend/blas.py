"""Which BLAS the kernels' GEMMs call: Intel MKL (the ``mkl`` package) or SciPy's OpenBLAS.

The kernels call the Fortran ``sgemm`` / ``dgemm`` through two symbols,
``fastconv_sgemm`` and ``fastconv_dgemm`` (`kernels/blas.py`), which this module
points at the chosen library before any kernel runs.  Cached kernels refer to the
symbols by name, so numba's on-disk cache stays valid across processes and
providers.

Why MKL: interleaved in one process, on every GEMM shape the backend issues (16-512
rows, 16-4608 deep, 16-16384 columns), single-threaded MKL ran 1.1-2.9x (two runs) faster than
SciPy's OpenBLAS on this project's Intel Xeon (``bench/blas_compare.py``).  Not
measured on other vendors' CPUs, so ``auto`` takes MKL on Intel CPUs only.
``FASTCONV_BLAS=mkl|openblas|auto`` chooses; read once, when the backend loads.
MKL runs with its sequential threading layer: the numba threads are the parallelism.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.metadata
import os
import sys

import llvmlite.binding as llvm

from fastconv import env
from fastconv.machine import cpu_vendor

PROVIDERS = ("auto", "mkl", "openblas")
_MKL_SEQUENTIAL = 1           # MKL_THREADING_SEQUENTIAL for mkl_set_threading_layer
_provider: str | None = None


def _mkl_library() -> str | None:
    """Path of the ``mkl`` package's libmkl_rt, or None when it is not installed."""
    try:
        files = importlib.metadata.distribution("mkl").files or []
        found = [str(f.locate()) for f in files if os.path.basename(str(f)).startswith("libmkl_rt.so")]
    except importlib.metadata.PackageNotFoundError:
        found = []
    found += glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*"))
    return next((path for path in found if os.path.exists(path)), None)


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


def _openblas_gemms():
    """(sgemm, dgemm) addresses in SciPy's BLAS (what numba's ``np.dot`` calls)."""
    from numba.extending import get_cython_function_address

    return tuple(get_cython_function_address("scipy.linalg.cython_blas", name) for name in ("sgemm", "dgemm"))


def provider() -> str:
    """The BLAS the kernels call: "mkl", "openblas", or "none" (no SciPy: the GEMM
    algorithms then report unavailable); chosen and bound on first call."""
    global _provider
    if _provider is None:
        wanted = env.choice(env.BLAS, PROVIDERS) or "auto"
        gemms = None
        if wanted == "mkl" or (wanted == "auto" and cpu_vendor() == "GenuineIntel"):
            gemms = _mkl_gemms()
            if gemms is None and wanted == "mkl":
                raise ImportError(f"{env.BLAS}=mkl but MKL cannot be loaded: pip install mkl")
        name = "mkl" if gemms is not None else "openblas"
        if gemms is None:
            try:
                gemms = _openblas_gemms()
            except (ImportError, ValueError):
                gemms = (0, 0)
                name = "none"
        for symbol, address in zip(("fastconv_sgemm", "fastconv_dgemm"), gemms):
            llvm.add_symbol(symbol, address)
        _provider = name
    return _provider
