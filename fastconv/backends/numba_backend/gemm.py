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
from fastconv.backends.numba_backend.kernels import im2col as _cols

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


# Column buffer per thread and group of images: ~1 MB keeps it in L2 (2 MB per core
# here) ...
_GEMM_GROUP_BYTES = 1 << 20
# ... but each GEMM should still have >= this many columns: below ~256, single-threaded
# sgemm drops from ~92 to ~70 GFLOP/s, and with large weights (512->512 3x3: 9 MB)
# every group re-reads them and re-writes a weight-sized grad_w part.
_GEMM_MIN_COLUMNS = 256
_GEMM_MAX_GROUP_BYTES = 16 << 20
# From this many output channels the weight gradient's GEMM runs faster producing
# grad_w in w's layout than transposed (OpenBLAS sgemm, measured per core here).
_W_LAYOUT_MIN_C_OUT = 384


def _gemm_plan(n, depth, c_out, windows, itemsize, pointwise=False):
    """(threads, images per group) for the per-thread GEMM; ``pointwise``: a 1x1
    convolution with stride 1 and no padding."""
    chunks = rt.chunks(n, 2.0 * n * c_out * depth * windows, 1e6)
    if not rt.single_threaded_blas.available:
        chunks = 1
    per_thread = -(-n // chunks)
    image_bytes = max(1, depth * windows * itemsize)
    if pointwise and windows >= _GEMM_MIN_COLUMNS:
        return chunks, 1        # one image per GEMM: no unfold, output written in place
    group = max(_GEMM_GROUP_BYTES // image_bytes, -(-_GEMM_MIN_COLUMNS // windows))
    group = max(1, min(per_thread, group, _GEMM_MAX_GROUP_BYTES // image_bytes))
    return chunks, group


def _pointwise(kh, kw, stride, padding) -> bool:
    return (kh, kw) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


def _split_channels(n, c_out, depth, windows) -> int:
    """Threads for splitting each image's GEMM over output channels: used when the
    batch has fewer images than threads (batch-1 inference), 0 otherwise."""
    if n >= rt.get_num_threads() or not rt.single_threaded_blas.available:
        return 0
    chunks = rt.chunks(c_out // 8, 2.0 * c_out * depth * windows, 1e6)   # >= 8 rows each
    return chunks if chunks > 1 else 0


def _forward_split(x, w, b, stride, padding, relu, out_hw, chunks):
    """Image by image: a parallel unfold (over channel planes), then the GEMM split
    over output channels (`_gemm.gemm_rows_forward`)."""
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    windows, depth = out_hw[0] * out_hw[1], c_in * kh * kw
    y = np.empty((n, c_out, windows), dtype=x.dtype)
    cols_buffer = rt.workspace("cols", depth * windows, x.dtype).reshape(depth, windows)
    w2 = w.reshape(c_out, depth)
    with rt.single_threaded_blas:
        for i in range(n):
            if _pointwise(kh, kw, stride, padding):
                cols = x[i].reshape(depth, windows)
            else:
                cols = cols_buffer
                rt.launch(_cols.im2col_into, x[i:i + 1], kh, kw, *stride, *padding, *out_hw,
                          cols.reshape(-1), windows, depth * windows, rt.chunks(c_in, cols.size))
            rt.launch(_gemm.gemm_rows_forward, w2, cols, b, bool(relu), y[i], chunks)
    return y.reshape(n, c_out, *out_hw)


def forward(x, w, b, stride, padding, relu):
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    out_h, out_w = rt.out_hw(height, width, (kh, kw), stride, padding)
    windows, depth = out_h * out_w, c_in * kh * kw
    split = _split_channels(n, c_out, depth, windows)
    if split:
        return _forward_split(x, w, b, stride, padding, relu, (out_h, out_w), split)
    y = np.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    chunks, group = _gemm_plan(n, depth, c_out, windows, x.itemsize, _pointwise(kh, kw, stride, padding))
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
    chunks, group = _gemm_plan(n, depth, c_out, windows, x.itemsize, _pointwise(kh, kw, stride, padding))
    span = group * windows
    ws_cols = rt.workspace("cols", chunks * depth * span, x.dtype).reshape(chunks, depth * span)
    ws_rows = rt.workspace("rows", chunks * c_out * span, x.dtype).reshape(chunks, c_out * span)
    w_layout = c_out >= _W_LAYOUT_MIN_C_OUT
    part_shape = (chunks, c_out, depth) if w_layout else (chunks, depth, c_out)
    ws_w = rt.workspace("wpart", chunks * depth * c_out, x.dtype).reshape(part_shape)
    grad_w_parts = np.empty(part_shape, dtype=x.dtype)
    grad_b_parts = np.empty((chunks, c_out), dtype=x.dtype)
    grad_x = np.empty_like(x) if need_grad_x else rt.dummy(x.dtype, 4)
    use_mask = mask is not None
    mask3 = mask.reshape(n, c_out, windows) if use_mask else rt.dummy(x.dtype, 3)
    with rt.single_threaded_blas:
        rt.launch(_gemm.conv2d_gemm_backward, grad_y.reshape(n, c_out, windows), x, w.reshape(c_out, depth),
                  mask3, use_mask, kh, kw, sh, sw, ph, pw, out_h, out_w, group,
                  bool(need_grad_x), grad_x, w_layout, grad_w_parts, grad_b_parts,
                  ws_cols, ws_rows, ws_w, chunks)
    if w_layout:
        grad_w = grad_w_parts[0] if chunks == 1 else grad_w_parts.sum(axis=0)
    else:     # reduced and transposed in one parallel pass
        grad_w = np.empty((c_out, depth), dtype=x.dtype)
        rt.launch(_gemm.sum_transposed, grad_w_parts, grad_w, rt.chunks((c_out + 15) // 16, grad_w_parts.size))
    grad_b = grad_b_parts[0] if chunks == 1 else grad_b_parts.sum(axis=0)
    return (grad_x if need_grad_x else None), grad_w.reshape(w.shape), grad_b
