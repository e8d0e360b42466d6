"""Grouped and dilated convolution by im2col + GEMM, and transposed convolution by
GEMM + col2im, for the numba backend.

Work items are (image, group) pairs, split into one contiguous chunk per thread; no
Python loop over groups.  An item unfolds only its group's ``C_in/G`` input planes
into the thread's own column buffer ``(K, L)`` (``K = C_in/G * kh * kw``, a few
hundred KB: it stays in L2) and multiplies it with the group's ``(C_out/G, K)``
weights in one single-threaded BLAS call (`kernels/blas.py`; the caller limits BLAS to
one thread).  This is the plain GEMM path's design (``kernels/gemm.py``) per group, with
dilated window taps (``kernels/unfold_dilated.py``).

Backward per item: ``grad_w[g].T += cols @ G.T`` into the thread's partial sum,
then ``cols = W[g].T @ G`` and a col2im into the group's ``grad_x`` planes -- items
own whole planes, so no atomics.  The transposed convolution is exactly that input
gradient (``W[g].T @ x``, then a fold) with the bias added on write-out: one image's
group of columns at a time, never a whole-batch column buffer; its fold runs in the
output's stride phases (`kernels.phases`), one contiguous add per tap.

Everything trusts its caller (`numba_backend.grouped`): arrays C-contiguous, shapes
consistent, no bounds checks.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends.numba_backend.kernels import blas
from fastconv.backends.numba_backend.kernels.phases import _fill_phases, _geometry, _read_phases, _tap_offset
from fastconv.backends.numba_backend.kernels.unfold_dilated import _col2im_plane_d, _im2col_plane_d

_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(cache=True, nogil=True)
def _unfold_group(x_img, c0, c1, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad, cols_flat):
    """Columns of input planes [c0, c1) of one image into ``cols_flat`` (K*L)."""
    windows = out_h * out_w
    for ci in range(c0, c1):
        _im2col_plane_d(x_img[ci], kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad, cols_flat,
                        (ci - c0) * kh * kw * windows, windows)


@njit(cache=True, nogil=True)
def _fold_group(cols_flat, c0, c1, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad, out_img, bias):
    """col2im of ``cols_flat`` into planes [c0, c1) of ``out_img`` (overwritten) + bias."""
    windows = out_h * out_w
    for ci in range(c0, c1):
        _col2im_plane_d(cols_flat, (ci - c0) * kh * kw * windows, windows, kh, kw, sh, sw, ph, pw,
                        dh, dw, out_h, out_w, pad, out_img[ci], bias[ci])


@njit(cache=True, nogil=True)
def _to_grid(src, dst, rows, width, pwid):
    """Rows of ``src`` (C, rows*width) onto ``dst`` (C, rows*pwid); other columns untouched."""
    for o in range(src.shape[0]):
        s_plane = src[o]
        d_plane = dst[o]
        for r in range(rows):
            d = d_plane[r * pwid:r * pwid + width]
            s = s_plane[r * width:(r + 1) * width]
            for c in range(width):
                d[c] = s[c]


@njit(cache=True, nogil=True)
def _from_grid(src, dst, rows, width, pwid):
    """Inverse of `_to_grid`: the valid columns of ``src`` into ``dst`` (C, rows*width)."""
    for o in range(src.shape[0]):
        s_plane = src[o]
        d_plane = dst[o]
        for r in range(rows):
            d = d_plane[r * width:(r + 1) * width]
            s = s_plane[r * pwid:r * pwid + width]
            for c in range(width):
                d[c] = s[c]


@njit(cache=True, nogil=True)
def _phased_unfold(planes, phases, cols, kh, kw, sh, sw, ph, pw, dh, dw, phase_size, pwid, span, sums):
    """Columns of ``planes`` (C, H, W) on the output grid: each plane into its stride
    phases, then one contiguous copy per tap; ``sums[c]`` += the plane's total."""
    plane = sh * sw * phase_size
    taps = kh * kw
    for c in range(planes.shape[0]):
        ps = phases[c * plane:(c + 1) * plane]
        _fill_phases(ps, planes[c], ph, pw, sh, sw, phase_size, pwid)
        total = 0.0
        for q in range(plane):                      # the padding is zero: one long loop
            total += ps[q]
        sums[c] += total
        for i in range(kh):
            for j in range(kw):
                start = c * plane + _tap_offset(i, j, sh, sw, dh, dw, phase_size, pwid)
                d = cols[c * taps + i * kw + j]
                s = phases[start:start + span]
                for q in range(span):
                    d[q] = s[q]


