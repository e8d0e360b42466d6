"""Grouped and dilated convolution by im2col + GEMM, and transposed convolution by
GEMM + col2im, for the numba backend.

Work items are (image, group) pairs, split into one contiguous chunk per thread; no
Python loop over groups.  An item unfolds only its group's ``C_in/G`` input planes
into the thread's own column buffer ``(K, L)`` (``K = C_in/G * kh * kw``, a few
hundred KB: it stays in L2) and multiplies it with the group's ``(C_out/G, K)``
weights in one single-threaded BLAS call (``np.dot``; the caller limits BLAS to one
thread).  This is the plain GEMM path's design (``kernels/gemm.py``) per group, with
dilated window taps (``kernels/unfold_dilated.py``).

Backward per item: ``grad_w[g].T += cols @ G.T`` into the thread's partial sum,
then ``cols = W[g].T @ G`` and a col2im into the group's ``grad_x`` planes -- items
own whole planes, so no atomics.  The transposed convolution is exactly that input
gradient (``W[g].T @ x``, col2im) with the bias added on write-out: one image's
group of columns at a time, never a whole-batch column buffer.

Everything trusts its caller (`numba_backend.grouped`): arrays C-contiguous, shapes
consistent, no bounds checks.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

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
            np.dot(w3[g], cols, out)
            for o in range(og):
                row = out[o]
                bias = b[g * og + o]
                for l in range(windows):
                    row[l] += bias


@njit(**_PJIT)
def grouped_backward(gy3, x, w3t, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, need_grad_x,
                     grad_x, gw_parts, gb_parts, ws_cols, ws_part, n_chunks):
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
        part = ws_part[chunk].reshape((depth, og))
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
            np.dot(cols, grad.T, part)
            acc = gw_parts[chunk, g]
            for r in range(depth):
                arow = acc[r]
                prow = part[r]
                for o in range(og):
                    arow[o] += prow[o]
            if need_grad_x:
                np.dot(w3t[g], grad, cols)          # the columns themselves are done with
                _fold_group(cols_flat, g * cg, (g + 1) * cg, kh, kw, sh, sw, ph, pw, dh, dw,
                            out_h, out_w, gpad, grad_x[img], zero)


@njit(**_PJIT)
def grouped_transpose(x3, w3t, b, kh, kw, sh, sw, ph, pw, dh, dw, in_h, in_w, y, ws_cols, n_chunks):
    """Transposed convolution: y[n, group g] = col2im(w3t[g] @ x3[n, group g]) + b.

    ``x3`` is the input ``(N, C_in, in_h*in_w)``; ``w3t[g]`` is ``(C_out/G*kh*kw, C_in/G)``;
    ``y`` ``(N, C_out, H_out, W_out)`` is the input of the convolution this transposes,
    whose ``in_h x in_w`` windows are scattered back.
    """
    n, c_out, height, width = y.shape
    groups, depth, og = w3t.shape
    cg = c_out // groups
    windows = in_h * in_w
    items = n * groups
    for chunk in prange(n_chunks):
        cols_flat = ws_cols[chunk]
        cols = cols_flat.reshape((depth, windows))
        pad = np.empty((height + 2 * ph, width + 2 * pw), dtype=y.dtype)
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // groups
            g = item - img * groups
            np.dot(w3t[g], x3[img, g * og:(g + 1) * og], cols)
            _fold_group(cols_flat, g * cg, (g + 1) * cg, kh, kw, sh, sw, ph, pw, dh, dw,
                        in_h, in_w, pad, y[img], b)
