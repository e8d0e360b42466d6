"""The plain convolution path: no dilation, no groups, integer padding.

Each function validates its arrays and ``stride`` / ``padding`` once, then calls the
backend's kernel: `conv2d` and its backward, the input-gradient-free
`conv2d_backward_weights`, and the fused ReLU and ReLU + 2x2 average pooling
variants.  The fused ops are optional in a backend: one that implements them
(numba) runs them in one pass; for any other the same result is composed here from
the required kernels.  `fastconv.functional.conv` calls these for a plain call,
`fastconv.functional.general_conv` for a general call that turned out plain.
"""

from __future__ import annotations

import numpy as np

from fastconv.backends import get_backend, optional_kernel
from fastconv.functional.arguments import (
    check_fits_memory, expect_shape, float_array, memory_bytes, output_hw, padded_fits, pair, same_dtype)

POOL2 = ((2, 2), (2, 2), (0, 0))   # kernel, stride, padding of the fused pooling


def conv_args(x, w, stride, padding, what):
    """Validated ``(x, w, stride, padding, out_hw)`` of a plain convolution."""
    x = float_array(x, "x", 4, "(N, C_in, H, W)")
    w = float_array(w, "w", 4, "(C_out, C_in, kh, kw)")
    if w.dtype is not x.dtype:
        same_dtype(x, "x", w=w)
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"{what}: channel mismatch, x has C_in = {x.shape[1]} channels but w expects "
            f"{w.shape[1]} (w has shape {w.shape})"
        )
    stride = pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    out_hw = output_hw(x.shape[2:], w.shape[2:], stride, padding, what)
    n, c_in, height, width = x.shape
    padded = n * c_in * (height + 2 * padding[0]) * (width + 2 * padding[1])
    if (padded + n * w.shape[0] * out_hw[0] * out_hw[1]) * x.itemsize > memory_bytes():
        padded_fits(what, x.shape, padding, x.itemsize)     # the one that does not fit says so
        check_fits_memory(what, "output", (n, w.shape[0], *out_hw), x.itemsize, "stride and padding")
    return x, w, stride, padding, out_hw


def bias_arg(b, x, w):
    """``b`` validated against ``x`` and ``w`` (None stays None)."""
    if b is None:
        return None
    if type(b) is np.ndarray and b.dtype is x.dtype and b.shape == (w.shape[0],) and b.flags.c_contiguous:
        return b                        # the usual call, in a third of the checks' time
    b = float_array(b, "b", 1, "(C_out,)")
    same_dtype(x, "x", b=b)
    expect_shape(b, "b", (w.shape[0],))
    return b


def _grad_arg(grad_y, x, w, out_hw):
    grad_y = float_array(grad_y, "grad_y", 4, "(N, C_out, out_h, out_w)")
    same_dtype(x, "x", grad_y=grad_y)
    expect_shape(grad_y, "grad_y", (x.shape[0], w.shape[0], *out_hw))
    return grad_y


def conv2d(x, w, b=None, stride=1, padding=0) -> np.ndarray:
    """Plain `fastconv.functional.conv2d`."""
    x, w, stride, padding, _ = conv_args(x, w, stride, padding, "conv2d")
    b = bias_arg(b, x, w)
    return get_backend().conv2d(x, w, b, stride, padding)


def conv2d_backward(grad_y, x, w, stride=1, padding=0):
    """Plain `fastconv.functional.conv2d_backward`: ``(grad_x, grad_w, grad_b)``."""
    x, w, stride, padding, out_hw = conv_args(x, w, stride, padding, "conv2d_backward")
    grad_y = _grad_arg(grad_y, x, w, out_hw)
    return get_backend().conv2d_backward(grad_y, x, w, stride, padding)


def conv2d_backward_weights(grad_y, x, w, stride=1, padding=0):
    """Plain `fastconv.functional.conv2d_backward_weights`: ``(grad_w, grad_b)``."""
    x, w, stride, padding, out_hw = conv_args(x, w, stride, padding, "conv2d_backward_weights")
    grad_y = _grad_arg(grad_y, x, w, out_hw)
    return backward_weights(grad_y, x, w, stride, padding)


def backward_weights(grad_y, x, w, stride, padding):
    """``(grad_w, grad_b)`` of validated arguments: the fused kernel where there is one."""
    fused = optional_kernel("conv2d_backward_weights")
    if fused is not None:
        return fused(grad_y, x, w, stride, padding)
    _, grad_w, grad_b = get_backend().conv2d_backward(grad_y, x, w, stride, padding)
    return grad_w, grad_b


