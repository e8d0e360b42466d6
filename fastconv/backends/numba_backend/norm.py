"""Batch normalisation (training mode) on the numba kernels."""

from __future__ import annotations

import numpy as np

from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import norm as _norm


def batch_norm(x, weight, bias, eps):
    x3 = rt.kernel_array(x).reshape(x.shape[0], x.shape[1], -1)
    c = x3.shape[1]
    y3 = np.empty_like(x3)
    mean = np.empty(c, dtype=x.dtype)
    var = np.empty(c, dtype=x.dtype)
    rt.launch(_norm.batch_norm_forward, x3, rt.kernel_array(weight), rt.kernel_array(bias), eps,
              y3, mean, var, rt.chunks(c, 4.0 * x3.size, 1e5))
    return y3.reshape(x.shape), mean, var


def batch_norm_backward(grad_y, x, mean, var, weight, eps):
    x3 = rt.kernel_array(x).reshape(x.shape[0], x.shape[1], -1)
    c = x3.shape[1]
    grad3 = rt.kernel_array(grad_y).reshape(x3.shape)
    grad_x3 = np.empty_like(x3)
    grad_weight = np.empty(c, dtype=x.dtype)
    grad_bias = np.empty(c, dtype=x.dtype)
    rt.launch(_norm.batch_norm_backward, grad3, x3, rt.kernel_array(mean), rt.kernel_array(var),
              rt.kernel_array(weight), eps, grad_x3, grad_weight, grad_bias,
              rt.chunks(c, 4.0 * x3.size, 1e5))
    return grad_x3.reshape(x.shape), grad_weight, grad_bias
