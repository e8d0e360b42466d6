"""im2col + GEMM convolution for the numba backend, one BLAS call per thread and group.

Each numba thread takes a contiguous share of the batch and, for groups of ``group``
images at a time, unfolds them into its own ``(C*kh*kw, group*L)`` column buffer,
calls a *single-threaded* BLAS GEMM on it (`kernels/blas.py`: MKL or SciPy's OpenBLAS) and
scatters the ``(C_out, group*L)`` result into NCHW with the bias (and ReLU) applied.
The caller limits that BLAS to one thread for the duration of the call (MKL runs
sequentially anyway).

Why not one whole-batch ``numpy.matmul`` on a ``(C*kh*kw, N*L)`` buffer (numba
im2col, one multi-threaded OpenBLAS call, transpose to NCHW), measured on this
project's 2-core machine for report 003's layers (batch 64, forward, float32):
73 / 13.3 / 19.3 / 8.2 ms against 42.5 / 7.7 / 12.4 / 6.6 ms this way (32->64 k5,
64->64, 64->128, 128->128 k3).  The whole-batch buffer reaches 210 MB, written by
im2col and read back by the GEMM from DRAM, and OpenBLAS's threading over GEMMs
with only 64-128 rows scales poorly (and its spinning workers fight numba's on a
loaded machine).  Per-thread groups keep the column buffer in L2 (group chosen so it
is ~1 MB), need no whole-batch transposes, and scale with numba's pool.

A 1x1 convolution with stride 1 and no padding on a single image per group skips the
unfold (and, backward, the fold): the image's (C, H*W) planes are its columns.

Backward per group: ``rows`` = the output gradient (masked by the ReLU output when
fused), ``grad_w.T += cols @ rows.T`` into the thread's own (C*kh*kw, C_out) partial sum,
``grad_cols = W.T @ rows`` (into the same column buffer) and a col2im into the
group's ``grad_x`` planes.  Partial ``grad_w``/``grad_b`` are summed by the caller.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends.numba_backend.kernels import blas
from fastconv.backends.numba_backend.kernels.im2col import _col2im_group, _im2col_group, _im2col_plane, unfold_pad

_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(cache=True, nogil=True)
def _is_image(kh, kw, sh, sw, ph, pw, images):
    """Whether the unfold of ``images`` images is the image itself: one image, a 1x1
    kernel, stride 1, no padding."""
    return images == 1 and kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0


@njit(cache=True, nogil=True)
def _unfold(x, g0, g1, kh, kw, sh, sw, ph, pw, out_h, out_w, pad, cols_flat, depth, windows):
    """The (C*kh*kw, images*L) column matrix of images [g0, g1): a view of x where
    `_is_image`, else unfolded into ``cols_flat``."""
    span = (g1 - g0) * windows
    if _is_image(kh, kw, sh, sw, ph, pw, g1 - g0):
        return x[g0].reshape((depth, span))
    _im2col_group(x, g0, g1, kh, kw, sh, sw, ph, pw, out_h, out_w, pad, cols_flat, span, windows)
    return cols_flat[:depth * span].reshape((depth, span))


@njit(**_PJIT)
def conv2d_gemm_forward(x, w2, b, kh, kw, sh, sw, ph, pw, out_h, out_w, relu, group,
                        y3, ws_cols, ws_rows, n_chunks):
    """y3[n, co, l] = (w2 @ im2col(x))[co, (n, l)] + b[co], ReLU'd if asked."""
    n = x.shape[0]
    c_out, depth = w2.shape
    windows = out_h * out_w
    for chunk in prange(n_chunks):
        first = n * chunk // n_chunks
        last = n * (chunk + 1) // n_chunks
        cols_flat = ws_cols[chunk]
        rows_flat = ws_rows[chunk]
        pad = unfold_pad(x.shape[2], x.shape[3], ph, pw, sw, x.dtype)
        for g0 in range(first, last, group):
            g1 = min(last, g0 + group)
            span = (g1 - g0) * windows
            cols = _unfold(x, g0, g1, kh, kw, sh, sw, ph, pw, out_h, out_w, pad, cols_flat, depth, windows)
            if g1 - g0 == 1:
                # one image: the GEMM writes straight into its (C_out, L) output planes
                blas.gemm(w2, cols, y3[g0])
                _add_bias(y3[g0], b, 0, c_out, relu)
                continue
            rows = rows_flat[:c_out * span].reshape((c_out, span))
            blas.gemm(w2, cols, rows)
            for k in range(g1 - g0):
                for co in range(c_out):
                    _write_row(rows[co, k * windows:(k + 1) * windows], b[co], relu, y3[g0 + k, co])