# --------------------------------------------------------------------------- + ReLU
def conv2d_relu(x, w, b=None, stride=1, padding=0) -> np.ndarray:
    """Plain `fastconv.functional.conv2d_relu`."""
    x, w, stride, padding, _ = conv_args(x, w, stride, padding, "conv2d_relu")
    b = bias_arg(b, x, w)
    fused = optional_kernel("conv2d_relu")
    if fused is not None:
        return fused(x, w, b, stride, padding)
    y = get_backend().conv2d(x, w, b, stride, padding)
    return np.maximum(y, 0, out=y)


def conv2d_relu_backward(grad_y, y, x, w, stride=1, padding=0, input_grad=True):
    """Plain `fastconv.functional.conv2d_relu_backward`: ``(grad_x, grad_w, grad_b)``."""
    x, w, stride, padding, (out_h, out_w) = conv_args(x, w, stride, padding, "conv2d_relu_backward")
    grad_y = float_array(grad_y, "grad_y", 4, "(N, C_out, out_h, out_w)")
    y = float_array(y, "y", 4, "(N, C_out, out_h, out_w)")
    same_dtype(x, "x", grad_y=grad_y, y=y)
    expected = (x.shape[0], w.shape[0], out_h, out_w)
    expect_shape(grad_y, "grad_y", expected)
    expect_shape(y, "y", expected)
    return _relu_backward(grad_y, y, x, w, stride, padding, bool(input_grad))


def _relu_backward(grad_y, y, x, w, stride, padding, input_grad):
    fused = optional_kernel("conv2d_relu_backward")
    if fused is not None:
        return fused(grad_y, y, x, w, stride, padding, input_grad)
    grad_z = grad_y * (y > 0).astype(grad_y.dtype)
    if not input_grad:
        return (None, *backward_weights(grad_z, x, w, stride, padding))
    return get_backend().conv2d_backward(grad_z, x, w, stride, padding)


# --------------------------------------------------------------------------- + ReLU + avgpool
def _pool2_args(x, w, stride, padding, what):
    x, w, stride, padding, (out_h, out_w) = conv_args(x, w, stride, padding, what)
    if out_h < 2 or out_w < 2:
        raise ValueError(f"{what}: the convolution's output ({out_h}x{out_w}) is smaller than "
                         "the 2x2 pooling window")
    return x, w, stride, padding, (out_h, out_w)


def conv2d_relu_avgpool2(x, w, b=None, stride=1, padding=0):
    """Plain `fastconv.functional.conv2d_relu_avgpool2`: ``(pooled, y)``."""
    x, w, stride, padding, _ = _pool2_args(x, w, stride, padding, "conv2d_relu_avgpool2")
    b = bias_arg(b, x, w)
    fused = optional_kernel("conv2d_relu_avgpool2")
    if fused is not None:
        return fused(x, w, b, stride, padding)
    y = conv2d_relu(x, w, b, stride, padding)
    return get_backend().avg_pool2d(y, *POOL2), y


def conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, stride=1, padding=0, input_grad=True):
    """Plain `fastconv.functional.conv2d_relu_avgpool2_backward`:
    ``(grad_x, grad_w, grad_b)``."""
    x, w, stride, padding, (out_h, out_w) = _pool2_args(
        x, w, stride, padding, "conv2d_relu_avgpool2_backward")
    grad_pooled = float_array(grad_pooled, "grad_pooled", 4, "(N, C_out, out_h // 2, out_w // 2)")
    y = float_array(y, "y", 4, "(N, C_out, out_h, out_w)")
    same_dtype(x, "x", grad_pooled=grad_pooled, y=y)
    expect_shape(y, "y", (x.shape[0], w.shape[0], out_h, out_w))
    expect_shape(grad_pooled, "grad_pooled", (x.shape[0], w.shape[0], out_h // 2, out_w // 2))
    fused = optional_kernel("conv2d_relu_avgpool2_backward")
    if fused is not None:
        return fused(grad_pooled, y, x, w, stride, padding, bool(input_grad))
    grad_y = get_backend().avg_pool2d_backward(grad_pooled, y.shape, *POOL2)
    return _relu_backward(grad_y, y, x, w, stride, padding, bool(input_grad))
