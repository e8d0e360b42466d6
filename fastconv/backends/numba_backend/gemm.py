"""im2col + GEMM convolution: per-thread column buffers, single-threaded BLAS.

Each numba thread unfolds groups of images into its own L2-sized column buffer and
calls single-threaded BLAS on it (see ``kernels/gemm.py`` for why not one
whole-batch matmul); backward ``grad_w.T += cols @ G.T``, ``grad_cols = W.T @ G``,
col2im.  Wins once channel counts make the GEMM big (report 003).
"""

from __future__ import annotations

import importlib.util
import numpy as np

from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import gemm as _gemm

NAME = "gemm"
EXACT = True
FUSES_POOL = False

_HAS_SCIPY = None


def available() -> bool:
    """numba's ``np.dot`` needs SciPy's BLAS; without SciPy the GEMM paths cannot run."""
    global _HAS_SCIPY
    if _HAS_SCIPY is None:
        _HAS_SCIPY = importlib.util.find_spec("scipy") is not None
    return _HAS_SCIPY


def supports(x_shape, w_shape, stride, padding) -> bool:
    return available()


# Column buffer per thread and group of images: small enough to stay in L2 (2 MB per
# core here), large enough that the GEMM's short dimension (group * L) is not tiny.
_GEMM_GROUP_BYTES = 1 << 20


def _gemm_plan(n, depth, c_out, windows, itemsize):
    """(threads, images per group) for the per-thread GEMM."""
    chunks = rt.chunks(n, 2.0 * n * c_out * depth * windows, 1e6)
    if not rt.single_threaded_blas.available:
        chunks = 1
    per_thread = -(-n // chunks)
    group = max(1, min(per_thread, _GEMM_GROUP_BYTES // max(1, depth * windows * itemsize)))
    return chunks, group


def forward(x, w, b, stride, padding, relu):
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    out_h, out_w = rt.out_hw(height, width, (kh, kw), stride, padding)
    windows, depth = out_h * out_w, c_in * kh * kw
    y = np.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    chunks, group = _gemm_plan(n, depth, c_out, windows, x.itemsize)
    span = group * windows
    ws_cols = rt.workspace("cols", chunks * depth * span, x.dtype).reshape(chunks, depth * span)
    ws_rows = rt.workspace("rows", chunks * c_out * span, x.dtype).reshape(chunks, c_out * span)
    with rt.single_threaded_blas:
        rt.launch(_gemm.conv2d_gemm_forward, x, w.reshape(c_out, depth), b, kh, kw, sh, sw, ph, pw,
                out_h, out_w, bool(relu), group,
                y.reshape(n, c_out, windows), ws_cols, ws_rows, chunks)
    return y


def backward(grad_y, x, w, mask, stride, padding, need_grad_x):
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    out_h, out_w = grad_y.shape[2:]
    windows, depth = out_h * out_w, c_in * kh * kw
    chunks, group = _gemm_plan(n, depth, c_out, windows, x.itemsize)
    span = group * windows
    ws_cols = rt.workspace("cols", chunks * depth * span, x.dtype).reshape(chunks, depth * span)
    ws_rows = rt.workspace("rows", chunks * c_out * span, x.dtype).reshape(chunks, c_out * span)
    ws_w = rt.workspace("wpart", chunks * depth * c_out, x.dtype).reshape(chunks, depth, c_out)
    grad_w_parts = np.zeros((chunks, depth, c_out), dtype=x.dtype)   # transposed grad_w
    grad_b_parts = np.zeros((chunks, c_out), dtype=x.dtype)
    grad_x = np.empty_like(x) if need_grad_x else rt.dummy(x.dtype, 4)
    use_mask = mask is not None
    mask3 = mask.reshape(n, c_out, windows) if use_mask else rt.dummy(x.dtype, 3)
    w2 = w.reshape(c_out, depth)
    with rt.single_threaded_blas:
        rt.launch(_gemm.conv2d_gemm_backward, grad_y.reshape(n, c_out, windows), x, w2,
                np.ascontiguousarray(w2.T), mask3, use_mask,
                kh, kw, sh, sw, ph, pw, out_h, out_w, group,
                bool(need_grad_x), grad_x, grad_w_parts, grad_b_parts,
                ws_cols, ws_rows, ws_w, chunks)
    grad_w = grad_w_parts[0] if chunks == 1 else grad_w_parts.sum(axis=0)
    grad_b = grad_b_parts[0] if chunks == 1 else grad_b_parts.sum(axis=0)
    return (grad_x if need_grad_x else None), np.ascontiguousarray(grad_w.T).reshape(w.shape), grad_b
