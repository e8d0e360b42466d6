"""Grouped / dilated convolution and transposed convolution by per-thread GEMMs
(see ``kernels/grouped.py``): planning, workspaces and the BLAS thread limit.

Needs a BLAS (`blas`), like the plain GEMM path: check
`gemm.available` first.
"""

from __future__ import annotations

import numpy as np

from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import grouped as _grouped


def _chunks(items: int, flops: float) -> int:
    """Threads for a per-item GEMM kernel: one per thread, each worth >= 1 MFLOP, and
    only one when BLAS cannot be made single-threaded (it would then fight numba)."""
    if not rt.single_threaded_blas.available:
        return 1
    return rt.chunks(items, flops, 1e6)


def _out_hw(in_hw, kernel_size, stride, padding, dilation):
    return tuple((size + 2 * p - d * (k - 1) - 1) // s + 1
                 for size, k, s, p, d in zip(in_hw, kernel_size, stride, padding, dilation))


def _pointwise(w_shape, stride, padding) -> bool:
    """1x1, stride 1, no padding: every plane is its own column row, nothing to unfold."""
    return tuple(w_shape[2:]) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


def _weight_grad(gw_parts, w_shape):
    """grad_w of shape ``w_shape`` from the threads' transposed parts (T, G, K, Og)."""
    _, groups, depth, og = gw_parts.shape
    grad_w = np.empty((groups, og, depth), dtype=gw_parts.dtype)
    rt.launch(_grouped.sum_parts_transposed, gw_parts, grad_w, rt.chunks(groups * -(-depth // 32), gw_parts.size))
    return grad_w.reshape(w_shape)


def forward(x, w, b, stride, padding, dilation, groups):
    n, c_in = x.shape[:2]
    c_out, cg, kh, kw = w.shape
    out_h, out_w = _out_hw(x.shape[2:], (kh, kw), stride, padding, dilation)
    depth, windows = cg * kh * kw, out_h * out_w
    y = np.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    chunks = _chunks(n * groups, 2.0 * y.size * depth)
    ws_cols = rt.workspace("grouped_cols", chunks * depth * windows, x.dtype).reshape(chunks, -1)
    with rt.single_threaded_blas:
        rt.launch(_grouped.grouped_forward, x, w.reshape(groups, c_out // groups, depth), b,
                  kh, kw, *stride, *padding, *dilation, out_h, out_w, _pointwise(w.shape, stride, padding),
                  y.reshape(n, c_out, windows), ws_cols, chunks)
    return y


def backward(grad_y, x, w, stride, padding, dilation, groups, input_grad):
    n = x.shape[0]
    c_out, cg, kh, kw = w.shape
    og = c_out // groups
    out_h, out_w = grad_y.shape[2:]
    depth, windows = cg * kh * kw, out_h * out_w
    chunks = _chunks(n * groups, 4.0 * grad_y.size * depth)
    ws_cols = rt.workspace("grouped_cols", chunks * depth * windows, x.dtype).reshape(chunks, -1)
    gw_parts = rt.parts_workspace("grad_w_parts", (chunks, groups, depth, og), x.dtype, zero=True)  # transposed
    gb_parts = np.zeros((chunks, c_out), dtype=x.dtype)
    grad_x = np.empty_like(x) if input_grad else rt.dummy(x.dtype, 4)
    with rt.single_threaded_blas:
        rt.launch(_grouped.grouped_backward, grad_y.reshape(n, c_out, windows), x,
                  w.reshape(groups, og, depth), kh, kw, *stride, *padding, *dilation, out_h, out_w,
                  bool(input_grad), _pointwise(w.shape, stride, padding), grad_x, gw_parts, gb_parts,
                  ws_cols, chunks)
    grad_w = _weight_grad(gw_parts, w.shape)
    grad_b = gb_parts.sum(axis=0) if chunks > 1 else gb_parts[0]
    return (grad_x if input_grad else None), grad_w, grad_b


# Transposed convolution: images side by side in one GEMM until it has this many
# columns (a 4x4 input's grid is 20: alone, its GEMMs ran at a fifth of the peak).
_MIN_GEMM_COLUMNS = 256


def _transpose_plan(n, groups, channels, grid):
    """(images per batch, channels per block, work items) of a transposed-convolution
    kernel: batches of images whose grids make a GEMM wide enough, and with fewer
    (group, batch) pairs than threads, the ``channels`` split into blocks."""
    batch = min(n, -(-_MIN_GEMM_COLUMNS // grid))
    pairs = groups * -(-n // batch)
    threads = rt.get_num_threads() if rt.single_threaded_blas.available else 1
    block = max(1, channels // -(-threads // pairs))
    return batch, block, pairs * -(-channels // block)


def transpose(x, w, b, stride, padding, dilation, groups, out_hw):
    """``conv_transpose2d``: ``w`` is ``(C_in, C_out/G, kh, kw)``, the weights of the
    convolution ``(N, C_out, *out_hw) -> x`` whose input gradient this is."""
    n, c_in, in_h, in_w = x.shape
    _, cg, kh, kw = w.shape
    c_out = cg * groups
    og, depth = c_in // groups, cg * kh * kw
    y = np.empty((n, c_out, *out_hw), dtype=x.dtype)
    windows = in_h * in_w
    batch, block, items = _transpose_plan(n, groups, cg, windows)
    chunks = _chunks(items, 2.0 * x.size * cg * kh * kw)
    ws_cols = rt.workspace("grouped_cols", chunks * block * kh * kw * batch * windows, x.dtype).reshape(chunks, -1)
    with rt.single_threaded_blas:
        rt.launch(_grouped.grouped_transpose, x.reshape(n, c_in, in_h * in_w), w.reshape(groups, og, depth), b,
                  kh, kw, *stride, *padding, *dilation, in_h, in_w, y, batch, block, ws_cols, chunks)
    return y


# The transposed backward's weight gradient as ``cols @ x.T`` (OpenBLAS ran it 5-35 %
# faster than ``x @ cols.T``) when its GEMMs have this many columns of x in all; it
# must then be transposed back, which cost more than that saved on batch 1 at 8x8
# (256 -> 128: 1.08 against 0.85 ms).
_TRANSPOSED_WEIGHT_GRAD_COLUMNS = 1024


def transpose_backward(grad_y, x, w, stride, padding, dilation, groups):
    """Gradients of `transpose`: ``(grad_x, grad_w, grad_b)`` in one pass per item."""
    n, c_in, in_h, in_w = x.shape
    _, cg, kh, kw = w.shape
    og, depth = c_in // groups, cg * kh * kw
    windows = in_h * in_w
    batch, block, items = _transpose_plan(n, groups, og, windows)
    chunks = _chunks(items, 4.0 * x.size * cg * kh * kw)
    ws_cols = rt.workspace("grouped_cols", chunks * depth * batch * windows, x.dtype).reshape(chunks, -1)
    grad_x = np.empty_like(x)
    w_transposed = n * windows >= _TRANSPOSED_WEIGHT_GRAD_COLUMNS
    gw_parts = rt.parts_workspace("grad_w_parts", (chunks, groups, *((depth, og) if w_transposed else (og, depth))),
                                  x.dtype, zero=True)
    gb_parts = np.zeros((chunks, cg * groups), dtype=x.dtype)
    with rt.single_threaded_blas:
        rt.launch(_grouped.grouped_transpose_backward, grad_y, x.reshape(n, c_in, in_h * in_w),
                  w.reshape(groups, og, depth), kh, kw, *stride, *padding, *dilation, in_h, in_w,
                  grad_x.reshape(n, c_in, in_h * in_w), gw_parts, w_transposed, gb_parts, batch, block,
                  ws_cols, chunks)
    if w_transposed:
        grad_w = _weight_grad(gw_parts, w.shape)
    else:
        grad_w = rt.summed(gw_parts).reshape(w.shape)
    return grad_x, grad_w, (gb_parts.sum(axis=0) if chunks > 1 else gb_parts[0])
