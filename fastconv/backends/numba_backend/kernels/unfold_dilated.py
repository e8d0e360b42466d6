"""Dilated im2col / col2im for the numba backend (public ``F.unfold``/``F.fold`` with
``dilation``, and the grouped / transposed GEMM kernels in ``kernels/grouped.py``).

The same scheme as ``kernels/im2col.py`` (kept separate so that module, which the
plain GEMM path uses, stays untouched): each input plane is copied into a
zero-bordered scratch plane, then every column row ``(i, j)`` is a run of slice
copies starting at padded row ``oh*sh + i*dh``, column ``j*dw``.  Column buffers are
addressed as ``row_base + (i*kw + j)*row_stride + l``.

All functions trust their caller: arrays C-contiguous, sizes consistent, scratch
planes ``(H + 2*ph, W + 2*pw)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(**_JIT)
def _im2col_plane_d(x_plane, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad, dst, row_base, row_stride):
    """Rows ``(i, j)`` of one input plane into ``dst``; ``pad``'s border must be zero."""
    height, width = x_plane.shape
    for r in range(height):
        d = pad[r + ph, pw:pw + width]
        s = x_plane[r]
        for c in range(width):
            d[c] = s[c]
    span = (out_w - 1) * sw + 1
    for i in range(kh):
        for j in range(kw):
            base = row_base + (i * kw + j) * row_stride
            for oh in range(out_h):
                d = dst[base + oh * out_w:base + (oh + 1) * out_w]
                if sw == 1:
                    s = pad[oh * sh + i * dh, j * dw:j * dw + out_w]
                    for q in range(out_w):
                        d[q] = s[q]
                else:
                    t = pad[oh * sh + i * dh, j * dw:j * dw + span:sw]
                    for q in range(out_w):
                        d[q] = t[q]


@njit(**_JIT)
def _col2im_plane_d(src, row_base, row_stride, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad,
                    out_plane, bias):
    """Sum the rows of one plane back into ``out_plane`` (overwritten) plus ``bias``,
    accumulating in the scratch plane ``pad`` (fully overwritten)."""
    height, width = out_plane.shape
    pad[:, :] = 0
    span = (out_w - 1) * sw + 1
    for i in range(kh):
        for j in range(kw):
            base = row_base + (i * kw + j) * row_stride
            for oh in range(out_h):
                s = src[base + oh * out_w:base + (oh + 1) * out_w]
                if sw == 1:
                    d = pad[oh * sh + i * dh, j * dw:j * dw + out_w]
                    for q in range(out_w):
                        d[q] += s[q]
                else:
                    t = pad[oh * sh + i * dh, j * dw:j * dw + span:sw]
                    for q in range(out_w):
                        t[q] += s[q]
    for r in range(height):
        d = out_plane[r]
        s = pad[r + ph, pw:pw + width]
        for c in range(width):
            d[c] = s[c] + bias


@njit(**_PJIT)
def im2col_dilated_into(x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, cols, n_chunks):
    """``cols (N, C*kh*kw, L)`` of the whole batch, one (image, channel) plane per item."""
    n, c_in, height, width = x.shape
    windows = out_h * out_w
    items = n * c_in
    for chunk in prange(n_chunks):
        pad = np.zeros((height + 2 * ph, width + 2 * pw), dtype=x.dtype)
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            k = item // c_in
            ci = item - k * c_in
            _im2col_plane_d(x[k, ci], kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad,
                            cols[k].reshape(-1), ci * kh * kw * windows, windows)


@njit(**_PJIT)
def col2im_dilated_from(cols, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, out, n_chunks):
    """Fold ``cols (N, C*kh*kw, L)`` into ``out (N, C, H, W)`` (overwritten); each thread
    owns whole planes, so overlapping windows need no atomics."""
    n, c_in, height, width = out.shape
    windows = out_h * out_w
    items = n * c_in
    zero = out.dtype.type(0)
    for chunk in prange(n_chunks):
        pad = np.empty((height + 2 * ph, width + 2 * pw), dtype=out.dtype)
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            k = item // c_in
            ci = item - k * c_in
            _col2im_plane_d(cols[k].reshape(-1), ci * kh * kw * windows, windows, kh, kw, sh, sw,
                            ph, pw, dh, dw, out_h, out_w, pad, out[k, ci], zero)
