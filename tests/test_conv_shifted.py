"""The shifted-view GEMM algorithm (``numba_backend/shifted.py``) against plain loops
on random geometries: rectangular kernels 1x1-5x5, strides 1-3 (larger than the
kernel included), dilations 1-3, padding up to 3 (wider than the kernel needs), kernels wider than
the image, N=1, C=1, several groups per thread, row bands for small batches, the
fused ReLU's mask, and no grad_x."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from fastconv.backends import numba_backend as NB  # noqa: E402
from tests import loops  # noqa: E402
from tests.test_conv_algorithms import bound, relative_error  # noqa: E402

S = NB.shifted


def random_problem(rng, dtype, n=None):
    kh, kw = (int(v) for v in rng.integers(1, 6, size=2))
    stride = (1, 1) if rng.random() < 0.4 else tuple(int(v) for v in rng.integers(1, 4, size=2))
    dilation = (1, 1) if rng.random() < 0.5 else tuple(int(v) for v in rng.integers(1, 4, size=2))
    ph, pw = (int(v) for v in rng.integers(0, 4, size=2))
    reach = [max(1, d * (k - 1) + 1 - 2 * p) for k, d, p in ((kh, dilation[0], ph), (kw, dilation[1], pw))]
    height, width = (int(rng.integers(low, low + 11)) for low in reach)
    n = int(rng.integers(1, 5)) if n is None else n
    c_in = 1 if rng.random() < 0.25 else int(rng.integers(2, 7))
    c_out = 1 if rng.random() < 0.25 else int(rng.integers(2, 9))
    x = rng.standard_normal((n, c_in, height, width)).astype(dtype)
    w = rng.standard_normal((c_out, c_in, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b, stride, (ph, pw), dilation


def as64(*arrays):
    return [a.astype(np.float64) for a in arrays]


@pytest.mark.parametrize("stack_rows", [False, True])    # `shifted` / `shifted_rows`
@pytest.mark.parametrize("group_bytes", [1, 1 << 20])     # one image per group / the default
@pytest.mark.parametrize("seed", range(8))
def test_shifted_matches_loops(monkeypatch, group_bytes, seed, stack_rows, dtype):
    monkeypatch.setattr(S, "_GROUP_BYTES", group_bytes)
    rng = np.random.default_rng(seed)
    x, w, b, stride, padding, dilation = random_problem(rng, dtype)
    x64, w64, b64 = as64(x, w, b)
    want_y = loops.conv2d_general(x64, w64, b64, stride, padding, dilation, 1)
    y = S.forward(x, w, b, stride, padding, False, dilation, stack_rows)
    assert y.dtype == dtype and y.shape == want_y.shape
    assert relative_error(y, want_y) < bound(dtype)
    y_relu = S.forward(x, w, b, stride, padding, True, dilation, stack_rows)
    np.testing.assert_array_equal(y_relu, np.maximum(y, 0))

    grad_y = rng.standard_normal(y.shape).astype(dtype)
    for mask in (None, y_relu):
        masked = grad_y if mask is None else grad_y * (y_relu > 0)
        want = loops.conv2d_general_backward(masked.astype(np.float64), x64, w64, stride, padding,
                                             dilation, 1)
        got = S.backward(grad_y, x, w, mask, stride, padding, True, dilation, stack_rows)
        for name, g, e in zip(("grad_x", "grad_w", "grad_b"), got, want):
            assert g.dtype == dtype and g.shape == e.shape, name
            assert relative_error(g, e) < bound(dtype), name
        grad_x, grad_w, grad_b = S.backward(grad_y, x, w, mask, stride, padding, False, dilation, stack_rows)
        assert grad_x is None
        np.testing.assert_array_equal(grad_w, got[1])
        np.testing.assert_array_equal(grad_b, got[2])


@pytest.mark.parametrize("stack_rows", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_shifted_row_bands_match_loops(monkeypatch, seed, stack_rows, dtype):
    """A batch smaller than the thread count runs as one group split into bands of
    grid rows: any number of bands (more than there are rows included)."""
    rng = np.random.default_rng(seed + 50)
    x, w, b, stride, padding, dilation = random_problem(rng, dtype, n=int(rng.integers(1, 3)))
    want = loops.conv2d_general(*as64(x, w, b), stride, padding, dilation, 1)
    pitch = S.geometry(x.shape, w.shape, stride, padding, 1, dilation)[0].pitch
    rows = (x.shape[0] - 1) * pitch + want.shape[2]
    bands = int(rng.integers(2, rows + 4))
    monkeypatch.setattr(S, "_plan", lambda n, *args: (bands, n, True))
    y = S.forward(x, w, b, stride, padding, bool(seed % 2), dilation, stack_rows)
    assert relative_error(y, np.maximum(want, 0) if seed % 2 else want) < bound(dtype)


def test_shifted_grid_geometry_shares_borders():
    """A 3x3 'same' layer's grid: rows of W+1 (one zero column between rows), images
    H+1 rows apart (one zero row between them), taps offset by rows and columns."""
    (sh, sw, ph, pw, phases_h, phases_w, pitch, width_g, _), _, offsets, rows, cols = S.geometry(
        (2, 3, 8, 8), (4, 3, 3, 3), (1, 1), (1, 1), 2)
    assert (rows.tolist(), cols.tolist()) == ([0, 9, 18], [0, 1, 2])    # offsets = row part + column part
    assert (phases_h, phases_w, pitch, width_g) == (1, 1, 9, 9)
    assert offsets.tolist() == [0, 1, 2, 9, 10, 11, 18, 19, 20]
    # 3x3 stride 2 on 32x32, padding 1: four phase planes of 17x17 (one zero row or
    # column of padding each), 16x16 outputs; tap (i, j) reads phase (i % 2, j % 2).
    (_, _, _, _, phases_h, phases_w, pitch, width_g, size), out_hw, offsets, _, _ = S.geometry(
        (1, 1, 32, 32), (1, 1, 3, 3), (2, 2), (1, 1), 1)
    assert (phases_h, phases_w, pitch, width_g, out_hw) == (2, 2, 17, 17, (16, 16))
    assert offsets[[0, 1, 2, 4, 8]].tolist() == [0, size, 1, 3 * size, 17 + 1]
    # 1x1 kernel with stride 3: one phase, the subsampled image
    assert S.geometry((1, 1, 9, 7), (1, 1, 1, 1), (3, 3), (0, 0), 1)[0][4:8] == (1, 1, 3, 3)
    # dilation 2 with stride 2: every tap of the 3x3 kernel reads phase (0, 0)
    grid, out_hw, offsets = S.geometry((1, 1, 12, 12), (1, 1, 3, 3), (2, 2), (2, 2), 1, (2, 2))[:3]
    assert (grid.phases_h, grid.phases_w, out_hw) == (1, 1, (6, 6))
    assert offsets.tolist() == [i * grid.width_g + j for i in range(3) for j in range(3)]


def test_shifted_supports_any_stride_and_kernel():
    assert S.supports((2, 3, 9, 9), (4, 3, 5, 3), (2, 1), (2, 1)) == NB.gemm.available()
    assert "shifted" in NB.ALGORITHMS and NB.shifted.EXACT
    rows = NB.ALGORITHMS["shifted_rows"]
    assert rows.EXACT and rows.supports((2, 3, 9, 9), (4, 3, 5, 3), (2, 1), (2, 1)) == NB.gemm.available()
    assert not rows.supports((2, 3, 9, 9), (4, 3, 5, 1), (1, 1), (0, 0))    # one column of taps: `shifted`