@njit(**_PJIT)
def grouped_forward(x, w3, b, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, y3, ws_cols, n_chunks):
    """y3[n, g*Og:(g+1)*Og] = w3[g] @ cols(x[n, group g]) + b, items (image, group)."""
    n, c_in, height, width = x.shape
    groups, og, depth = w3.shape
    cg = c_in // groups
    windows = out_h * out_w
    items = n * groups
    for chunk in prange(n_chunks):
        cols_flat = ws_cols[chunk]
        cols = cols_flat.reshape((depth, windows))
        pad = np.zeros((height + 2 * ph, width + 2 * pw), dtype=x.dtype)
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // groups
            g = item - img * groups
            _unfold_group(x[img], g * cg, (g + 1) * cg, kh, kw, sh, sw, ph, pw, dh, dw,
                          out_h, out_w, pad, cols_flat)
            out = y3[img, g * og:(g + 1) * og]
            blas.gemm(w3[g], cols, out)
            for o in range(og):
                row = out[o]
                bias = b[g * og + o]
                for l in range(windows):
                    row[l] += bias


@njit(**_PJIT)
def grouped_backward(gy3, x, w3t, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, need_grad_x,
                     grad_x, gw_parts, gb_parts, ws_cols, n_chunks):
    """Chunk t adds its items' grad_w[g].T (K, Og) into ``gw_parts[t, g]`` and grad_b
    into ``gb_parts[t]``; ``grad_x`` planes of each item's group are overwritten."""
    n, c_in, height, width = x.shape
    groups, depth, og = w3t.shape
    cg = c_in // groups
    windows = out_h * out_w
    items = n * groups
    zero = np.zeros(c_in, dtype=x.dtype)
    for chunk in prange(n_chunks):
        cols_flat = ws_cols[chunk]
        cols = cols_flat.reshape((depth, windows))
        pad = np.zeros((height + 2 * ph, width + 2 * pw), dtype=x.dtype)   # zero border
        gpad = np.empty_like(pad)                                          # col2im's
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // groups
            g = item - img * groups
            grad = gy3[img, g * og:(g + 1) * og]
            for o in range(og):
                total = 0.0
                row = grad[o]
                for l in range(windows):
                    total += row[l]
                gb_parts[chunk, g * og + o] += total
            _unfold_group(x[img], g * cg, (g + 1) * cg, kh, kw, sh, sw, ph, pw, dh, dw,
                          out_h, out_w, pad, cols_flat)
            blas.gemm(cols, grad.T, gw_parts[chunk, g], True)     # parts start zeroed
            if need_grad_x:
                blas.gemm(w3t[g], grad, cols)          # the columns themselves are done with
                _fold_group(cols_flat, g * cg, (g + 1) * cg, kh, kw, sh, sw, ph, pw, dh, dw,
                            out_h, out_w, gpad, grad_x[img], zero)