@njit(**_PJIT)
def conv2d_gemm_forward_bands(x, w2, b, kh, kw, sh, sw, ph, pw, out_h, out_w, relu,
                              y3, ws_cols, ws_rows, n_chunks):
    """Like `conv2d_gemm_forward`, for batches smaller than the thread count: chunk
    ``c`` takes a band of output rows of every image, unfolds only those rows into
    its own columns and runs one GEMM on them.  Unlike splitting the GEMM over output
    channels, no thread reads columns another thread wrote (a cross-core transfer of
    the whole column buffer per image)."""
    n, c_in = x.shape[:2]
    c_out, depth = w2.shape
    for chunk in prange(n_chunks):
        oh0 = out_h * chunk // n_chunks
        oh1 = out_h * (chunk + 1) // n_chunks
        span = (oh1 - oh0) * out_w
        cols = ws_cols[chunk][:depth * span]
        rows = ws_rows[chunk][:c_out * span].reshape((c_out, span))
        pad = unfold_pad(x.shape[2], x.shape[3], ph, pw, sw, x.dtype)
        for k in range(n if span > 0 else 0):
            for ci in range(c_in):
                _im2col_plane(x[k, ci], kh, kw, sh, sw, ph, pw, oh0, oh1, out_w, pad, cols,
                              ci * kh * kw * span, span)
            blas.gemm(w2, cols.reshape((depth, span)), rows)
            for co in range(c_out):
                _write_row(rows[co], b[co], relu, y3[k, co, oh0 * out_w:oh1 * out_w])


@njit(cache=True, nogil=True)
def _write_row(src, bias, relu, dst):
    """dst = src + bias, ReLU'd if asked."""
    zero = dst.dtype.type(0)
    if relu:
        for l in range(dst.shape[0]):
            v = src[l] + bias
            dst[l] = v if v > 0 else zero
    else:
        for l in range(dst.shape[0]):
            dst[l] = src[l] + bias


