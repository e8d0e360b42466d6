"""Reused scratch buffers never leak into results: the numba kernels keep their
threads' partial weight gradients and Winograd's transformed filters in per-thread
workspaces (``runtime.parts_workspace``), so a gradient handed back must be a new
array that the next call leaves alone."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from fastconv.backends.numba_backend import grouped, gemm, select  # noqa: E402
from fastconv.backends.numba_backend import runtime as rt  # noqa: E402
from tests import loops  # noqa: E402

STRIDE, PADDING = (1, 1), (1, 1)


def _problem(seed, x_shape=(3, 5, 7, 6), w_shape=(6, 5, 3, 3), groups=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    y = loops.conv2d_general(x, w, np.zeros(w_shape[0]), STRIDE, PADDING, (1, 1), groups)
    return rng.standard_normal(y.shape), x, w


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(select.ALGORITHMS))
def test_weight_gradients_survive_the_next_call(name, threads):
    algorithm = select.ALGORITHMS[name]
    first, second = _problem(1), _problem(2)
    if not algorithm.supports(first[1].shape, first[2].shape, STRIDE, PADDING):
        pytest.skip(f"{name} does not run this problem here")
    with rt.thread_limit(threads):
        _, grad_w, grad_b = algorithm.backward(*first[:2], first[2], None, STRIDE, PADDING, True)
        kept = grad_w.copy()
        _, grad_w2, _ = algorithm.backward(*second[:2], second[2], None, STRIDE, PADDING, True)
    _, want_w, want_b = loops.conv2d_backward(*first, STRIDE, PADDING)
    np.testing.assert_allclose(kept, want_w, rtol=1e-6, atol=1e-6)    # float64: Winograd ~1e-12
    np.testing.assert_array_equal(grad_w, kept)
    assert not np.shares_memory(grad_w, grad_w2)
    np.testing.assert_allclose(grad_b, want_b, rtol=1e-10)


@pytest.mark.parametrize("threads", [1, 2])
def test_grouped_and_transposed_weight_gradients_survive_the_next_call(threads):
    if not gemm.available():
        pytest.skip("the grouped and transposed GEMM kernels need a BLAS")
    dilation, groups = (1, 1), 2
    results = []
    with rt.thread_limit(threads):
        for seed in (3, 4):
            grad_y, x, w = _problem(seed, (2, 4, 6, 5), (6, 2, 3, 3), groups)
            _, grad_w, _ = grouped.backward(grad_y, x, w, STRIDE, PADDING, dilation, groups, True)
            # the transposed convolution of grad_y: its weights are the convolution's
            _, grad_w_t, _ = grouped.transpose_backward(x, grad_y, w, STRIDE, PADDING, dilation, groups)
            results.append((grad_w, grad_w.copy(), grad_w_t, grad_w_t.copy()))
    (gw, gw_kept, gwt, gwt_kept), (gw2, _, gwt2, _) = results
    np.testing.assert_array_equal(gw, gw_kept)
    np.testing.assert_array_equal(gwt, gwt_kept)
    assert not np.shares_memory(gw, gw2) and not np.shares_memory(gwt, gwt2)
    grad_y, x, w = _problem(3, (2, 4, 6, 5), (6, 2, 3, 3), groups)
    want = loops.conv2d_general_backward(grad_y, x, w, STRIDE, PADDING, dilation, groups)[1]
    np.testing.assert_allclose(gw_kept, want, rtol=1e-10, atol=1e-10)


def test_a_one_chunk_launch_runs_alone_and_restores_the_team():
    """`rt.launch` runs a one-chunk kernel on the calling thread alone and gives numba
    back the full thread count (also inside and after a `thread_limit`)."""
    import numba

    @numba.njit(parallel=True)
    def team_size(n_chunks):
        sizes = np.zeros(n_chunks, dtype=np.int64)
        for chunk in numba.prange(n_chunks):
            sizes[chunk] = numba.get_num_threads()
        return sizes.max()

    full = rt.get_num_threads()
    assert rt.launch(team_size, 1) == 1
    assert numba.get_num_threads() == full
    assert rt.launch(team_size, 2) == full
    with rt.thread_limit(1):
        assert numba.get_num_threads() == 1 and rt.launch(team_size, 1) == 1
    assert numba.get_num_threads() == full
