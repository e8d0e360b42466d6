"""Depthwise convolution (``groups == C_in``, any channel multiplier) on the direct
kernels of ``kernels/depthwise.py``: forward, backward, and the transposed
convolution of a depthwise kernel (its input gradient plus a bias)."""

from __future__ import annotations

import numpy as np

from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import depthwise as _dw


def supports(x_shape, w_shape, groups) -> bool:
    """Each output channel reads exactly one input channel."""
    return groups == x_shape[1] and w_shape[1] == 1


def forward(x, w, b, stride, padding, dilation):
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    out_h = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    chunks = rt.chunks(n * c_in, 2.0 * y.size * kh * kw)
    rt.launch(_dw.depthwise_forward, x, w.reshape(c_out, kh, kw), b, *stride, *padding, *dilation,
              y, chunks)
    return y


def _input_grad_and_weights(grad_y, x, w, bias, c_in, in_hw, stride, padding, dilation,
                            need_grad_x, need_grad_w, grad_x):
    """Run the backward kernel; returns the summed (grad_w, grad_b)."""
    n = grad_y.shape[0]
    c_out, _, kh, kw = w.shape
    w3 = w.reshape(c_out, kh, kw)
    chunks = rt.chunks(n * c_in, 4.0 * grad_y.size * kh * kw)
    gw_parts = np.zeros((chunks, c_out, kh, kw), dtype=grad_y.dtype)
    gb_parts = np.zeros((chunks, c_out), dtype=grad_y.dtype)
    rt.launch(_dw.depthwise_backward, grad_y, x, w3, np.ascontiguousarray(w3[:, ::-1, ::-1]), bias,
              c_in, *in_hw, *stride, *padding, *dilation, bool(need_grad_x), bool(need_grad_w),
              grad_x, gw_parts, gb_parts, chunks)
    grad_w = (gw_parts.sum(axis=0) if chunks > 1 else gw_parts[0]).reshape(w.shape)
    return grad_w, (gb_parts.sum(axis=0) if chunks > 1 else gb_parts[0])


def backward(grad_y, x, w, stride, padding, dilation, input_grad):
    c_in = x.shape[1]
    grad_x = np.empty_like(x) if input_grad else rt.dummy(x.dtype, 4)
    grad_w, grad_b = _input_grad_and_weights(
        grad_y, x, w, np.zeros(c_in, dtype=x.dtype), c_in, x.shape[2:], stride, padding, dilation,
        input_grad, True, grad_x)
    return (grad_x if input_grad else None), grad_w, grad_b


def transpose(x, w, b, stride, padding, dilation, groups, out_hw):
    """``conv_transpose2d`` with ``w`` ``(C_in, 1, kh, kw)``: the input gradient of the
    depthwise convolution ``(N, groups, *out_hw) -> x``, plus ``b``."""
    y = np.empty((x.shape[0], groups, *out_hw), dtype=x.dtype)
    _input_grad_and_weights(x, rt.dummy(x.dtype, 4), w, b, groups, out_hw, stride, padding,
                            dilation, True, False, y)
    return y


def transpose_backward(grad_y, x, w, stride, padding, dilation):
    """Gradients of `transpose`: the depthwise convolution of ``grad_y`` (only the
    windows ``x`` has), and its weight gradient with ``x`` as the output gradient."""
    bias = np.zeros(x.shape[1], dtype=x.dtype)
    grad_x = np.empty_like(x)
    chunks = rt.chunks(x.shape[0] * grad_y.shape[1], 2.0 * x.size * w.shape[2] * w.shape[3])
    rt.launch(_dw.depthwise_forward, grad_y, w.reshape(w.shape[0], *w.shape[2:]), bias,
              *stride, *padding, *dilation, grad_x, chunks)
    grad_w, _ = _input_grad_and_weights(x, grad_y, w, bias, grad_y.shape[1], grad_y.shape[2:], stride,
                                        padding, dilation, False, True, rt.dummy(x.dtype, 4))
    return grad_x, grad_w, grad_y.sum(axis=(0, 2, 3))
