"""Pooling and softmax cross-entropy on the numba kernels."""

from __future__ import annotations

import numpy as np

from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import pool as _pool


def avg_pool2d(x, kernel_size, stride, padding):
    x = rt.kernel_array(x)
    n, c, height, width = x.shape
    out_h, out_w = rt.out_hw(height, width, kernel_size, stride, padding)
    y = np.empty((n, c, out_h, out_w), dtype=x.dtype)
    rt.launch(_pool.avg_pool2d_forward, x, *kernel_size, *stride, *padding, y,
              rt.chunks(n * c, x.size, 1e5))
    return y


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding):
    grad_y = rt.kernel_array(grad_y)
    n, c = x_shape[:2]
    grad_x = np.empty(tuple(x_shape), dtype=grad_y.dtype)
    rt.launch(_pool.avg_pool2d_backward, grad_y, *kernel_size, *stride, *padding, grad_x,
              rt.chunks(n * c, grad_x.size, 1e5))
    return grad_x


def max_pool2d(x, kernel_size, stride, padding):
    x = rt.kernel_array(x)
    n, c, height, width = x.shape
    out_h, out_w = rt.out_hw(height, width, kernel_size, stride, padding)
    y = np.empty((n, c, out_h, out_w), dtype=x.dtype)
    indices = np.empty((n, c, out_h, out_w), dtype=np.int64)
    rt.launch(_pool.max_pool2d_forward, x, *kernel_size, *stride, *padding, y, indices,
              rt.chunks(n * c, x.size, 1e5))
    return y, indices


def max_pool2d_backward(grad_y, indices, x_shape, kernel_size, stride, padding):
    n, c, height, width = x_shape
    grad_y = rt.kernel_array(grad_y)
    indices = rt.kernel_array(np.asarray(indices, dtype=np.int64))
    grad_x = np.empty((n, c, height * width), dtype=grad_y.dtype)
    rt.launch(_pool.max_pool2d_backward, grad_y.reshape(n, c, -1), indices.reshape(n, c, -1), grad_x,
              rt.chunks(n * c, grad_x.size, 1e5))
    return grad_x.reshape(n, c, height, width)


def softmax_cross_entropy(logits, target):
    logits = rt.kernel_array(logits)
    target = rt.kernel_array(target)
    grad = np.empty_like(logits)
    loss = _pool.softmax_cross_entropy(logits, target, grad)
    return logits.dtype.type(loss), grad
