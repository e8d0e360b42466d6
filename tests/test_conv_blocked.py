"""The register-blocked algorithm (``numba_backend/blocked.py``) and its SIMD vector
intrinsics (``kernels/simd.py``) against plain loops on random geometries:
rectangular kernels 1x1-5x5, strides 1-3 (larger than the kernel included),
dilations 1-3, padding up to 3, N=1, C=1, channel counts that are not a multiple of
the register blocks (8 and 4), one image per group and several groups with a short
last one, the fused ReLU's mask, and no grad_x."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit  # noqa: E402

from fastconv.backends import numba_backend as NB  # noqa: E402
from fastconv.backends.numba_backend.kernels import simd  # noqa: E402
from tests import loops  # noqa: E402
from tests.test_conv_algorithms import bound, relative_error  # noqa: E402
from tests.test_conv_shifted import as64  # noqa: E402

B = NB.ALGORITHMS["blocked"]


def random_problem(rng, dtype):
    kh, kw = (int(v) for v in rng.integers(1, 6, size=2))
    stride = (1, 1) if rng.random() < 0.4 else tuple(int(v) for v in rng.integers(1, 4, size=2))
    dilation = (1, 1) if rng.random() < 0.5 else tuple(int(v) for v in rng.integers(1, 4, size=2))
    ph, pw = (int(v) for v in rng.integers(0, 4, size=2))
    reach = [max(1, d * (k - 1) + 1 - 2 * p) for k, d, p in ((kh, dilation[0], ph), (kw, dilation[1], pw))]
    height, width = (int(rng.integers(low, low + 11)) for low in reach)
    n = int(rng.integers(1, 6))
    c_in = 1 if rng.random() < 0.25 else int(rng.integers(2, 10))
    c_out = 1 if rng.random() < 0.25 else int(rng.integers(2, 21))
    x = rng.standard_normal((n, c_in, height, width)).astype(dtype)
    w = rng.standard_normal((c_out, c_in, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b, stride, (ph, pw), dilation


@pytest.fixture(params=[1, 1 << 19], ids=["image-per-group", "default-groups"])
def group_bytes(request, monkeypatch):
    monkeypatch.setattr(B, "_GROUP_BYTES", request.param)
    B._plan.cache_clear()
    yield request.param
    B._plan.cache_clear()


@pytest.mark.parametrize("seed", range(10))
def test_blocked_matches_loops(group_bytes, seed, dtype):
    rng = np.random.default_rng(seed)
    x, w, b, stride, padding, dilation = random_problem(rng, dtype)
    x64, w64, b64 = as64(x, w, b)
    want_y = loops.conv2d_general(x64, w64, b64, stride, padding, dilation, 1)
    y = B.forward(x, w, b, stride, padding, False, dilation)
    assert y.dtype == dtype and y.shape == want_y.shape
    assert relative_error(y, want_y) < bound(dtype)
    y_relu = B.forward(x, w, b, stride, padding, True, dilation)
    np.testing.assert_array_equal(y_relu, np.maximum(y, 0))

    grad_y = rng.standard_normal(y.shape).astype(dtype)
    for mask in (None, y_relu):
        masked = grad_y if mask is None else grad_y * (y_relu > 0)
        want = loops.conv2d_general_backward(masked.astype(np.float64), x64, w64, stride, padding,
                                             dilation, 1)
        got = B.backward(grad_y, x, w, mask, stride, padding, True, dilation)
        for name, g, e in zip(("grad_x", "grad_w", "grad_b"), got, want):
            assert g.dtype == dtype and g.shape == e.shape, name
            assert relative_error(g, e) < bound(dtype), name
        grad_x, grad_w, grad_b = B.backward(grad_y, x, w, mask, stride, padding, False, dilation)
        assert grad_x is None
        np.testing.assert_array_equal(grad_w, got[1])
        np.testing.assert_array_equal(grad_b, got[2])


@pytest.mark.parametrize("seed", range(12))
def test_blocked_grouped_matches_loops(group_bytes, seed, dtype):
    """Grouped convolution: every register block inside one convolution group, 1-12
    channels per group on each side (short blocks, repeated last channels that must
    not reach a neighbouring group), any stride, dilation and padding."""
    rng = np.random.default_rng(100 + seed)
    x, w, b, stride, padding, dilation = random_problem(rng, dtype)
    groups, cg, og = int(rng.integers(2, 5)), int(rng.integers(1, 11)), int(rng.integers(1, 13))
    x = rng.standard_normal((x.shape[0], groups * cg, *x.shape[2:])).astype(dtype)
    w = rng.standard_normal((groups * og, cg, *w.shape[2:])).astype(dtype)
    b = rng.standard_normal(groups * og).astype(dtype)
    x64, w64, b64 = as64(x, w, b)
    y = B.forward(x, w, b, stride, padding, False, dilation)
    assert relative_error(y, loops.conv2d_general(x64, w64, b64, stride, padding, dilation, groups)) < bound(dtype)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    want = loops.conv2d_general_backward(grad_y.astype(np.float64), x64, w64, stride, padding, dilation, groups)
    for name, g, e in zip(("grad_x", "grad_w", "grad_b"),
                          B.backward(grad_y, x, w, None, stride, padding, True, dilation), want):
        assert g.shape == e.shape and relative_error(g, e) < bound(dtype), name


def test_several_groups_with_a_short_last_one(monkeypatch, dtype):
    """7 images in groups of 3 (3 + 3 + 1): the last group's empty slots must not
    leak the previous group's data into the weight gradient."""
    image_bytes = (2 + 8) * 16 * 16 * np.dtype(dtype).itemsize     # (C_in + C_out) padded planes
    monkeypatch.setattr(B, "_GROUP_BYTES", 3 * image_bytes)
    monkeypatch.setattr(B.rt, "get_num_threads", lambda: 2)
    B._plan.cache_clear()
    rng = np.random.default_rng(7)
    x = rng.standard_normal((7, 2, 14, 14)).astype(dtype)
    w = rng.standard_normal((8, 2, 3, 3)).astype(dtype)
    assert B._plan(x.shape, w.shape, (1, 1), (1, 1), (1, 1), x.itemsize, True)[0] == 3
    grad_y = rng.standard_normal((7, 8, 14, 14)).astype(dtype)
    want = loops.conv2d_backward(*as64(grad_y, x, w), (1, 1), (1, 1))
    got = B.backward(grad_y, x, w, None, (1, 1), (1, 1), True)
    for g, e in zip(got, want):
        assert relative_error(g, e) < bound(dtype)
    B._plan.cache_clear()