@njit(**_PJIT)
def conv2d_gemm_backward(gy3, x, w2, mask3, use_mask, kh, kw, sh, sw, ph, pw, out_h, out_w,
                         group, need_grad_x, grad_x, w_layout, grad_w_parts, grad_b_parts,
                         ws_cols, ws_rows, n_chunks):
    """Per-thread partial grad_w / grad_b (both written, not accumulated into: no
    zeroing pass), and grad_x if asked.  The grad_w parts are (C_out, C*kh*kw) if
    ``w_layout``, else transposed (see below)."""
    n = x.shape[0]
    c_out, depth = w2.shape
    windows = out_h * out_w
    zero = gy3.dtype.type(0)
    for chunk in prange(n_chunks):
        first = n * chunk // n_chunks
        last = n * (chunk + 1) // n_chunks
        cols_flat = ws_cols[chunk]
        rows_flat = ws_rows[chunk]
        gw = grad_w_parts[chunk]
        gb = grad_b_parts[chunk]
        gb[:] = zero
        pad = unfold_pad(x.shape[2], x.shape[3], ph, pw, sw, x.dtype)
        gpad = np.empty_like(pad)
        for g0 in range(first, last, group):
            g1 = min(last, g0 + group)
            span = (g1 - g0) * windows
            if g1 - g0 == 1 and not use_mask:
                # one image, no mask: its (C_out, L) gradient planes are the rows
                rows = gy3[g0]
                for co in range(c_out):
                    total = 0.0
                    src = rows[co]
                    for l in range(windows):
                        total += src[l]
                    gb[co] += total
            else:
                rows = rows_flat[:c_out * span].reshape((c_out, span))
                for k in range(g1 - g0):
                    for co in range(c_out):
                        src = gy3[g0 + k, co]
                        dst = rows[co, k * windows:(k + 1) * windows]
                        total = 0.0
                        if use_mask:
                            m = mask3[g0 + k, co]
                            for l in range(windows):
                                v = src[l] if m[l] > 0 else zero
                                dst[l] = v
                                total += v
                        else:
                            for l in range(windows):
                                dst[l] = src[l]
                                total += src[l]
                        gb[co] += total
            cols = _unfold(x, g0, g1, kh, kw, sh, sw, ph, pw, out_h, out_w, pad, cols_flat, depth, windows)
            single = _is_image(kh, kw, sh, sw, ph, pw, g1 - g0)   # cols is x[g0] itself
            # grad_w.T = cols @ rows.T ran at 75-92 GFLOP/s per core here against 33-79
            # for grad_w = rows @ cols.T with C_out 16-256, but at 77 against 90 with
            # C_out 512: the caller picks.  A chunk's first group writes its part, the
            # others accumulate into it (BLAS beta = 1).
            if w_layout:
                blas.gemm(rows, cols.T, gw, g0 != first)
            else:
                blas.gemm(cols, rows.T, gw, g0 != first)
            if need_grad_x and single:
                blas.gemm(w2.T, rows, grad_x[g0].reshape((depth, span)))
            elif need_grad_x:
                blas.gemm(w2.T, rows, cols)          # the columns themselves are done with
                _col2im_group(cols_flat, span, windows, g0, g1, kh, kw, sh, sw, ph, pw,
                             out_h, out_w, gpad, grad_x)


@njit(**_PJIT)
def sum_transposed(parts, out, n_chunks):
    """out[co, r] = sum over chunks of parts[chunk, r, co]: the per-thread grad_w.T
    partial sums reduced and put in w's layout in one pass (blocks of 16 output
    channels, so each read of a parts row is 64 contiguous bytes)."""
    n_parts, depth, c_out = parts.shape
    blocks = (c_out + 15) // 16
    for chunk in prange(n_chunks):
        for block in range(blocks * chunk // n_chunks, blocks * (chunk + 1) // n_chunks):
            _sum_block(parts, out, block * 16, min(c_out, block * 16 + 16))


@njit(cache=True, nogil=True)
def _sum_block(parts, out, c0, c1):
    n_parts, depth, _ = parts.shape
    for r in range(depth):
        for co in range(c0, c1):
            total = parts[0, r, co]
            for p in range(1, n_parts):
                total += parts[p, r, co]
            out[co, r] = total


@njit(**_PJIT)
def gemm_rows_forward(w2, cols, b, relu, y2, n_chunks):
    """y2 = w2 @ cols + b (ReLU'd if asked) for one image, its output channels split
    over the threads (each a single-threaded GEMM on its rows of w2 and y2): how a
    batch smaller than the thread count still uses every core."""
    c_out = w2.shape[0]
    for chunk in prange(n_chunks):
        c0 = c_out * chunk // n_chunks
        c1 = c_out * (chunk + 1) // n_chunks
        if c1 == c0:
            continue
        blas.gemm(w2[c0:c1], cols, y2[c0:c1])
        _add_bias(y2, b, c0, c1, relu)


@njit(cache=True, nogil=True)
def _add_bias(y2, b, c0, c1, relu):
    """In place: y2[co] += b[co] for co in [c0, c1), then ReLU if asked."""
    for co in range(c0, c1):
        _write_row(y2[co], b[co], relu, y2[co])