@njit(**_PJIT)
def grouped_transpose(x3, w3t, b, kh, kw, sh, sw, ph, pw, dh, dw, in_h, in_w, y, ws_cols, n_chunks):
    """Transposed convolution: y[n, group g] = fold(w3t[g] @ x3[n, group g]) + b.

    ``x3`` is the input ``(N, C_in, in_h*in_w)``; ``w3t[g]`` is ``(C_out/G*kh*kw, C_in/G)``;
    ``y`` ``(N, C_out, H_out, W_out)`` is the input of the convolution this transposes.
    The group's input is first laid on a grid of row length ``pwid`` (zero columns
    past ``in_w``), so every column row of the GEMM is the whole grid and the fold is
    one contiguous add per tap into the output plane's stride phases (`kernels.phases`)
    instead of one short strided add per tap and input row.
    """
    n, c_out, height, width = y.shape
    groups, depth, og = w3t.shape
    cg = c_out // groups
    taps = kh * kw
    phase_size, pwid = _geometry(height, width, ph, pw, sh, sw)
    grid = in_h * pwid
    span = (in_h - 1) * pwid + in_w
    items = n * groups
    for chunk in prange(n_chunks):
        cols = ws_cols[chunk][:depth * grid].reshape((depth, grid))
        xg = np.zeros((og, grid), dtype=y.dtype)            # zero columns stay zero
        acc = np.empty(sh * sw * phase_size, dtype=y.dtype)
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // groups
            g = item - img * groups
            _to_grid(x3[img, g * og:(g + 1) * og], xg, in_h, in_w, pwid)
            blas.gemm(w3t[g], xg, cols)
            for co in range(cg):
                acc[:] = 0
                for i in range(kh):
                    for j in range(kw):
                        start = _tap_offset(i, j, sh, sw, dh, dw, phase_size, pwid)
                        d = acc[start:start + span]
                        s = cols[co * taps + i * kw + j]
                        for q in range(span):
                            d[q] += s[q]
                channel = g * cg + co
                _read_phases(acc, y[img, channel], ph, pw, sh, sw, phase_size, pwid, b[channel])


@njit(**_PJIT)
def grouped_transpose_backward(gy, x3, w3, kh, kw, sh, sw, ph, pw, dh, dw, in_h, in_w,
                               grad_x3, gw_parts, gb_parts, ws_cols, n_chunks):
    """Gradients of `grouped_transpose`, one (image, group) item at a time.

    ``gy`` ``(N, C_out, H_out, W_out)`` is the output gradient, i.e. the input of the
    convolution being transposed, whose output is ``x3``.  The item's ``gy`` planes go
    into their stride phases once, each column row is then one contiguous copy (on
    the grid of row length ``pwid``), and two GEMMs give ``grad_x = W[g] @ cols``
    (valid columns kept) and ``grad_w[g].T += cols @ x.T`` (``x`` on the same grid,
    zero past ``in_w``, so the garbage columns add nothing).  Chunk t adds into
    ``gw_parts[t, g]`` (K, C_in/G) and ``gb_parts[t]``.
    """
    n, c_out, height, width = gy.shape
    groups, og, depth = w3.shape
    cg = c_out // groups
    phase_size, pwid = _geometry(height, width, ph, pw, sh, sw)
    grid = in_h * pwid
    span = (in_h - 1) * pwid + in_w
    items = n * groups
    for chunk in prange(n_chunks):
        cols = ws_cols[chunk][:depth * grid].reshape((depth, grid))
        cols[:, span:] = 0
        phases = np.zeros(cg * sh * sw * phase_size, dtype=gy.dtype)
        xg = np.zeros((og, grid), dtype=gy.dtype)
        out = np.empty((og, grid), dtype=gy.dtype)
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // groups
            g = item - img * groups
            _phased_unfold(gy[img, g * cg:(g + 1) * cg], phases, cols, kh, kw, sh, sw, ph, pw, dh, dw,
                           phase_size, pwid, span, gb_parts[chunk, g * cg:(g + 1) * cg])
            _to_grid(x3[img, g * og:(g + 1) * og], xg, in_h, in_w, pwid)
            blas.gemm(w3[g], cols, out)
            _from_grid(out, grad_x3[img, g * og:(g + 1) * og], in_h, in_w, pwid)
            blas.gemm(cols, xg.T, gw_parts[chunk, g], True)       # parts start zeroed
