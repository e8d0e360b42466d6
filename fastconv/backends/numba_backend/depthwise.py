"""Depthwise convolution (``groups == C_in``, any channel multiplier): forward,
backward, and the transposed convolution of a depthwise kernel (its input gradient
plus a bias), on stacks of planes in explicit vectors (``kernels/depthwise.py``)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import depthwise as _kernels
from fastconv.backends.numba_backend.kernels.simd import lanes as _lanes

# A stack of planes (`kernels/depthwise.py`) holds about this many positions:
# 16 KB of float32 per buffer, so a thread's buffers stay in L1/L2.
_STACK_POSITIONS = 4096


def supports(x_shape, w_shape, groups) -> bool:
    """Each output channel reads exactly one input channel."""
    return groups == x_shape[1] and w_shape[1] == 1


class _StackLayout(NamedTuple):
    """Where a plane's pixels, outputs and taps lie in a stack (``kernels/depthwise.py``)."""

    pwid: int              # row length of the grid
    phase_size: int        # positions of one stride phase (strides 1 and (2, 2): a whole entry)
    in_stride: int         # positions between consecutive planes' inputs
    out_stride: int        # ... and outputs / output gradients (whole vectors)
    offs: np.ndarray       # tap t of output position q reads input q + offs[t]
    margin: int            # zeros before the output gradient: its largest shift
    phase_ptr: np.ndarray  # input-gradient phase P: taps phase_taps[phase_ptr[P]:phase_ptr[P+1]]
    phase_taps: np.ndarray
    back_offs: np.ndarray  # ... reading the output gradient at q + back_offs[t] (<= 0)
    pair_vec: int          # stride (2, 2): vectors of a plane's outputs computed, ...
    row_vec: int           # ... this many per output row (`kernels.depthwise._pair_start`)


