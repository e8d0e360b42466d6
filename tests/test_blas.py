"""The kernels' GEMM (`kernels/blas.py`) and the choice of BLAS behind it (`blas.py`)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")
from numba import njit  # noqa: E402

from fastconv.backends.numba_backend import blas  # noqa: E402
from fastconv.backends.numba_backend.kernels import blas as kernel_blas  # noqa: E402


@njit(cache=True)
def _gemm(a, b, out, accumulate, transpose_a, transpose_b):
    """``a`` / ``b`` are passed as ``.T`` views when asked (columns contiguous)."""
    if transpose_a and transpose_b:
        kernel_blas.gemm(a.T, b.T, out, accumulate)
    elif transpose_a:
        kernel_blas.gemm(a.T, b, out, accumulate)
    elif transpose_b:
        kernel_blas.gemm(a, b.T, out, accumulate)
    else:
        kernel_blas.gemm(a, b, out, accumulate)


@pytest.mark.parametrize("seed", range(40))
def test_gemm_matches_matmul(seed, dtype):
    """Random sizes (1 included), either operand transposed, row slices of bigger
    arrays for out, overwrite and accumulate: against float64 numpy."""
    rng = np.random.default_rng(seed)
    m, k, n = (int(v) for v in rng.integers(1, 70, 3))
    transpose_a, transpose_b = bool(seed & 1), bool(seed & 2)
    a_stored = rng.standard_normal((k, m) if transpose_a else (m, k)).astype(dtype)
    b_stored = rng.standard_normal((n, k) if transpose_b else (k, n)).astype(dtype)
    a = a_stored.T if transpose_a else a_stored
    b = b_stored.T if transpose_b else b_stored
    big = rng.standard_normal((m + 5, n)).astype(dtype)
    before = big.copy()
    accumulate = bool(seed & 4)
    _gemm(a_stored, b_stored, big[2:2 + m], accumulate, transpose_a, transpose_b)
    want = a.astype(np.float64) @ b + (before[2:2 + m] if accumulate else 0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(big[2:2 + m], want, rtol=tol, atol=tol * np.abs(want).max() * np.sqrt(k))
    np.testing.assert_array_equal(big[:2], before[:2])          # rows outside out untouched
    np.testing.assert_array_equal(big[2 + m:], before[2 + m:])


def test_provider_is_known():
    assert blas.provider() in ("mkl", "openblas", "none")
    if blas._mkl_library() is not None and os.environ.get("FASTCONV_BLAS", "auto") == "auto":
        from fastconv.system.cpu import cpu_vendor

        assert (blas.provider() == "mkl") == (cpu_vendor() == "GenuineIntel")


def _own_openblas_or_skip():
    if blas.provider() != "openblas" or blas._package_library("scipy-openblas32", "libscipy_openblas") is None:
        pytest.skip("the kernels' GEMMs are not on fastconv's own OpenBLAS here")


def test_own_openblas_is_bound_on_one_thread():
    _own_openblas_or_skip()
    assert blas.runs_on_caller_thread()
    name, version, _core = blas.describe().split()
    assert (name, version) == ("openblas", importlib.metadata.version("scipy-openblas32"))


def test_own_openblas_goes_back_to_one_thread_after_threadpool_limits():
    """``threadpool_limits(n)`` (the benchmark runner's, a user's) sets every OpenBLAS in
    the process; the kernels' next GEMM call puts fastconv's copy back on one thread."""
    _own_openblas_or_skip()
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import fastconv
    from fastconv import functional as F
    from fastconv.backends import numba_backend as NB

    def own_threads():
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                if "scipy_openblas32" in lib["filepath"]]

    with threadpoolctl.threadpool_limits(2), fastconv.use_backend("numba"):
        assert own_threads() == [2]
        NB.set_conv_algorithm("gemm")
        try:
            F.conv2d(np.ones((4, 8, 10, 10), np.float32), np.ones((16, 8, 3, 3), np.float32), None, 1, 1)
        finally:
            NB.set_conv_algorithm(None)
        assert own_threads() == [1]


def _blas_in_subprocess(**environ) -> list:
    code = ("import os\n"
            "from fastconv.backends.numba_backend import blas\n"
            "print(blas.describe().split()[-1], os.environ.get('OPENBLAS_CORETYPE'))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "FASTCONV_OPENBLAS_CORETYPE")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**env, **environ})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_own_openblas_core_type_is_fastconvs_to_choose():
    """OPENBLAS_CORETYPE (which this project's machines set to Haswell for every
    process) is left to NumPy's and SciPy's copies: fastconv's copy takes OpenBLAS's
    own detection, or FASTCONV_OPENBLAS_CORETYPE."""
    _own_openblas_or_skip()
    detected, _ = _blas_in_subprocess()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        has_avx2 = " avx2" in f.read()
    if not has_avx2 or detected == "Haswell":
        pytest.skip(f"OpenBLAS detects {detected} here: no other core type to tell apart")
    assert _blas_in_subprocess(OPENBLAS_CORETYPE="Haswell") == [detected, "Haswell"]   # restored after
    assert _blas_in_subprocess(FASTCONV_OPENBLAS_CORETYPE="Haswell")[0] == "Haswell"


def _conv_in_subprocess(blas_name: str) -> subprocess.CompletedProcess:
    code = (
        "import numpy as np, fastconv\n"
        "from fastconv import functional as F\n"
        "from fastconv.backends.numba_backend.blas import provider\n"
        "from fastconv.backends import numba_backend as NB\n"
        "fastconv.set_backend('numba'); NB.set_conv_algorithm('gemm')\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.standard_normal((3, 5, 9, 8)); w = rng.standard_normal((7, 5, 3, 2))\n"
        "y = F.conv2d(x, w, None, 1, 1)\n"
        "print(provider(), repr(float(np.abs(y).sum())))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "FASTCONV_BLAS": blas_name})


def test_openblas_forced_gives_the_same_convolution():
    """FASTCONV_BLAS=openblas switches the kernels' library (numba's cache holds the
    kernels by symbol name, so both processes load the same cached code)."""
    auto = _conv_in_subprocess("auto")
    forced = _conv_in_subprocess("openblas")
    assert auto.returncode == 0 and forced.returncode == 0, auto.stderr + forced.stderr
    assert forced.stdout.split()[0] == "openblas"
    assert float(auto.stdout.split()[1]) == pytest.approx(float(forced.stdout.split()[1]), rel=1e-12)


def test_bad_blas_name_is_an_error():
    result = _conv_in_subprocess("atlas")
    assert result.returncode != 0
    assert "FASTCONV_BLAS" in result.stderr and "atlas" in result.stderr
