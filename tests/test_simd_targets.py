"""Every target's vector width and register blocks: the target read from LLVM's
feature strings, the blocks within their register budgets, and the blocked and
vector-kernel tests run again for the AVX2 and SSE targets this host can execute
(`tests/simd_targets.py`).  The AVX-512 blocks are tested by the plain run on an
AVX-512 host; an AVX2 host cannot execute them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

from fastconv.backends.numba_backend.kernels import blocked_tiles, simd  # noqa: E402
from tests.simd_targets import TARGETS, target_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The tests of every kernel built on `simd` vectors.
VECTOR_TESTS = ("tests/test_conv_blocked.py", "tests/test_conv_skinny.py", "tests/test_conv_packed.py",
                "tests/test_convops_numba.py::test_depthwise_stacks_against_loops",
                "tests/test_convops_numba.py::test_stride2_depthwise_by_rows_against_loops",
                "tests/test_convops_numba.py::test_grouped_layers_run_blocked_where_its_blocks_fill")


@pytest.mark.parametrize("features, machine, want", [
    ("+avx,+avx2,+fma,+avx512f,+avx512bw", "x86_64", (512, 32, True)),
    ("+avx,+avx2,+fma,-avx512f,-avx512bw", "x86_64", (256, 16, True)),
    ("+avx,-avx2,-fma", "x86_64", (256, 16, False)),
    ("+sse2,+sse4.2,-avx,-fma", "x86_64", (128, 16, False)),
    ("", "x86_64", (128, 16, False)),
    ("+neon,+fp-armv8", "aarch64", (128, 32, True)),
])
def test_target_of_features(features, machine, want):
    got = simd.target_of("cpu", features, machine)
    assert (got.vector_bits, got.registers, got.fma) == want


@pytest.mark.parametrize("registers", sorted(blocked_tiles.SHAPES))
def test_register_blocks_fit_their_budget(registers):
    """Accumulators plus one step's operands (the position vectors and a weight
    broadcast; the weight gradient's rows of both operands) fit the registers."""
    rows, vectors, wg = blocked_tiles.SHAPES[registers]
    assert rows * vectors + vectors + 1 <= registers
    assert wg * wg + wg + 1 <= registers


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_vector_kernels_on_target(name):
    """The blocked convolution, the few-column GEMM, the SIMD intrinsics and the
    depthwise stacks against loops, compiled for ``name`` (a subprocess: numba reads the target at start)."""
    env = target_env(name)
    if env is None:
        pytest.skip(f"this CPU cannot run code built for {name}")
    probe = "from fastconv.backends.numba_backend.kernels import simd; print(simd.target().vector_bits)"
    full_env = {**os.environ, **env}
    bits = subprocess.run([sys.executable, "-c", probe], env=full_env, capture_output=True, text=True,
                          check=True, cwd=ROOT).stdout.strip()
    assert bits == {"avx2": "256", "sse": "128"}[name]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *VECTOR_TESTS],
                         env=full_env, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
