"""Pooling: average pooling (zero padding counted, as PyTorch's default) and max
pooling with flat argmax indices, each with its backward."""

from __future__ import annotations

import numpy as np

from fastconv.backends import get_backend
from fastconv.functional.arguments import (
    as_array, expect_shape, float_array, gradient_input_shape, output_hw, padded_fits, pool_params)


def avg_pool2d(x, kernel_size, stride=None, padding=0) -> np.ndarray:
    """Average pooling, zero padding counted in the mean (PyTorch's default).

    ``stride`` defaults to ``kernel_size``.  Windows that do not fit are dropped
    (floor mode), as in PyTorch.
    """
    x = float_array(x, "x", 4, "(N, C, H, W)")
    kernel_size, stride, padding = pool_params(kernel_size, stride, padding)
    output_hw(x.shape[2:], kernel_size, stride, padding, "avg_pool2d")
    padded_fits("avg_pool2d", x.shape, padding, x.itemsize)
    return get_backend().avg_pool2d(x, kernel_size, stride, padding)


def _backward_args(grad_y, x_shape, kernel_size, stride, padding, what):
    """Validated ``(grad_y, x_shape, kernel_size, stride, padding)`` of a pooling backward."""
    grad_y = float_array(grad_y, "grad_y", 4, "(N, C, out_h, out_w)")
    x_shape = gradient_input_shape(x_shape, grad_y, what)
    kernel_size, stride, padding = pool_params(kernel_size, stride, padding)
    out_hw = output_hw(x_shape[2:], kernel_size, stride, padding, what)
    padded_fits(what, x_shape, padding, grad_y.itemsize)
    expect_shape(grad_y, "grad_y", (*x_shape[:2], *out_hw))
    return grad_y, x_shape, kernel_size, stride, padding


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride=None, padding=0) -> np.ndarray:
    """Gradient of `avg_pool2d` w.r.t. its input of shape ``x_shape``."""
    grad_y, x_shape, kernel_size, stride, padding = _backward_args(
        grad_y, x_shape, kernel_size, stride, padding, "avg_pool2d_backward")
    return get_backend().avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max pooling: ``(y, indices)``, indices int64 flat ``h * W + w`` into each plane.

    Padding is -inf (never selected); ties go to the first maximum in row-major
    window order, as `F.max_pool2d(..., return_indices=True)`.
    """
    x = float_array(x, "x", 4, "(N, C, H, W)")
    kernel_size, stride, padding = pool_params(kernel_size, stride, padding)
    output_hw(x.shape[2:], kernel_size, stride, padding, "max_pool2d")
    padded_fits("max_pool2d", x.shape, padding, x.itemsize)
    return get_backend().max_pool2d(x, kernel_size, stride, padding)


def max_pool2d_backward(grad_y, indices, x_shape, kernel_size, stride=None, padding=0):
    """Gradient of `max_pool2d`: each ``grad_y`` element is routed to its argmax."""
    grad_y, x_shape, kernel_size, stride, padding = _backward_args(
        grad_y, x_shape, kernel_size, stride, padding, "max_pool2d_backward")
    indices = as_array(indices, "indices")
    if indices.dtype.kind not in "iu":
        raise TypeError("indices must be an integer numpy.ndarray as returned by max_pool2d")
    expect_shape(indices, "indices", grad_y.shape)
    plane = x_shape[2] * x_shape[3]
    if indices.min() < 0 or indices.max() >= plane:
        # An out-of-range index would make a JIT kernel write outside grad_x.
        raise ValueError(f"indices must lie in [0, H*W) = [0, {plane})")
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    return get_backend().max_pool2d_backward(grad_y, indices, x_shape, kernel_size, stride, padding)
