"""The few-column forward GEMM (``kernels/gemm_skinny.py``, `gemm._skinny`) against
plain loops: random geometries whose batch has at most `_SKINNY_MAX_COLUMNS` output
positions and a depth of whole vectors (N=1, C_out=1, odd C_out, strides, padding,
strided 1x1 and rectangular kernels), bias and fused ReLU; the neighbouring problems that
stay on the BLAS path give the same results."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from fastconv.backends import numba_backend as NB  # noqa: E402
from fastconv.backends.numba_backend.kernels import gemm_skinny, simd  # noqa: E402
from tests import loops  # noqa: E402
from tests.test_conv_algorithms import bound, relative_error  # noqa: E402

G = NB.ALGORITHMS["gemm"]
pytestmark = pytest.mark.skipif(not G.available(), reason="no BLAS: the gemm algorithm cannot run")


def conv_geometry(rng, max_kernel, max_size, accept):
    """A random ``(n, (kh, kw), stride, padding, (height, width))`` with at least one
    output per axis, drawn until ``accept(columns, kernel, stride, padding)`` (columns:
    the whole batch's output positions)."""
    while True:
        kh, kw = (int(v) for v in rng.integers(1, max_kernel + 1, size=2))
        stride = tuple(int(v) for v in rng.integers(1, 3, size=2))
        padding = (int(rng.integers(0, kh)), int(rng.integers(0, kw)))
        height, width = (int(v) for v in rng.integers(1, max_size + 1, size=2))
        out = [loops.out_size(s, k, st, p) for s, k, st, p in
               zip((height, width), (kh, kw), stride, padding)]
        n = int(rng.integers(1, 4))
        if min(out) >= 1 and accept(n * out[0] * out[1], (kh, kw), stride, padding):
            return n, (kh, kw), stride, padding, (height, width)


def conv_arrays(rng, n, c_in, c_out, kernel, hw, dtype):
    """Standard-normal ``(x, w, b)`` of a convolution, drawn in that order."""
    x = rng.standard_normal((n, c_in, *hw)).astype(dtype)
    w = rng.standard_normal((c_out, c_in, *kernel)).astype(dtype)
    return x, w, rng.standard_normal(c_out).astype(dtype)


def skinny_problem(rng, dtype):
    lanes = simd.lanes(np.dtype(dtype))
    n, (kh, kw), stride, padding, (height, width) = conv_geometry(
        rng, 3, 5, lambda columns, kernel, stride, padding: columns <= G._SKINNY_MAX_COLUMNS
        and (*kernel, *stride, *padding) != (1, 1, 1, 1, 0, 0))
    # a depth c_in*kh*kw of whole vectors
    c_in = lanes * int(rng.integers(1, 4)) // np.gcd(lanes, kh * kw)
    c_out = 1 if rng.random() < 0.2 else int(rng.integers(2, 19))
    x, w, b = conv_arrays(rng, n, c_in, c_out, (kh, kw), (height, width), dtype)
    return x, w, b, stride, padding


@pytest.mark.parametrize("seed", range(16))
def test_skinny_forward_matches_loops(seed, dtype):
    rng = np.random.default_rng(seed)
    x, w, b, stride, padding = skinny_problem(rng, dtype)
    out_hw = [loops.out_size(s, k, st, p) for s, k, st, p in zip(x.shape[2:], w.shape[2:], stride, padding)]
    assert G._skinny(x.shape[0] * out_hw[0] * out_hw[1], w[0].size, x.itemsize, False)
    want = loops.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), stride, padding)
    relu = bool(seed % 2)
    got = G.forward(x, w, b, stride, padding, relu)
    assert got.shape == want.shape and got.dtype == x.dtype
    assert relative_error(got, np.maximum(want, 0) if relu else want) < bound(dtype)


def test_im2row_rows_are_the_windows(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    out_h, out_w = loops.out_size(4, 2, 2, 1), loops.out_size(5, 3, 2, 1)
    rows = np.empty((2 * out_h * out_w, 3 * 2 * 3), dtype=dtype)
    gemm_skinny.im2row(x, 2, 3, 2, 2, 1, 1, out_h, out_w, rows)
    cols = loops.im2col(x, (2, 3), (2, 2), (1, 1))           # (N, C*kh*kw, out_h*out_w)
    np.testing.assert_array_equal(rows, cols.transpose(0, 2, 1).reshape(rows.shape))


@pytest.mark.parametrize("columns", ["limit", "limit + 1"])
def test_blas_and_skinny_paths_agree_at_the_limit(columns):
    """Batch sizes either side of the limit: one runs the skinny GEMM, the other the
    BLAS, and both match the loops."""
    rng = np.random.default_rng(5)
    limit = G._SKINNY_MAX_COLUMNS
    n = eval(columns, {"limit": limit})                       # 1x1 outputs: a column per image
    lanes = simd.lanes(np.dtype(np.float32))
    x = rng.standard_normal((n, 2 * lanes, 3, 3)).astype(np.float32)
    w = rng.standard_normal((7, 2 * lanes, 3, 3)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    assert G._skinny(n, w[0].size, 4, False) == (n <= limit)
    want = loops.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (1, 1), (0, 0))
    assert relative_error(G.forward(x, w, b, (1, 1), (0, 0), False), want) < bound(np.float32)


def test_partial_vectors_and_1x1_layers_stay_on_the_blas():
    depth = 4 * simd.lanes(4)
    assert G._skinny(4, depth, 4, False)
    assert not G._skinny(4, 27, 4, False)
    assert not G._skinny(4, depth, 4, True)
