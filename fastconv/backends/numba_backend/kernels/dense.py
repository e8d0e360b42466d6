"""Fully connected layers on the kernels' BLAS (`kernels/blas.py`).

The GEMMs split over output columns (forward, input gradient) or weight rows (weight
gradient), one slice per thread, each on the single-threaded BLAS every kernel
uses.  Everything trusts its caller (`numba_backend.dense`): C-contiguous arrays of
one dtype and matching shapes.
"""

from __future__ import annotations

from numba import njit, prange

from fastconv.backends.numba_backend.kernels import blas

_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(**_PJIT)
def linear_forward(x, w, b, use_bias, y, n_chunks):
    """y = x @ w.T (+ b), parallel over slices of the output features."""
    n_out = w.shape[0]
    for chunk in prange(n_chunks):
        o0, o1 = n_out * chunk // n_chunks, n_out * (chunk + 1) // n_chunks
        out = y[:, o0:o1]
        blas.gemm(x, w[o0:o1].T, out)
        if use_bias:
            bias = b[o0:o1]
            for i in range(out.shape[0]):
                row = out[i]
                for j in range(row.shape[0]):
                    row[j] += bias[j]


@njit(**_PJIT)
def linear_backward(grad_y, x, w, grad_x, grad_w, grad_b, n_chunks):
    """grad_x = grad_y @ w, grad_w = grad_y.T @ x, grad_b = grad_y summed over rows;
    chunks below ``n_chunks`` take slices of grad_x's columns, the others slices of
    grad_w's rows (and of grad_b)."""
    n_out, n_in = w.shape
    for item in prange(2 * n_chunks):
        chunk = item % n_chunks
        if item < n_chunks:
            i0, i1 = n_in * chunk // n_chunks, n_in * (chunk + 1) // n_chunks
            blas.gemm(grad_y, w[:, i0:i1], grad_x[:, i0:i1])
            continue
        o0, o1 = n_out * chunk // n_chunks, n_out * (chunk + 1) // n_chunks
        blas.gemm(grad_y[:, o0:o1].T, x, grad_w[o0:o1])
        sums = grad_b[o0:o1]
        sums[:] = 0
        for i in range(grad_y.shape[0]):
            row = grad_y[i, o0:o1]
            for j in range(row.shape[0]):
                sums[j] += row[j]
