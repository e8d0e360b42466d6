"""`F.linear` / `F.linear_backward` on every backend against plain loops in float64,
random shapes (N=1, a batch at and around the numba backend's GEMM threshold, one
feature, odd sizes), with and without bias, and their argument checks."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv.functional as F
from tests.conftest import tolerance


def loops_linear(x, w, b):
    n, (n_out, n_in) = x.shape[0], w.shape
    y = np.zeros((n, n_out))
    for i in range(n):
        for o in range(n_out):
            y[i, o] = sum(float(x[i, k]) * float(w[o, k]) for k in range(n_in)) + (0.0 if b is None else b[o])
    return y


def loops_linear_backward(grad_y, x, w):
    n, (n_out, n_in) = x.shape[0], w.shape
    grad_x, grad_w = np.zeros((n, n_in)), np.zeros((n_out, n_in))
    for i in range(n):
        for o in range(n_out):
            for k in range(n_in):
                grad_x[i, k] += float(grad_y[i, o]) * float(w[o, k])
                grad_w[o, k] += float(grad_y[i, o]) * float(x[i, k])
    return grad_x, grad_w, grad_y.astype(np.float64).sum(axis=0)


@pytest.mark.parametrize("seed", range(8))
def test_linear_matches_loops(backend, dtype, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 7, 8, 9, 33]))
    n_in, n_out = (1 if rng.random() < 0.2 else int(rng.integers(2, 40)) for _ in range(2))
    x = rng.standard_normal((n, n_in)).astype(dtype)
    w = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = None if seed % 3 == 0 else rng.standard_normal(n_out).astype(dtype)
    y = F.linear(x, w, b)
    assert y.dtype == dtype and y.shape == (n, n_out)
    tol = {k: v * 10 for k, v in tolerance(dtype).items()}      # sums over up to 40 products
    np.testing.assert_allclose(y, loops_linear(x, w, b), **tol)
    grad_y = rng.standard_normal((n, n_out)).astype(dtype)
    for name, got, want in zip(("grad_x", "grad_w", "grad_b"), F.linear_backward(grad_y, x, w),
                               loops_linear_backward(grad_y, x, w)):
        assert got.dtype == dtype and got.shape == want.shape, name
        np.testing.assert_allclose(got, want, **tol, err_msg=name)


def test_linear_splits_a_large_product_over_the_threads(backend):
    """Large enough for the numba backend to split the GEMMs by output features (forward,
    weight gradient) and input features (input gradient); checked against NumPy."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 517)).astype(np.float64)
    w = rng.standard_normal((203, 517)).astype(np.float64)
    b = rng.standard_normal(203)
    np.testing.assert_allclose(F.linear(x, w, b), x @ w.T + b, rtol=1e-12, atol=1e-11)
    grad_y = rng.standard_normal((64, 203))
    for got, want in zip(F.linear_backward(grad_y, x, w), (grad_y @ w, grad_y.T @ x, grad_y.sum(axis=0))):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("call, error, words", [
    (lambda x, w: F.linear(x, w[:, :-1]), ValueError, "features"),
    (lambda x, w: F.linear(x, w.astype(np.float64)), TypeError, "dtype"),
    (lambda x, w: F.linear(x[0], w), ValueError, "2-D"),
    (lambda x, w: F.linear(x, w, np.zeros(4, np.float32)), ValueError, "b must have shape"),
    (lambda x, w: F.linear(x.astype(np.int64), w), TypeError, "float32 or float64"),
    (lambda x, w: F.linear_backward(np.zeros((9, 3), np.float32), x, w), ValueError, "grad_y"),
    (lambda x, w: F.linear_backward(np.zeros((9, 5), np.float64), x, w), TypeError, "dtype"),
])
def test_linear_rejects_bad_arguments(backend, call, error, words):
    x = np.ones((9, 6), np.float32)
    w = np.ones((5, 6), np.float32)
    with pytest.raises(error, match=words):
        call(x, w)
