"""im2col + GEMM convolution: per-thread column buffers, single-threaded BLAS.

Each numba thread unfolds groups of images into its own L2-sized column buffer and
calls single-threaded BLAS on it (see ``kernels/gemm.py`` for why not one
whole-batch matmul); backward ``grad_w.T += cols @ G.T``, ``grad_cols = W.T @ G``,
col2im.  Wins once channel counts make the GEMM big (report 003).  A forward with few
output positions (deep layers at batch 1-8) skips the BLAS (`_skinny`); on frozen
weights one with a few dozen to 256 runs on their packed panels (`forward_packed`).
"""

from __future__ import annotations

import functools

import numpy as np

from fastconv.backends.numba_backend import blas as _blas
from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import gemm as _gemm
from fastconv.backends.numba_backend.kernels import gemm_packed as _packed_kernels
from fastconv.backends.numba_backend.kernels import gemm_skinny as _skinny_kernels
from fastconv.backends.numba_backend.kernels import im2col as _cols
from fastconv.backends.numba_backend.kernels import simd

NAME = "gemm"
EXACT = True
FUSES_POOL = False
TAKES_PANELS = True   # frozen weights: `forward` gets their packed panels

def available() -> bool:
    """Whether the kernels' GEMMs have a BLAS to call (MKL or SciPy's OpenBLAS, bound
    by `blas.provider`); without one the GEMM paths cannot run."""
    return _blas.provider() != "none"


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


# A band needs this many output pixels (GEMM columns) per thread; below it, splitting
# the GEMM over output channels measured faster (at batch 1, 2 threads: bands won
# 1.1-2.0x from 3->64 7x7/2 @112 to 64->64 3x3 @56 and tied at 32 columns
# (64->64 @8), channels won 1.2-1.7x at 8-28 columns with 256-512 channels).
_BAND_MIN_COLUMNS = 64


