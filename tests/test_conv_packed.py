"""Frozen (read-only) weights: the GEMM on their packed panels (``kernels/gemm_packed.py``,
`gemm.forward_packed`) against plain loops on random geometries (N=1, C_out=1, odd
channel counts, strides, padding, rectangular and 1x1 kernels, bias, fused ReLU), and
the cache of `frozen_weights`: what counts as frozen, one copy per array, dropped with
it, nothing kept for writeable arrays."""

from __future__ import annotations

import gc

import numpy as np
import pytest

pytest.importorskip("numba")

import fastconv  # noqa: E402
import fastconv.functional as F  # noqa: E402
from fastconv.backends import numba_backend as NB  # noqa: E402
from fastconv.backends.numba_backend import frozen_weights, select  # noqa: E402
from tests import loops  # noqa: E402
from tests.test_conv_algorithms import bound, relative_error  # noqa: E402
from tests.test_conv_skinny import conv_arrays, conv_geometry  # noqa: E402

G = NB.ALGORITHMS["gemm"]
pytestmark = pytest.mark.skipif(not G.available(), reason="no BLAS: the gemm algorithm cannot run")


def frozen(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def packed_problem(rng, dtype):
    """A problem whose batch has more columns than the few-column GEMM takes and at
    most as many as the packed panels do."""
    n, (kh, kw), stride, padding, (height, width) = conv_geometry(
        rng, 5, 11, lambda columns, *_: G._SKINNY_MAX_COLUMNS < columns <= G._PACKED_MAX_COLUMNS)
    c_in = 1 if rng.random() < 0.2 else int(rng.integers(2, 40))
    c_out = 1 if rng.random() < 0.2 else int(rng.integers(2, 70))
    x, w, b = conv_arrays(rng, n, c_in, c_out, (kh, kw), (height, width), dtype)
    return x, w, b, stride, padding


@pytest.mark.parametrize("seed", range(16))
def test_packed_forward_matches_loops(seed, dtype):
    rng = np.random.default_rng(seed)
    x, w, b, stride, padding = packed_problem(rng, dtype)
    want = loops.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), stride, padding)
    relu = bool(seed % 2)
    w_frozen = frozen(w)
    got = G.forward(x, w, b, stride, padding, relu, panels=lambda: frozen_weights.panels(w_frozen))
    assert got.shape == want.shape and got.dtype == x.dtype
    assert relative_error(got, np.maximum(want, 0) if relu else want) < bound(dtype)


def test_a_frozen_call_runs_the_panels_and_agrees_with_a_writeable_one(monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 24, 5, 5)).astype(np.float32)
    w = rng.standard_normal((40, 24, 3, 3)).astype(np.float32)
    calls = []
    real = G.forward_packed
    monkeypatch.setattr(G, "forward_packed", lambda *args: calls.append(1) or real(*args))
    fastconv.set_backend("numba")
    select.set_conv_algorithm("gemm")
    try:
        want = F.conv2d_relu(x, w, None, 1, 1)
        got = F.conv2d_relu(x, frozen(w), None, 1, 1)
    finally:
        select.set_conv_algorithm(None)
    assert calls == [1]
    assert relative_error(got, want) < bound(np.float32)


def test_what_counts_as_frozen():
    a = np.ones((3, 4), np.float32)
    assert not frozen_weights.frozen(a)
    view = a[1:]
    view.flags.writeable = False
    assert not frozen_weights.frozen(view)        # its base can still change
    assert frozen_weights.frozen(frozen(a))
    assert frozen_weights.frozen(np.frombuffer(b"\0" * 16, dtype=np.float32))


def test_one_copy_per_frozen_array_dropped_with_it():
    w = frozen(np.random.default_rng(0).standard_normal((5, 3, 3, 3)).astype(np.float32))
    gc.collect()                   # earlier tests' frozen arrays: gone before counting
    before = frozen_weights.cached_arrays()
    panels = frozen_weights.panels(w)
    assert frozen_weights.panels(w) is panels
    assert frozen_weights.writable(w).flags.writeable
    np.testing.assert_array_equal(frozen_weights.writable(w), w)
    other = frozen(w)
    assert frozen_weights.panels(other) is not panels
    assert frozen_weights.cached_arrays() == before + 2
    del w, other
    gc.collect()
    assert frozen_weights.cached_arrays() == before


def test_writeable_weights_are_never_cached():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 16, 4, 4)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    fastconv.set_backend("numba")
    before = frozen_weights.cached_arrays()
    first = F.conv2d(x, w, None, 1, 1)
    w *= 2                                         # changed in place: no stale result
    np.testing.assert_allclose(F.conv2d(x, w, None, 1, 1), 2 * first, rtol=1e-5, atol=1e-5)
    assert frozen_weights.cached_arrays() == before


@pytest.mark.parametrize("seed", range(6))
def test_dilated_packed_forward_matches_the_writeable_path(seed):
    """Dilation only moves the offsets the panels' GEMM reads; the plan joins the
    dilated problem's autotuning when the weights are frozen."""
    rng = np.random.default_rng(seed)
    dilation = (int(rng.integers(1, 4)), int(rng.integers(2, 5)))
    padding = (int(rng.integers(0, 5)), int(rng.integers(0, 5)))
    n, c_in, c_out = int(rng.integers(1, 3)), int(rng.integers(1, 20)), int(rng.integers(1, 40))
    x, w, b = conv_arrays(rng, n, c_in, c_out, (3, 3), (9, 10), np.float32)
    fastconv.set_backend("numba")
    want = F.conv2d(x, w, b, 1, padding, dilation)
    w_frozen = frozen(w)
    got = G.forward_packed(x, frozen_weights.panels(w_frozen), b, (1, 1), padding, False, want.shape[2:],
                           c_out, (3, 3), dilation)
    assert relative_error(got, want) < bound(np.float32)
    assert relative_error(F.conv2d(x, w_frozen, b, 1, padding, dilation), want) < bound(np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_a_large_frozen_layer_times_its_panels_and_keeps_the_winner(seed, monkeypatch, tmp_path):
    """Past the positions the GEMM path runs on panels, a frozen layer times them
    against the algorithm chosen: each plan gives the loops' result, and the winner
    is saved and read back (a plan name the cache file accepts)."""
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    select.clear_autotune_cache(memory_only=True)
    rng = np.random.default_rng(seed)
    n, (kh, kw), stride, padding, (height, width) = conv_geometry(
        rng, 5, 40, lambda columns, kernel, *_: G._PACKED_MAX_COLUMNS < columns <= 1200 and kernel != (1, 1))
    c_in, c_out = int(rng.integers(1, 12)), int(rng.integers(1, 40))
    x, w, b = conv_arrays(rng, n, c_in, c_out, (kh, kw), (height, width), np.float32)
    want = loops.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), stride, padding)
    key = select.key("forward frozen plan", x.shape, w.shape, stride, padding, np.float32)
    fastconv.set_backend("numba")
    for plan in ("packed", "chosen"):
        select.clear_autotune_cache()
        monkeypatch.setattr(select, "_time_candidates", lambda names, run, plan=plan: plan)
        monkeypatch.setattr(select, "_TUNE_MIN_FLOPS", 0)
        got = F.conv2d_relu(x, frozen(w), b, stride, padding)
        assert select.last_conv_algorithms[key] == plan
        assert relative_error(got, np.maximum(want, 0)) < bound(np.float32)
        select.clear_autotune_cache(memory_only=True)           # another process reads the file
        assert plan in select._load_winners().values()
    select.clear_autotune_cache(memory_only=True)