def _stack_layout(in_hw, kernel_hw, stride, padding, dilation, itemsize) -> _StackLayout:
    """Stride 1: shared padding, rows ``pwid`` long, a row's right padding the next
    row's left one, each entry's rows rounded up to whole vectors.  A row's outputs
    must fit in it (``pwid >= out_w``) and its reads past the row end land in the next
    row's left padding (``pwid >= W + pw``); the same for an entry's rows.

    Stride (2, 2): the same grid, output ``q`` reading input ``2q + offs[t]``, so an
    input entry is two output entries.  Other strides: each entry holds its plane's
    stride phases (`kernels.phases`), and an output entry is long enough that the
    input gradient's reads of one plane (back by at most ``margin``, forward by at
    most a phase) stay inside it."""
    (height, width), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = in_hw, kernel_hw, stride, padding, dilation
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    lanes = _lanes(itemsize)
    whole = lambda positions: -(-positions // lanes) * lanes                     # noqa: E731
    taps = [(i * dh, j * dw) for i in range(kh) for j in range(kw)]
    if (sh, sw) == (1, 1):
        pwid = max(width + pw, out_w)
        phase_size = in_stride = out_stride = whole(max(height + ph, out_h) * pwid)
        phases = [0] * len(taps)
    elif (sh, sw) == (2, 2):
        # Output q = oh*pwid + ow of the shared-padding grid reads input 2q + offs[t]
        # (the even lanes of two loads): half of each output row is dropped, but no
        # phase copies (on 14x14 planes those cost 3x the arithmetic).
        pwid = max(width + pw, out_w)
        out_stride = whole(max(out_h * pwid, -(-(height + ph) * pwid // 2)))
        phase_size = in_stride = 2 * out_stride
        offs = np.array([r * pwid + c for r, c in taps], dtype=np.int64)
        # Half of each grid row is dropped output; where an output row's vectors fit
        # in a grid row, run over the rows' vectors only (28x28 outputs: 56 vectors
        # instead of 100).  Their overhang lands in the dropped half.
        pair_vec = row_vec = -(-((out_h - 1) * pwid + out_w) // lanes)
        if -(-out_w // lanes) * lanes <= pwid and out_h * -(-out_w // lanes) < pair_vec:
            row_vec = -(-out_w // lanes)
            pair_vec = out_h * row_vec
        return _StackLayout(pwid, phase_size, in_stride, out_stride, offs, int(offs[-1]) // 2 + 1,
                            np.array([0, len(taps)], dtype=np.int64), np.arange(len(taps), dtype=np.int64),
                            np.zeros(len(taps), dtype=np.int64), pair_vec, row_vec)
    else:
        pwid = -(-(width + 2 * pw) // sw)
        phase_size = -(-(height + 2 * ph) // sh) * pwid
        phases = [(r % sh) * sw + c % sw for r, c in taps]
    shifts = [(r // sh) * pwid + c // sw for r, c in taps]
    margin = max(shifts)
    if (sh, sw) != (1, 1):
        in_stride = whole(sh * sw * phase_size)
        out_stride = whole(max(out_h * pwid + margin, phase_size))
    offs = np.array([p * phase_size + shift for p, shift in zip(phases, shifts)], dtype=np.int64)
    order = sorted(range(len(taps)), key=lambda t: phases[t])
    counts = np.bincount(phases, minlength=sh * sw)
    return _StackLayout(pwid, phase_size, in_stride, out_stride, offs, margin,
                        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                        np.array(order, dtype=np.int64), -np.array([shifts[t] for t in order], dtype=np.int64),
                        out_stride // lanes, out_stride // lanes)


def _stack_block(c_in, mult, layout):
    return max(1, min(c_in, _STACK_POSITIONS // (max(layout.in_stride, layout.out_stride * mult))))


def forward(x, w, b, stride, padding, dilation):
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    out_h = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return _forward_into(x, w, b, stride, padding, dilation, np.empty((n, c_out, out_h, out_w), dtype=x.dtype))


def _forward_into(x, w, b, stride, padding, dilation, y):
    """The forward pass into ``y``, whose planes may be smaller than the full output
    (the transposed convolution's backward keeps only the windows its input has)."""
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    layout = _stack_layout((height, width), (kh, kw), stride, padding, dilation, x.itemsize)
    block = _stack_block(c_in, c_out // c_in, layout)
    rt.launch(_kernels.depthwise_forward, x, w.reshape(c_out, kh * kw), b, *padding, *stride, layout.offs,
              layout.pwid, layout.phase_size, layout.in_stride, layout.out_stride, layout.pair_vec, layout.row_vec,
              block, y, rt.chunks(n * -(-c_in // block), 2.0 * y.size * kh * kw))
    return y


def _input_grad_and_weights(grad_y, x, w, bias, c_in, in_hw, stride, padding, dilation,
                            need_grad_x, need_grad_w, grad_x):
    """Run the backward kernel; returns the summed (grad_w, grad_b)."""
    n = grad_y.shape[0]
    c_out, _, kh, kw = w.shape
    layout = _stack_layout(in_hw, (kh, kw), stride, padding, dilation, grad_y.itemsize)
    block = _stack_block(c_in, c_out // c_in, layout)
    chunks = rt.chunks(n * -(-c_in // block), 4.0 * grad_y.size * kh * kw)
    gw_parts = np.zeros((chunks, c_out, kh * kw), dtype=grad_y.dtype)
    gb_parts = np.zeros((chunks, c_out), dtype=grad_y.dtype)
    rt.launch(_kernels.depthwise_backward, grad_y, x, w.reshape(c_out, kh * kw), bias, c_in, *padding, *stride,
              layout.offs, layout.phase_ptr, layout.phase_taps, layout.back_offs, layout.pwid,
              layout.phase_size, layout.in_stride, layout.out_stride, layout.pair_vec, layout.row_vec, block,
              layout.margin, bool(need_grad_x), bool(need_grad_w), grad_x, gw_parts, gb_parts, chunks)
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
    grad_x = _forward_into(grad_y, w, bias, stride, padding, dilation, np.empty_like(x))
    grad_w, _ = _input_grad_and_weights(x, grad_y, w, bias, grad_y.shape[1], grad_y.shape[2:], stride,
                                        padding, dilation, False, True, rt.dummy(x.dtype, 4))
    return grad_x, grad_w, grad_y.sum(axis=(0, 2, 3))
