"""Convolution as kh*kw GEMMs on shifted views of a zero-bordered grid.

A group of images is laid out per channel on one flat *grid*.  At stride 1: pixel
(image k, row r, column c) at ``(k*pitch + r + ph)*width_g + c + pw``, every other
entry zero.  Rows are ``width_g`` long (the width plus the padding of one side) and
images ``pitch`` rows apart (the height plus the padding of one side), so the zeros
right of a row are also the left padding of the next one and the rows between two
images are the bottom padding of one and the top padding of the other.

Output (k, oh, ow) is then grid column ``m = (k*pitch + oh)*width_g + ow``, and tap
(i, j) of its window is grid entry ``m + i*width_g + j``: for each tap, the columns
of the whole group are one strided view of the grid, ``grid[:, off:off + ncols]``.
The convolution is ``Y = sum over taps of W_tap @ view_tap``, kh*kw accumulating
GEMMs straight on the grid, with no im2col buffer (whose nine-fold copy cost as much
as the GEMM on 8x8-32x32 planes).  Columns that are not outputs (``ow >= out_w``, or
the rows between images) are computed and dropped: 6-27 % more GEMM columns on
32x32-8x8 planes with 3x3 kernels.

A stride (sh, sw) splits the padded images into their sh*sw stride phases (rows
``a::sh``, columns ``b::sw``), each a block of the grid laid out as above; tap (i, j)
reads phase (i % sh, j % sw) shifted by (i // sh, j // sw), so again every tap is
one view.  ``shifted.py`` computes the spacing (`geometry`) and the tap offsets.

Tap (i, j)'s offset is a row part plus a column part, so copying the grid once per
column tap (copy j starting at column part j, `_stack_columns`) puts a kernel row's
taps side by side: one GEMM with K = kw*C_in per row (``col_offsets`` with more than
one entry); with one entry the GEMMs read the grid itself, one per tap.

Backward: the output gradient goes on the output grid (zeros at the dropped
columns), ``grad_W_tap += GY @ view_tap^T`` and ``GX[:, off:off + ncols] += W_tap^T @ GY``
(GX on the input grid, then read back).  All functions trust their caller: geometry
from ``shifted.py``, C-contiguous arrays, workspaces big enough.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends.numba_backend.kernels import blas

_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(**_JIT)
def _fill_input(x, g0, g1, sh, sw, ph, pw, phases_w, pitch, width_g, phase_size, grid):
    """Images [g0, g1) of x onto the grid, one block of ``phase_size`` entries per
    stride phase (every entry written: no stale data)."""
    c_in, height, width = x.shape[1:]
    phases = grid.shape[1] // phase_size
    zero = grid.dtype.type(0)
    for c in range(c_in):
        for phase in range(phases):
            a, b = phase // phases_w, phase % phases_w
            block = grid[c, phase * phase_size:(phase + 1) * phase_size]
            u0 = max(0, -(-(pw - b) // sw))                 # first column holding data
            u1 = min(width_g, -(-(width + pw - b) // sw))   # one past the last
            pos = 0
            for k in range(g1 - g0):
                for t in range(pitch):
                    row = block[pos:pos + width_g]
                    r = sh * t + a - ph
                    start = 0
                    if 0 <= r < height and u1 > u0:
                        for q in range(u0):
                            row[q] = zero
                        src = x[g0 + k, c, r, u0 * sw + b - pw:]      # zero-based: no wraparound
                        for q in range(u1 - u0):
                            row[u0 + q] = src[q * sw]
                        start = u1
                    for q in range(start, width_g):
                        row[q] = zero
                    pos += width_g
            for q in range(pos, phase_size):
                block[q] = zero


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
def _read_input(grid, g0, g1, sh, sw, ph, pw, phases_h, phases_w, pitch, width_g, phase_size,
                grad_x):
    """grad_x[g0:g1] = the image entries of the input-gradient grid (zero for pixels
    in a stride phase no tap reads)."""
    c_in, height, width = grad_x.shape[1:]
    zero = grad_x.dtype.type(0)
    for k in range(g1 - g0):
        for c in range(c_in):
            for r in range(height):
                a, t = (r + ph) % sh, (r + ph) // sh
                dst = grad_x[g0 + k, c, r]
                for b in range(sw):
                    first = (b - pw) % sw                   # first column in phase b
                    d = dst[first:]
                    count = (width - first + sw - 1) // sw if first < width else 0
                    if a >= phases_h or b >= phases_w:
                        for q in range(count):
                            d[q * sw] = zero
                        continue
                    start = ((a * phases_w + b) * phase_size + (k * pitch + t) * width_g
                             + (first + pw) // sw)
                    src = grid[c, start:start + count]
                    for q in range(count):
                        d[q * sw] = src[q]


@njit(**_JIT)
def _stack_columns(grid, col_offsets, col0, stack):
    """stack[j*C + c, m] = grid[c, col0 + col_offsets[j] + m]: the grid once per column
    tap, so a kernel row's taps are one GEMM with K = kw*C_in."""
    c_in = grid.shape[0]
    length = stack.shape[1]
    for j in range(col_offsets.shape[0]):
        start = col0 + col_offsets[j]
        for c in range(c_in):
            stack[j * c_in + c, :] = grid[c, start:start + length]