def _small_batch_split(n, c_out, depth, out_hw, pointwise):
    """How a batch with fewer images than threads (batch-1 inference) still uses every
    core: ``("bands", threads)`` (each thread a band of output rows), ``("channels",
    threads)`` (each image's GEMM split over output channels), or None (one thread,
    or a batch big enough to split over images)."""
    if n >= rt.get_num_threads() or not rt.single_threaded_blas.available:
        return None
    work = 2.0 * n * c_out * depth * out_hw[0] * out_hw[1]
    bands = rt.chunks(out_hw[0], work, 1e6)
    if not pointwise and bands > 1 and out_hw[0] // bands * out_hw[1] >= _BAND_MIN_COLUMNS:
        return "bands", bands
    chunks = rt.chunks(c_out // 8, work, 1e6)   # >= 8 rows each
    return ("channels", chunks) if chunks > 1 else None


def _forward_channels(x, w, b, stride, padding, relu, out_hw, chunks):
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


def _forward_bands(x, w, b, stride, padding, relu, out_hw, chunks):
    """Each thread a band of output rows of every image (`_gemm.conv2d_gemm_forward_bands`)."""
    n, c_in = x.shape[:2]
    c_out, _, kh, kw = w.shape
    depth, span = c_in * kh * kw, -(-out_hw[0] // chunks) * out_hw[1]
    y = np.empty((n, c_out, *out_hw), dtype=x.dtype)
    ws_cols = rt.workspace("cols", chunks * depth * span, x.dtype).reshape(chunks, depth * span)
    ws_rows = rt.workspace("rows", chunks * c_out * span, x.dtype).reshape(chunks, c_out * span)
    with rt.single_threaded_blas:
        rt.launch(_gemm.conv2d_gemm_forward_bands, x, w.reshape(c_out, depth), b, kh, kw, *stride, *padding,
                  *out_hw, bool(relu), y.reshape(n, c_out, -1), ws_cols, ws_rows, chunks)
    return y


# A forward GEMM with at most this many columns (output positions of the whole batch)
# runs on `kernels/gemm_skinny` instead of the BLAS, which packs the weights on every
# call.  Forward, 2 threads, each call on weights not in cache, against the BLAS path:
# 512->512 3x3 at 1x1, 2x2 (1-8 columns) 2.1-3.2x and 1.5x faster, 256->512 and
# 256->256 at 2x2 1.7-2.0x, 128->256 1.1x, 64->128 0.97x (53 us); at 16 columns from
# 0.61x (64->128 at 4x4) to 1.2x (256->512 1x1/2 at 7x7), at 32 0.71-0.78x.  A 1x1
# stride-1 layer, a GEMM on the input as it is, stays on the BLAS (1024->1024 at 1x1:
# 0.73x; 256->512 at 3x3: 0.70x).
_SKINNY_MAX_COLUMNS = 8


def _skinny(columns, depth, itemsize, pointwise) -> bool:
    """Whether the forward GEMM runs `_forward_skinny`: few columns, an unfolded input
    and a depth of whole vectors (its blocks have no tail)."""
    return columns <= _SKINNY_MAX_COLUMNS and not pointwise and depth % simd.lanes(itemsize) == 0


def _forward_skinny(x, w, b, stride, padding, relu, out_hw):
    n, c_in = x.shape[:2]
    c_out, _, kh, kw = w.shape
    windows, depth = out_hw[0] * out_hw[1], c_in * kh * kw
    rows = np.empty((n * windows, depth), dtype=x.dtype)
    _skinny_kernels.im2row(x, kh, kw, *stride, *padding, *out_hw, rows)
    y = np.empty((n, c_out, windows), dtype=x.dtype)
    chunks = rt.chunks(-(-c_out // _skinny_kernels.WG_BLOCK), 2.0 * rows.size * c_out)
    rt.launch(_skinny_kernels.skinny_forward, w.reshape(c_out, depth), rows, b, bool(relu), y, chunks)
    return y.reshape(n, c_out, *out_hw)


# Frozen weights: a forward with more columns than the few-column GEMM takes and at
# most this many runs on their packed panels (`kernels/gemm_packed`).  Forward, 2
# threads, autotuned, frozen against writeable weights (bench/frozen_weights.py, two
# runs): 512->512 3x3 at 4x4, batch 1 (16 columns) 1.59-1.66x, batch 8 1.28-1.33x;
# at 2x2, batch 8 1.40-1.67x; 256->256 at 8x8, batch 1 1.15-1.45x, at 14x14 (196
# columns) 1.13-1.21x.  With 1-8 columns the few-column GEMM stays faster
# (0.44-0.73x); a 1x1 stride-1 layer keeps its BLAS GEMM on the input as it is.
_PACKED_MAX_COLUMNS = 256


# A dilated layer's plans (`general`) time the panels up to this many columns, where
# the per-thread partial sums (columns x one vector) still fit 256 KB of L2: its
# other plans compute the padding taps on shifted views or sub-grids (DeepLab's
# 512->512 dilation 4 at 14x14, batch 8, 1568 columns: panels 42-43 ms, shifted
# views 54-56).
_PACKED_MAX_COLUMNS_TIMED = 4096


def packed_fits(columns: int, timed: bool = False) -> bool:
    """Whether a forward of ``columns`` output positions (the whole batch's) runs on
    frozen weights' panels (``timed``: may be timed against other plans)."""
    return _SKINNY_MAX_COLUMNS < columns <= (_PACKED_MAX_COLUMNS_TIMED if timed else _PACKED_MAX_COLUMNS)


def forward_packed(x, panels, b, stride, padding, relu, out_hw, c_out, kernel, dilation=(1, 1)):
    """The GEMM on frozen weights' panels, reading the zero-padded input in place
    (any stride and dilation: they only move the offsets)."""
    n, c_in, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    hp, wp = height + 2 * ph, width + 2 * pw
    src = x
    if ph or pw:
        src = np.zeros((n, c_in, hp, wp), dtype=x.dtype)
        src[:, :, ph:ph + height, pw:pw + width] = x
    taps, offs = _packed_offsets(n, c_in, hp, wp, kernel, stride, dilation, tuple(out_hw))
    y = np.empty((n, c_out, out_hw[0] * out_hw[1]), dtype=x.dtype)
    depth = taps.size
    chunks = rt.chunks(panels.size // (depth * simd.lanes(x.dtype)), 2.0 * c_out * depth * offs.size)
    rt.launch(_packed_kernels.packed_forward, panels, src.reshape(-1), taps, offs, b, bool(relu), y, chunks)
    return y.reshape(n, c_out, *out_hw)


@functools.lru_cache(maxsize=256)
def _packed_offsets(n, c_in, hp, wp, kernel, stride, dilation, out_hw):
    """(taps, offs) of `kernels.gemm_packed.packed_forward` for a padded input of
    ``(n, c_in, hp, wp)``: computed once per geometry (30-40 us each time otherwise).
    Shared between calls, never written."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    c, i, j = np.ix_(np.arange(c_in), np.arange(kh), np.arange(kw))
    taps = ((c * hp + i * dh) * wp + j * dw).ravel().astype(np.int64)
    img, oh, ow = np.ix_(np.arange(n), np.arange(out_hw[0]), np.arange(out_hw[1]))
    starts = ((img * c_in * hp + oh * sh) * wp + ow * sw).ravel()
    block = _packed_kernels.BLOCK_COLUMNS
    offs = np.zeros(-(-starts.size // block) * block, dtype=np.int64)   # past the end: 0, valid
    offs[:starts.size] = starts
    return taps, offs


def forward(x, w, b, stride, padding, relu, panels=None):
    """``panels``: for frozen weights, a callable returning their packed panels."""
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    out_h, out_w = rt.out_hw(height, width, (kh, kw), stride, padding)
    windows, depth = out_h * out_w, c_in * kh * kw
    pointwise = _pointwise(kh, kw, stride, padding)
    if panels is not None and packed_fits(n * windows) and not pointwise:
        return forward_packed(x, panels(), b, stride, padding, relu, (out_h, out_w), c_out, (kh, kw))
    if _skinny(n * windows, depth, x.itemsize, pointwise):
        return _forward_skinny(x, w, b, stride, padding, relu, (out_h, out_w))
    split = _small_batch_split(n, c_out, depth, (out_h, out_w), pointwise)
    if split:
        how, threads = split
        run = _forward_bands if how == "bands" else _forward_channels
        return run(x, w, b, stride, padding, relu, (out_h, out_w), threads)
    y = np.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    chunks, group = _gemm_plan(n, depth, c_out, windows, x.itemsize, pointwise)
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
    grad_w_parts = rt.parts_workspace("grad_w_parts", part_shape, x.dtype)
    grad_b_parts = np.empty((chunks, c_out), dtype=x.dtype)
    grad_x = np.empty_like(x) if need_grad_x else rt.dummy(x.dtype, 4)
    use_mask = mask is not None
    mask3 = mask.reshape(n, c_out, windows) if use_mask else rt.dummy(x.dtype, 3)
    with rt.single_threaded_blas:
        rt.launch(_gemm.conv2d_gemm_backward, grad_y.reshape(n, c_out, windows), x, w.reshape(c_out, depth),
                  mask3, use_mask, kh, kw, sh, sw, ph, pw, out_h, out_w, group,
                  bool(need_grad_x), grad_x, w_layout, grad_w_parts, grad_b_parts,
                  ws_cols, ws_rows, chunks)
    if w_layout:
        grad_w = rt.summed(grad_w_parts)
    else:     # reduced and transposed in one parallel pass
        grad_w = np.empty((c_out, depth), dtype=x.dtype)
        rt.launch(_gemm.sum_transposed, grad_w_parts, grad_w, rt.chunks((c_out + 15) // 16, grad_w_parts.size))
    grad_b = grad_b_parts[0] if chunks == 1 else grad_b_parts.sum(axis=0)
    return (grad_x if need_grad_x else None), grad_w.reshape(w.shape), grad_b


def warm(x, w, b):
    """Compile the small-batch and few-column paths (the warm-up's tiny problem fills
    the threads and has many columns)."""
    out_hw = rt.out_hw(x.shape[2], x.shape[3], w.shape[2:], (1, 1), (1, 1))
    for run in (_forward_bands, _forward_channels):
        run(x[:1], w, b, (1, 1), (1, 1), True, out_hw, 2)
    lanes = simd.lanes(x.dtype)           # a depth of whole vectors, 4 columns
    _forward_skinny(np.ones((1, lanes, 2, 2), x.dtype), np.ones((2, lanes, 1, 1), x.dtype), b[:2], (1, 1),
                    (0, 0), True, (2, 2))
