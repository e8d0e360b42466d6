"""Stride-1 convolution as kh*kw GEMMs on shifted views of a zero-bordered grid.

A group of images is laid out per channel on one flat *grid*: pixel (image k, row r,
column c) at ``origin + (k*pitch + r)*width_g + c``, every other entry zero.  Rows
are ``width_g`` long (the image width plus the wider of the two side paddings) and
images ``pitch`` rows apart (the height plus the wider of top and bottom padding),
so the zeros right of a row are also the left padding of the next one and the rows
between two images are the bottom padding of one and the top padding of the other.

Output (k, oh, ow) is then grid column ``m = (k*pitch + oh)*width_g + ow``, and tap
(i, j) of its window is grid entry ``m + i*width_g + j``: for each tap, the columns
of the whole group are one strided view of the grid, ``grid[:, off:off + ncols]``.
The convolution is ``Y = sum over taps of W_tap @ view_tap``, kh*kw accumulating
GEMMs straight on the grid, with no im2col buffer (whose nine-fold copy cost as much
as the GEMM on 8x8-32x32 planes).  Columns that are not outputs (``ow >= out_w``, or
the rows between images) are computed and dropped: 6-27 % more GEMM columns on
32x32-8x8 planes with 3x3 kernels.

Backward: the output gradient goes on the output grid (zeros at the dropped
columns), ``grad_W_tap += GY @ view_tap^T`` and ``GX[:, off:off + ncols] += W_tap^T @ GY``
(GX on the input grid, then cropped).  All functions trust their caller: geometry
from ``shifted.py``, C-contiguous arrays, workspaces big enough.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends.numba_backend.kernels import blas

_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(**_JIT)
def _fill_input(x, g0, g1, pitch, width_g, origin, grid):
    """Images [g0, g1) of x onto the grid (every entry written: no stale data)."""
    c_in, height, width = x.shape[1:]
    zero = grid.dtype.type(0)
    for c in range(c_in):
        g = grid[c]
        for q in range(origin):
            g[q] = zero
        pos = origin
        for k in range(g1 - g0):
            for r in range(pitch):
                row = g[pos:pos + width_g]
                start = 0
                if r < height:
                    src = x[g0 + k, c, r]
                    for q in range(width):
                        row[q] = src[q]
                    start = width
                for q in range(start, width_g):
                    row[q] = zero
                pos += width_g
        for q in range(pos, g.shape[0]):
            g[q] = zero


@njit(**_JIT)
def _fill_grad(gy, mask, use_mask, g0, g1, pitch, width_g, grid, grad_b):
    """The (ReLU-masked) output gradient of images [g0, g1) onto the output grid
    (``grid.shape[1]`` columns; zeros at the dropped ones); its sums added to grad_b."""
    c_out, out_h, out_w = gy.shape[1:]
    zero = grid.dtype.type(0)
    for co in range(c_out):
        g = grid[co]
        total = 0.0
        for k in range(g1 - g0):
            for r in range(pitch if k < g1 - g0 - 1 else out_h):
                row = g[(k * pitch + r) * width_g:(k * pitch + r + 1) * width_g]
                start = 0
                if r < out_h:
                    src = gy[g0 + k, co, r]
                    if use_mask:
                        m = mask[g0 + k, co, r]
                        for q in range(out_w):
                            v = src[q] if m[q] > 0 else zero
                            row[q] = v
                            total += v
                    else:
                        for q in range(out_w):
                            row[q] = src[q]
                            total += src[q]
                    start = out_w
                for q in range(start, width_g):
                    row[q] = zero
        grad_b[co] += total


@njit(**_JIT)
def _write_output(out, col0, g0, g1, pitch, width_g, b, relu, y):
    """y[g0 + k, co, oh] = out row part + b[co] (ReLU'd if asked) for the output rows
    whose grid columns start in [col0, col0 + out.shape[1])."""
    c_out, out_h, out_w = y.shape[1:]
    zero = y.dtype.type(0)
    col1 = col0 + out.shape[1]
    for k in range(g1 - g0):
        for oh in range(out_h):
            start = (k * pitch + oh) * width_g
            if start < col0 or start >= col1:
                continue
            for co in range(c_out):
                src = out[co, start - col0:start - col0 + out_w]
                dst = y[g0 + k, co, oh]
                bias = b[co]
                if relu:
                    for q in range(out_w):
                        v = src[q] + bias
                        dst[q] = v if v > 0 else zero
                else:
                    for q in range(out_w):
                        dst[q] = src[q] + bias


@njit(**_JIT)
def _read_input(grid, g0, g1, pitch, width_g, origin, grad_x):
    """grad_x[g0:g1] = the image entries of the input-gradient grid."""
    c_in, height, width = grad_x.shape[1:]
    for k in range(g1 - g0):
        for c in range(c_in):
            for r in range(height):
                start = origin + (k * pitch + r) * width_g
                src = grid[c, start:start + width]
                dst = grad_x[g0 + k, c, r]
                for q in range(width):
                    dst[q] = src[q]


@njit(**_PJIT)
def shifted_forward(x, w_taps, b, kw, pitch, width_g, origin, out_h, relu, group, split_rows,
                    y, ws_grid, ws_out, n_chunks):
    """y = conv(x) + b (ReLU'd if asked).  Chunk c takes a share of the images, in
    groups of ``group``; or, with ``split_rows`` (a batch smaller than the thread
    count: one group), a band of the group's grid rows."""
    n, c_in = x.shape[:2]
    taps, c_out = w_taps.shape[:2]
    size = ws_grid.shape[1] // c_in
    for chunk in prange(n_chunks):
        grid = ws_grid[chunk].reshape((c_in, size))
        first, last = (0, n) if split_rows else (n * chunk // n_chunks, n * (chunk + 1) // n_chunks)
        for g0 in range(first, last, group):
            g1 = min(last, g0 + group)
            rows = (g1 - g0 - 1) * pitch + out_h
            r0, r1 = 0, rows
            if split_rows:
                r0, r1 = rows * chunk // n_chunks, rows * (chunk + 1) // n_chunks
            if r1 == r0:
                continue
            _fill_input(x, g0, g1, pitch, width_g, origin, grid)
            col0, span = r0 * width_g, (r1 - r0) * width_g
            out = ws_out[chunk][:c_out * span].reshape((c_out, span))
            for t in range(taps):
                off = (t // kw) * width_g + t % kw + col0
                blas.gemm(w_taps[t], grid[:, off:off + span], out, t > 0)
            _write_output(out, col0, g0, g1, pitch, width_g, b, relu, y)


@njit(**_PJIT)
def shifted_backward(gy, x, w_taps, mask, use_mask, kw, pitch, width_g, origin, group,
                     need_grad_x, grad_x, grad_w_parts, grad_b_parts, ws_grid, ws_grad, ws_gx,
                     n_chunks):
    """Per-chunk partial grad_w (taps, C_out, C_in) and grad_b, both written (not
    accumulated into), and grad_x of the chunk's images if asked."""
    n, c_in = x.shape[:2]
    taps, c_out = w_taps.shape[:2]
    out_h = gy.shape[2]
    size = ws_grid.shape[1] // c_in
    max_cols = ws_grad.shape[1] // c_out
    for chunk in prange(n_chunks):
        first, last = n * chunk // n_chunks, n * (chunk + 1) // n_chunks
        grid = ws_grid[chunk].reshape((c_in, size))
        gw = grad_w_parts[chunk]
        gb = grad_b_parts[chunk]
        gb[:] = 0
        for g0 in range(first, last, group):
            g1 = min(last, g0 + group)
            ncols = ((g1 - g0 - 1) * pitch + out_h) * width_g
            _fill_input(x, g0, g1, pitch, width_g, origin, grid)
            grad = ws_grad[chunk].reshape((c_out, max_cols))[:, :ncols]
            _fill_grad(gy, mask, use_mask, g0, g1, pitch, width_g, grad, gb)
            for t in range(taps):
                off = (t // kw) * width_g + t % kw
                blas.gemm(grad, grid[:, off:off + ncols].T, gw[t], g0 != first)
            if not need_grad_x:
                continue
            gx = ws_gx[chunk].reshape((c_in, size))
            gx[:, ncols:] = 0             # tap 0 (offset 0) writes [0, ncols), the rest add
            for t in range(taps):
                off = (t // kw) * width_g + t % kw
                blas.gemm(w_taps[t].T, grad, gx[:, off:off + ncols], t > 0)
            _read_input(gx, g0, g1, pitch, width_g, origin, grad_x)


@njit(**_PJIT)
def sum_taps(parts, out, n_chunks):
    """out[co, ci, t] = sum over parts of parts[p, t, co, ci]: the per-chunk tap
    gradients reduced and put in w's (C_out, C_in, kh*kw) layout."""
    n_parts, taps, c_out, c_in = parts.shape
    for chunk in prange(n_chunks):
        for co in range(c_out * chunk // n_chunks, c_out * (chunk + 1) // n_chunks):
            for t in range(taps):
                for ci in range(c_in):
                    total = parts[0, t, co, ci]
                    for p in range(1, n_parts):
                        total += parts[p, t, co, ci]
                    out[co, ci, t] = total
