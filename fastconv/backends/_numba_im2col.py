"""im2col / col2im and the layout shuffles around the GEMM convolution (numba backend).

The column buffer is addressed through two strides so that one compiled kernel serves
every layout: entry ``(row r, image img, window l)`` lives at
``r * row_stride + (img - first) * img_stride + l`` of a flat array.

* ``F.unfold`` layout ``(N, C*kh*kw, L)``:  ``row_stride = L``, ``img_stride = C*kh*kw*L``;
* GEMM layout ``(C*kh*kw, n*L)`` for images ``[first, last)``:
  ``row_stride = n*L``, ``img_stride = L``.

Padding is handled by clipped loop bounds (zeros written, never read from a padded
copy).  All functions trust their caller: arrays C-contiguous, sizes consistent.
"""

from __future__ import annotations

from numba import njit, prange

_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(cache=True, nogil=True)
def _valid_columns(j, sw, pw, width, out_w):
    """[lo, hi): output columns ow whose input column ow*sw + j - pw lies in [0, width)."""
    lo = 0 if pw - j <= 0 else (pw - j + sw - 1) // sw
    top = width - 1 + pw - j
    hi = 0 if top < 0 else min(out_w, top // sw + 1)
    return lo, max(lo, hi)


@njit(**_PJIT)
def im2col_into(x, kh, kw, sh, sw, ph, pw, out_h, out_w, dst, row_stride, img_stride,
                first, last, n_chunks):
    """Write the windows of images [first, last) of x into the flat buffer ``dst``."""
    c_in, height, width = x.shape[1], x.shape[2], x.shape[3]
    window = kh * kw
    rows = c_in * window
    count = last - first
    items = count * rows
    for chunk in prange(n_chunks):
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            k = item // rows
            r = item - k * rows
            img = first + k
            ci = r // window
            i = (r - ci * window) // kw
            j = r - ci * window - i * kw
            lo, hi = _valid_columns(j, sw, pw, width, out_w)
            base = r * row_stride + k * img_stride
            for oh in range(out_h):
                seg = dst[base + oh * out_w:base + (oh + 1) * out_w]
                row = oh * sh + i - ph
                if row < 0 or row >= height:
                    seg[:] = 0
                    continue
                src = x[img, ci, row]
                seg[:lo] = 0
                seg[hi:] = 0
                if sw == 1:
                    # slices indexed from 0 keep indices provably >= 0 (vectorises)
                    d = seg[lo:hi]
                    s = src[lo + j - pw:hi + j - pw]
                    for q in range(hi - lo):
                        d[q] = s[q]
                else:
                    for ow in range(lo, hi):
                        seg[ow] = src[ow * sw + j - pw]


@njit(**_PJIT)
def col2im_from(src, row_stride, img_stride, first, last, kh, kw, sh, sw, ph, pw,
                out_h, out_w, grad_x, n_chunks):
    """Fold columns of images [first, last) into ``grad_x[first:last]`` (overwritten),
    summing overlaps; each thread owns whole (image, channel) planes, so no races."""
    c_in, height, width = grad_x.shape[1], grad_x.shape[2], grad_x.shape[3]
    window = kh * kw
    count = last - first
    items = count * c_in
    for chunk in prange(n_chunks):
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            k = item // c_in
            ci = item - k * c_in
            plane = grad_x[first + k, ci]
            plane[:, :] = 0
            for i in range(kh):
                for j in range(kw):
                    r = ci * window + i * kw + j
                    lo, hi = _valid_columns(j, sw, pw, width, out_w)
                    base = r * row_stride + k * img_stride
                    for oh in range(out_h):
                        row = oh * sh + i - ph
                        if row < 0 or row >= height:
                            continue
                        seg = src[base + oh * out_w:base + (oh + 1) * out_w]
                        prow = plane[row]
                        if sw == 1:
                            d = prow[lo + j - pw:hi + j - pw]
                            s = seg[lo:hi]
                            for q in range(hi - lo):
                                d[q] += s[q]
                        else:
                            for ow in range(lo, hi):
                                prow[ow * sw + j - pw] += seg[ow]


@njit(**_PJIT)
def rows_to_nchw(rows, b, relu, y, first, n_chunks):
    """y[first + k, co, l] = rows[co, k*L + l] + b[co], then ReLU if asked."""
    c_out, total = rows.shape
    plane = y.shape[2]
    count = total // plane
    items = count * c_out
    zero = y.dtype.type(0)
    for chunk in prange(n_chunks):
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            k = item // c_out
            co = item - k * c_out
            bias = b[co]
            src = rows[co, k * plane:(k + 1) * plane]
            dst = y[first + k, co]
            if relu:
                for l in range(plane):
                    v = src[l] + bias
                    dst[l] = v if v > 0 else zero
            else:
                for l in range(plane):
                    dst[l] = src[l] + bias


@njit(**_PJIT)
def nchw_to_rows(grad_y, mask, use_mask, first, last, rows, n_chunks):
    """rows[co, k*L + l] = grad_y[first + k, co, l] (times mask > 0 when use_mask)."""
    c_out, plane = grad_y.shape[1], grad_y.shape[2]
    count = last - first
    items = count * c_out
    zero = grad_y.dtype.type(0)
    for chunk in prange(n_chunks):
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            k = item // c_out
            co = item - k * c_out
            src = grad_y[first + k, co]
            dst = rows[co, k * plane:(k + 1) * plane]
            if use_mask:
                m = mask[first + k, co]
                for l in range(plane):
                    dst[l] = src[l] if m[l] > 0 else zero
            else:
                for l in range(plane):
                    dst[l] = src[l]
