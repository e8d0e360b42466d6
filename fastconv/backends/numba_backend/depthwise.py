"""Depthwise convolution (``groups == C_in``, any channel multiplier): forward,
backward, and the transposed convolution of a depthwise kernel (its input gradient
plus a bias).  Stride 1 runs on stacks of planes in explicit vectors
(``kernels/depthwise_stacked.py``), other strides on the per-plane stride-phase
kernels of ``kernels/depthwise.py``."""

from __future__ import annotations

import numpy as np

from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import depthwise as _dw
from fastconv.backends.numba_backend.kernels import depthwise_stacked as _stacked
from fastconv.backends.numba_backend.kernels.simd import lanes as _lanes

# A stack of planes (`kernels/depthwise_stacked.py`) holds about this many positions:
# 16 KB of float32 per buffer, so a thread's buffers stay in L1/L2.
_STACK_POSITIONS = 4096


def supports(x_shape, w_shape, groups) -> bool:
    """Each output channel reads exactly one input channel."""
    return groups == x_shape[1] and w_shape[1] == 1


def _stack_layout(in_hw, kernel_hw, padding, dilation, itemsize):
    """(pwid, plane stride, tap offsets, margin) of a stack of planes with shared
    padding: rows ``pwid`` long, each plane's rows rounded up to whole vectors.

    A row's outputs must fit in it (``pwid >= out_w``) and its reads past the row end
    must land in the next row's left padding (``pwid >= W + pw``); the same for a
    plane's rows."""
    (height, width), (kh, kw), (ph, pw), (dh, dw) = in_hw, kernel_hw, padding, dilation
    out_h = height + 2 * ph - dh * (kh - 1)
    out_w = width + 2 * pw - dw * (kw - 1)
    pwid = max(width + pw, out_w)
    rows = max(height + ph, out_h)
    lanes = _lanes(itemsize)
    stride = -(-rows * pwid // lanes) * lanes
    offs = np.array([i * dh * pwid + j * dw for i in range(kh) for j in range(kw)], dtype=np.int64)
    return pwid, stride, offs, int(offs[-1])


def _stack_block(c_in, mult, stride):
    return max(1, min(c_in, _STACK_POSITIONS // (stride * mult)))


def forward(x, w, b, stride, padding, dilation):
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    out_h = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    if tuple(stride) == (1, 1):
        pwid, plane, offs, margin = _stack_layout((height, width), (kh, kw), padding, dilation, x.itemsize)
        block = _stack_block(c_in, c_out // c_in, plane)
        items = n * -(-c_in // block)
        rt.launch(_stacked.stacked_forward, x, w.reshape(c_out, kh * kw), b, *padding, offs, pwid, plane,
                  block, block * plane + margin + _lanes(x.itemsize), y,
                  rt.chunks(items, 2.0 * y.size * kh * kw))
        return y
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
    if tuple(stride) == (1, 1):
        pwid, plane, offs, margin = _stack_layout(in_hw, (kh, kw), padding, dilation, grad_y.itemsize)
        block = _stack_block(c_in, c_out // c_in, plane)
        chunks = rt.chunks(n * -(-c_in // block), 4.0 * grad_y.size * kh * kw)
        gw_parts = np.zeros((chunks, c_out, kh * kw), dtype=grad_y.dtype)
        gb_parts = np.zeros((chunks, c_out), dtype=grad_y.dtype)
        rt.launch(_stacked.stacked_backward, grad_y, x, w.reshape(c_out, kh * kw), bias, c_in, *padding,
                  offs, pwid, plane, block, margin, block * plane + margin + _lanes(grad_y.itemsize),
                  bool(need_grad_x), bool(need_grad_w), grad_x, gw_parts, gb_parts, chunks)
    else:
        chunks = rt.chunks(n * c_in, 4.0 * grad_y.size * kh * kw)
        gw_parts = np.zeros((chunks, c_out, kh, kw), dtype=grad_y.dtype)
        gb_parts = np.zeros((chunks, c_out), dtype=grad_y.dtype)
        rt.launch(_dw.depthwise_backward, grad_y, x, w3, np.ascontiguousarray(w3[:, ::-1, ::-1]), bias,
                  c_in, *in_hw, *stride, *padding, *dilation, bool(need_grad_x),
                  bool(need_grad_w), grad_x, gw_parts, gb_parts, chunks)
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
