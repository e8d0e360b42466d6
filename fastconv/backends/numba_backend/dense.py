"""Fully connected layers on the numba kernels (`kernels/dense.py`): the GEMMs on the
kernels' BLAS, split over the threads.  Report 003's 8192 -> 256 layer at batch 64:
forward + backward 3.4 ms, NumPy's BLAS 8.7 ms on one thread (as in training) and
4.5 ms on two (2026-12-03, AMD EPYC, 2 threads).  Below `_GEMM_ROWS` samples NumPy's
matrix-vector products are faster (batch 1: 0.13 ms vs 0.97 ms forward), so those
run there."""

from __future__ import annotations

import numpy as np

from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.frozen_weights import weight_array
from fastconv.backends.numba_backend.kernels import dense as _dense

# A slice of a GEMM per thread pays from here (flops); smaller ones run on one.
_SPLIT_FLOPS = 4e6
_GEMM_ROWS = 8


def linear(x, w, b):
    if x.shape[0] < _GEMM_ROWS:
        y = x @ w.T
        return y if b is None else y + b
    x, w = rt.kernel_array(x), weight_array(w)
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    use_bias = b is not None
    bias = weight_array(b) if use_bias else rt.dummy(x.dtype, 1)
    chunks = rt.chunks(w.shape[0], 2.0 * y.size * x.shape[1], _SPLIT_FLOPS)
    rt.launch(_dense.linear_forward, x, w, bias, use_bias, y, chunks)
    return y


def linear_backward(grad_y, x, w):
    if x.shape[0] < _GEMM_ROWS:
        return grad_y @ w, grad_y.T @ x, grad_y.sum(axis=0)
    grad_y, x, w = rt.kernel_array(grad_y), rt.kernel_array(x), weight_array(w)
    grad_x = np.empty_like(x)
    grad_w = np.empty_like(w)
    grad_b = np.empty(w.shape[0], dtype=x.dtype)
    chunks = rt.chunks(min(w.shape), 2.0 * grad_y.size * x.shape[1], _SPLIT_FLOPS)
    rt.launch(_dense.linear_backward, grad_y, x, w, grad_x, grad_w, grad_b, chunks)
    return grad_x, grad_w, grad_b