@pytest.mark.parametrize("kernel, padding, dilation", [
    ((3, 3), (1, 1), (1, 1)),      # "same": rows and images share all their padding
    ((5, 3), (1, 1), (1, 1)),      # padding below the kernel's reach
    ((3, 2), (2, 1), (1, 1)),      # vertical padding beyond it: shared only in part
    ((1, 1), (2, 3), (1, 1)),      # 1x1 with padding: nothing shared
    ((3, 3), (3, 1), (2, 3)),      # dilated
])
def test_stride_1_neighbours_share_padding(monkeypatch, kernel, padding, dilation, dtype):
    """Stride 1 packs each row's right padding into the next row's left padding and
    each image's bottom padding into the next image's top padding; several images
    per group (and a short last group) must still see only zeros from there."""
    height, width = 4, 6
    phase_size = B._layout(height, width, *kernel, (1, 1), padding, dilation)[0]
    monkeypatch.setattr(B, "_GROUP_BYTES", 3 * (3 + 5) * phase_size * np.dtype(dtype).itemsize)
    monkeypatch.setattr(B.rt, "get_num_threads", lambda: 2)
    B._plan.cache_clear()
    rng = np.random.default_rng(11)
    x = rng.standard_normal((7, 3, height, width)).astype(dtype)
    w = rng.standard_normal((5, 3, *kernel)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    assert B._plan(x.shape, w.shape, (1, 1), padding, dilation, x.itemsize, True)[0] == 3   # 3+3+1
    reach = [d * (k - 1) for k, d in zip(kernel, dilation)]
    if min(min(p, r) for p, r in zip(padding, reach)) > 0:
        assert phase_size < (height + 2 * padding[0]) * (width + 2 * padding[1])
    x64, w64, b64 = as64(x, w, b)
    y = B.forward(x, w, b, (1, 1), padding, True, dilation)
    want_y = np.maximum(loops.conv2d_general(x64, w64, b64, (1, 1), padding, dilation, 1), 0)
    assert relative_error(y, want_y) < bound(dtype)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    want = loops.conv2d_general_backward((grad_y * (y > 0)).astype(np.float64), x64, w64, (1, 1),
                                         padding, dilation, 1)
    for name, g, e in zip(("grad_x", "grad_w", "grad_b"),
                          B.backward(grad_y, x, w, y, (1, 1), padding, True, dilation), want):
        assert relative_error(g, e) < bound(dtype), name
    B._plan.cache_clear()


def test_batch_one_splits_over_channel_blocks(dtype):
    """N=1 runs in parallel over blocks of output channels; 20 channels are 2 full
    blocks of 8 and one of 4 (the rest repeats the last channel, dropped)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 5, 12, 9)).astype(dtype)
    w = rng.standard_normal((20, 5, 3, 3)).astype(dtype)
    b = rng.standard_normal(20).astype(dtype)
    want = loops.conv2d(*as64(x, w, b), (1, 1), (1, 1))
    assert relative_error(B.forward(x, w, b, (1, 1), (1, 1), False), want) < bound(dtype)


# --------------------------------------------------------------------------- intrinsics
@njit
def _vector_ops(a, b, out):
    lanes = simd.vlanes(a)
    acc = simd.vfma(simd.vload(a, 1), simd.vsplat(a, b[0]), simd.vzero(a))
    simd.vstore(out, 2, acc)
    return lanes, simd.vsum(simd.vload(a, 0))


def test_vector_intrinsics(dtype):
    lanes = simd.lanes(np.dtype(dtype))
    a = np.arange(1, lanes + 3, dtype=dtype)
    out = np.zeros(lanes + 4, dtype=dtype)
    got_lanes, total = _vector_ops(a, np.array([3.0], dtype=dtype), out)
    assert got_lanes == lanes == simd.target().vector_bits // (8 * np.dtype(dtype).itemsize)
    np.testing.assert_array_equal(out[2:2 + lanes], 3 * a[1:1 + lanes])
    assert out[:2].tolist() == [0, 0] and out[2 + lanes:].tolist() == [0, 0]
    assert total == pytest.approx(a[:lanes].sum())


@njit
def _masked_copy(src, s0, dst, d0, count):
    simd.vstore_first(dst, d0, simd.vload_first(src, s0, count), count)
    return simd.vsum(simd.vadd(simd.vload_first(src, s0, count), simd.vload_first(src, s0, count)))


@pytest.mark.parametrize("count", [0, 1, "lanes // 2 + 1", "lanes - 1", "lanes"])
def test_masked_vectors_touch_only_their_first_lanes(dtype, count):
    """`vload_first` / `vstore_first` read and write ``count`` elements: a source that
    ends there is not read past (NaN beyond it would show in the sum), a destination's
    next element keeps its value."""
    lanes = simd.lanes(np.dtype(dtype))
    count = eval(count, {"lanes": lanes}) if isinstance(count, str) else count
    src = np.full(3 + lanes + 2, np.nan, dtype=dtype)
    src[3:3 + count] = np.arange(1, count + 1)
    dst = np.full(lanes + 4, -7, dtype=dtype)
    total = _masked_copy(src, 3, dst, 1, count)
    assert dst[1:1 + count].tolist() == list(range(1, count + 1))
    assert (dst[:1] == -7).all() and (dst[1 + count:] == -7).all()
    assert total == 2 * sum(range(1, count + 1))


@pytest.mark.parametrize("seed", range(6))
def test_vector_array_helpers_against_numpy(dtype, seed):
    """`kernels.vectors`: sums, row copies and row adds of any length (whole vectors,
    a tail, shorter than one vector), touching nothing outside their rows."""
    from fastconv.backends.numba_backend.kernels import vectors

    rng = np.random.default_rng(seed)
    lanes = simd.lanes(np.dtype(dtype))
    for size in (0, 1, lanes - 1, lanes, lanes + 1, int(rng.integers(2, 5 * lanes))):
        values = rng.standard_normal(size).astype(dtype)
        np.testing.assert_allclose(vectors.total(values), values.astype(np.float64).sum(), rtol=1e-5, atol=1e-5)
    rows = int(rng.integers(1, 6))
    width = (1, lanes, lanes + 1, 2 * lanes - 1, int(rng.integers(1, 3 * lanes)), 3 * lanes + 2)[seed]
    pitch, at, to = width + int(rng.integers(0, 5)), int(rng.integers(0, 7)), int(rng.integers(0, 7))
    grid = rng.standard_normal(at + rows * pitch + 3).astype(dtype)
    flat = rng.standard_normal(to + rows * width + 3).astype(dtype)
    picked = np.stack([grid[at + r * pitch:at + r * pitch + width] for r in range(rows)]).ravel()
    copied = flat.copy()
    vectors.copy_rows(grid, at, pitch, rows, width, copied, to)
    want = flat.copy()
    want[to:to + rows * width] = picked
    np.testing.assert_array_equal(copied, want)
    added = grid.copy()
    vectors.add_rows(flat, to, rows, width, added, at, pitch)
    want = grid.copy()
    for r in range(rows):
        want[at + r * pitch:at + r * pitch + width] += flat[to + r * width:to + (r + 1) * width]
    np.testing.assert_array_equal(added, want)


def test_blocked_is_timed_only_with_fma(monkeypatch):
    """Autotuning leaves it out where the target has no FMA instructions, unless forced."""
    shapes = ((2, 8, 9, 9), (8, 8, 3, 3), (1, 1), (1, 1))
    monkeypatch.setattr(B, "worth_timing", lambda: False)
    assert "blocked" not in NB.select.candidates(*shapes)
    NB.set_conv_algorithm("blocked")
    try:
        assert "blocked" in NB.select.candidates(*shapes)
    finally:
        NB.set_conv_algorithm(None)
    monkeypatch.setattr(B, "worth_timing", lambda: True)
    assert "blocked" in NB.select.candidates(*shapes)