@njit(**_JIT)
def _unstack_add(stack, col_offsets, gx):
    """gx[c, col_offsets[j] + m] += stack[j*C + c, m]: `_stack_columns` transposed."""
    c_in = gx.shape[0]
    length = stack.shape[1]
    for j in range(col_offsets.shape[0]):
        start = col_offsets[j]
        for c in range(c_in):
            dst = gx[c, start:start + length]
            src = stack[j * c_in + c]
            for m in range(length):
                dst[m] += src[m]


@njit(**_JIT)
def _view_source(grid, col_offsets, col0, span, reach, ws_stack):
    """(matrix the GEMMs read, its column offset for grid column ``col0``): the grid
    itself, or with several column taps its `_stack_columns` copy (``reach``: the
    largest row offset)."""
    if col_offsets.shape[0] == 1:
        return grid, col0 + col_offsets[0]
    rows = col_offsets.shape[0] * grid.shape[0]
    stack = ws_stack[:rows * (span + reach)].reshape((rows, span + reach))
    _stack_columns(grid, col_offsets, col0, stack)
    return stack, 0


@njit(**_PJIT)
def shifted_forward(x, w_rows, row_offsets, col_offsets, b, geometry, out_h, relu, group, split_rows,
                    y, ws_grid, ws_stack, ws_out, n_chunks):
    """y = conv(x) + b (ReLU'd if asked).  Chunk c takes a share of the images, in
    groups of ``group``; or, with ``split_rows`` (a batch smaller than the thread
    count: one group), a band of the group's grid rows.  ``geometry``: (sh, sw, ph,
    pw, phases_h, phases_w, pitch, width_g, phase_size).  Tap (r, j)'s view starts at
    ``row_offsets[r] + col_offsets[j]``; ``w_rows[r]`` is (C_out, J*C_in), the taps of
    row r side by side (J = 1: one GEMM per tap straight on the grid)."""
    sh, sw, ph, pw, phases_h, phases_w, pitch, width_g, phase_size = geometry
    n, c_in = x.shape[:2]
    c_out = w_rows.shape[1]
    reach = row_offsets.max()
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
            _fill_input(x, g0, g1, sh, sw, ph, pw, phases_w, pitch, width_g, phase_size, grid)
            col0, span = r0 * width_g, (r1 - r0) * width_g
            src, base = _view_source(grid, col_offsets, col0, span, reach, ws_stack[chunk])
            out = ws_out[chunk][:c_out * span].reshape((c_out, span))
            for r in range(row_offsets.shape[0]):
                off = row_offsets[r] + base
                blas.gemm(w_rows[r], src[:, off:off + span], out, r > 0)
            _write_output(out, col0, g0, g1, pitch, width_g, b, relu, y)


@njit(**_PJIT)
def shifted_backward(gy, x, w_rows, row_offsets, col_offsets, mask, use_mask, geometry, group,
                     need_grad_x, grad_x, grad_w_parts, grad_b_parts, ws_grid, ws_stack, ws_grad,
                     ws_gx, n_chunks):
    """Per-chunk partial grad_w (rows, C_out, J*C_in) and grad_b, both written (not
    accumulated into), and grad_x of the chunk's images if asked.  With J > 1 the
    input gradient is taken on the stacked copy (reusing its buffer once the weight
    gradient has read it) and folded back onto the grid."""
    sh, sw, ph, pw, phases_h, phases_w, pitch, width_g, phase_size = geometry
    n, c_in = x.shape[:2]
    c_out = w_rows.shape[1]
    out_h = gy.shape[2]
    reach = row_offsets.max()
    stacked = col_offsets.shape[0] > 1
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
            _fill_input(x, g0, g1, sh, sw, ph, pw, phases_w, pitch, width_g, phase_size, grid)
            src, base = _view_source(grid, col_offsets, 0, ncols, reach, ws_stack[chunk])
            grad = ws_grad[chunk].reshape((c_out, max_cols))[:, :ncols]
            _fill_grad(gy, mask, use_mask, g0, g1, pitch, width_g, grad, gb)
            for r in range(row_offsets.shape[0]):
                off = row_offsets[r] + base
                blas.gemm(grad, src[:, off:off + ncols].T, gw[r], g0 != first)
            if not need_grad_x:
                continue
            gx = ws_gx[chunk].reshape((c_in, size))
            gx[:, :] = 0
            target = src if stacked else gx
            if stacked:
                target[:, :] = 0
            for r in range(row_offsets.shape[0]):
                off = row_offsets[r] + base
                blas.gemm(w_rows[r].T, grad, target[:, off:off + ncols], True)
            if stacked:
                _unstack_add(target, col_offsets, gx)
            _read_input(gx, g0, g1, sh, sw, ph, pw, phases_h, phases_w, pitch, width_g, phase_size,
                        grad_x)


@njit(**_PJIT)
def sum_taps(parts, row_taps, out, n_chunks):
    """out[co, ci, r*J + j] = sum over parts of parts[p, r, co, j*C_in + ci] (J =
    ``row_taps``): the per-chunk tap gradients reduced and put in w's
    (C_out, C_in, kh*kw) layout."""
    n_parts, rows, c_out, depth = parts.shape
    c_in = depth // row_taps
    for chunk in prange(n_chunks):
        for co in range(c_out * chunk // n_chunks, c_out * (chunk + 1) // n_chunks):
            for r in range(rows):
                for j in range(row_taps):
                    for ci in range(c_in):
                        total = parts[0, r, co, j * c_in + ci]
                        for p in range(1, n_parts):
                            total += parts[p, r, co, j * c_in + ci]
                        out[co, ci, r * row_taps + j] = total
