"""Direct depthwise convolution (``groups == C_in``, any channel multiplier ``m``):
output channel ``c*m + k`` correlates input channel ``c`` alone with its own kernel.

With so little arithmetic per value (kh*kw multiply-adds) this is memory-bound and
an im2col would multiply the traffic by kh*kw; instead every (image, input channel)
plane is copied once into a zero-bordered scratch plane and, at stride 1, handled in
the "flat plane" form of ``kernels/direct.py``: the output is accumulated on the
padded row length ``wp``, so each kernel tap ``(i, j)`` is one long contiguous loop
``acc[q] += w[i, j] * xpad[q + i*dh*wp + j*dw]`` over the whole plane (the
``wp - out_w`` columns per row are garbage, dropped on write-out).  3x3 kernels
(MobileNet's) run all nine taps in one pass.

Backward, stride 1: the output gradient is laid out on the same padded grid (zero at
the garbage positions) behind a zero ``margin``; the weight gradient is nine dot
products in one pass, and the input gradient is the same correlation with the
flipped kernel (taps reaching back into the margin read zeros).  Other strides take
plain row loops: correct, not tuned.  The input gradient alone, plus a bias, is also
the transposed convolution of a depthwise kernel.

Everything trusts its caller (`numba_backend.depthwise`): arrays C-contiguous,
shapes consistent, no bounds checks.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# reassoc lets LLVM vectorise the dot-product reductions; contract allows FMAs.
FASTMATH = {"reassoc", "contract"}
_JIT = dict(cache=True, nogil=True, fastmath=FASTMATH)
_PJIT = dict(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)


@njit(**_JIT)
def _fill_plane(dst, plane, ph, pw, wp):
    """Copy ``plane`` (H, W) into the interior of the flat zero-bordered ``dst``."""
    height, width = plane.shape
    for r in range(height):
        start = (r + ph) * wp + pw
        d = dst[start:start + width]
        s = plane[r]
        for c in range(width):
            d[c] = s[c]


@njit(**_JIT)
def _corr_flat(acc, src, wk, row_off, col_off, n):
    """acc[q] += sum_ij wk[i, j] * src[q + i*row_off + j*col_off] for q < n.

    Slices, not ``q + offset`` indices: they keep every index provably non-negative,
    which is what lets LLVM drop the wraparound checks and vectorise."""
    kh, kw = wk.shape
    if kh == 3 and kw == 3:
        r1 = row_off
        r2 = 2 * row_off
        c1 = col_off
        c2 = 2 * col_off
        s00, s01, s02 = src[0:n], src[c1:c1 + n], src[c2:c2 + n]
        s10, s11, s12 = src[r1:r1 + n], src[r1 + c1:r1 + c1 + n], src[r1 + c2:r1 + c2 + n]
        s20, s21, s22 = src[r2:r2 + n], src[r2 + c1:r2 + c1 + n], src[r2 + c2:r2 + c2 + n]
        w00, w01, w02 = wk[0, 0], wk[0, 1], wk[0, 2]
        w10, w11, w12 = wk[1, 0], wk[1, 1], wk[1, 2]
        w20, w21, w22 = wk[2, 0], wk[2, 1], wk[2, 2]
        for q in range(n):
            acc[q] += (w00 * s00[q] + w01 * s01[q] + w02 * s02[q]
                       + w10 * s10[q] + w11 * s11[q] + w12 * s12[q]
                       + w20 * s20[q] + w21 * s21[q] + w22 * s22[q])
        return
    for i in range(kh):
        for j in range(kw):
            start = i * row_off + j * col_off
            s = src[start:start + n]
            wv = wk[i, j]
            for q in range(n):
                acc[q] += wv * s[q]


@njit(**_JIT)
def _dots_flat(gw, g, src, row_off, col_off, n):
    """gw[i, j] += sum_q g[q] * src[q + i*row_off + j*col_off] for q < n."""
    kh, kw = gw.shape
    z = src.dtype.type(0)    # float32 sums for float32 data: full-width vectors
    if kh == 3 and kw == 3:
        r1 = row_off
        r2 = 2 * row_off
        c1 = col_off
        c2 = 2 * col_off
        s00, s01, s02 = src[0:n], src[c1:c1 + n], src[c2:c2 + n]
        s10, s11, s12 = src[r1:r1 + n], src[r1 + c1:r1 + c1 + n], src[r1 + c2:r1 + c2 + n]
        s20, s21, s22 = src[r2:r2 + n], src[r2 + c1:r2 + c1 + n], src[r2 + c2:r2 + c2 + n]
        a00 = a01 = a02 = a10 = a11 = a12 = a20 = a21 = a22 = z
        for q in range(n):
            v = g[q]
            a00 += v * s00[q]
            a01 += v * s01[q]
            a02 += v * s02[q]
            a10 += v * s10[q]
            a11 += v * s11[q]
            a12 += v * s12[q]
            a20 += v * s20[q]
            a21 += v * s21[q]
            a22 += v * s22[q]
        gw[0, 0] += a00
        gw[0, 1] += a01
        gw[0, 2] += a02
        gw[1, 0] += a10
        gw[1, 1] += a11
        gw[1, 2] += a12
        gw[2, 0] += a20
        gw[2, 1] += a21
        gw[2, 2] += a22
        return
    for i in range(kh):
        for j in range(kw):
            start = i * row_off + j * col_off
            s = src[start:start + n]
            total = z
            for q in range(n):
                total += g[q] * s[q]
            gw[i, j] += total


@njit(**_JIT)
def _corr_strided(acc, xs, wk, sh, sw, dh, dw, wp, out_h, out_w):
    """acc[oh*out_w + ow] += sum_ij wk[i, j] * xs[(oh*sh + i*dh)*wp + ow*sw + j*dw]."""
    kh, kw = wk.shape
    for oh in range(out_h):
        arow = acc[oh * out_w:(oh + 1) * out_w]
        for i in range(kh):
            base = (oh * sh + i * dh) * wp
            for j in range(kw):
                wv = wk[i, j]
                start = base + j * dw
                for ow in range(out_w):
                    arow[ow] += wv * xs[start + ow * sw]


@njit(**_PJIT)
def depthwise_forward(x, w3, b, sh, sw, ph, pw, dh, dw, y, n_chunks):
    """y[n, c*m + k] = corr(x[n, c], w3[c*m + k]) + b[c*m + k], parallel over
    (image, input channel) items; each item's padded plane feeds its m outputs."""
    n, c_in, height, width = x.shape
    c_out = w3.shape[0]
    mult = c_out // c_in
    out_h, out_w = y.shape[2], y.shape[3]
    wp = width + 2 * pw
    plane = (height + 2 * ph) * wp
    unit = sh == 1 and sw == 1
    span = (out_h - 1) * wp + out_w if unit else out_h * out_w
    row_len = wp if unit else out_w
    items = n * c_in
    for chunk in prange(n_chunks):
        xs = np.zeros(plane, dtype=x.dtype)
        acc = np.empty(span, dtype=x.dtype)
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // c_in
            c = item - img * c_in
            _fill_plane(xs, x[img, c], ph, pw, wp)
            for k in range(mult):
                co = c * mult + k
                acc[:] = 0
                if unit:
                    _corr_flat(acc, xs, w3[co], dh * wp, dw, span)
                else:
                    _corr_strided(acc, xs, w3[co], sh, sw, dh, dw, wp, out_h, out_w)
                bias = b[co]
                for oh in range(out_h):
                    src = acc[oh * row_len:oh * row_len + out_w]
                    dst = y[img, co, oh]
                    for ow in range(out_w):
                        dst[ow] = src[ow] + bias


@njit(**_JIT)
def _strided_backward(gy_plane, xs, wk, gw, gpad, sh, sw, dh, dw, wp, need_grad_x, need_grad_w):
    """Row-loop backward of one output plane: gw += taps, gpad (flat) += scatter."""
    kh, kw = wk.shape
    out_h, out_w = gy_plane.shape
    for oh in range(out_h):
        grow = gy_plane[oh]
        for i in range(kh):
            base = (oh * sh + i * dh) * wp
            for j in range(kw):
                start = base + j * dw
                wv = wk[i, j]
                total = 0.0
                for ow in range(out_w):
                    g = grow[ow]
                    if need_grad_w:
                        total += g * xs[start + ow * sw]
                    if need_grad_x:
                        gpad[start + ow * sw] += wv * g
                if need_grad_w:
                    gw[i, j] += total


@njit(**_PJIT)
def depthwise_backward(gy, x, w3, wflip3, bias, c_in, height, width, sh, sw, ph, pw, dh, dw,
                       need_grad_x, need_grad_w, grad_x, gw_parts, gb_parts, n_chunks):
    """Gradients of `depthwise_forward`, parallel over (image, input channel) items.

    ``grad_x[n, c]`` (when ``need_grad_x``) = sum over its m outputs of the flipped
    correlation, plus ``bias[c]`` (zero for a backward; the bias of a transposed
    convolution).  With ``need_grad_w`` chunk t adds its items' weight and bias
    gradients into ``gw_parts[t]`` / ``gb_parts[t]`` (the caller sums the parts);
    without it ``x`` is not read (a transposed convolution has none).
    """
    n = gy.shape[0]
    c_out, kh, kw = w3.shape
    mult = c_out // c_in
    out_h, out_w = gy.shape[2], gy.shape[3]
    wp = width + 2 * pw
    plane = (height + 2 * ph) * wp
    unit = sh == 1 and sw == 1
    margin = (kh - 1) * dh * wp + (kw - 1) * dw
    span = (out_h - 1) * wp + out_w
    span_x = (height - 1) * wp + width          # input-gradient positions to compute
    first_x = ph * wp + pw                      # padded position of x[0, 0]
    items = n * c_in
    for chunk in prange(n_chunks):
        xs = np.zeros(plane, dtype=gy.dtype)
        gbuf = np.zeros(margin + plane, dtype=gy.dtype)   # zero except the gy rows
        gacc = np.empty(plane, dtype=gy.dtype)
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // c_in
            c = item - img * c_in
            if need_grad_w:
                _fill_plane(xs, x[img, c], ph, pw, wp)
            gacc[:] = 0
            for k in range(mult):
                co = c * mult + k
                g_plane = gy[img, co]
                if need_grad_w:
                    total = 0.0
                    for oh in range(out_h):
                        for ow in range(out_w):
                            total += g_plane[oh, ow]
                    gb_parts[chunk, co] += total
                if not unit:
                    _strided_backward(g_plane, xs, w3[co], gw_parts[chunk, co], gacc,
                                      sh, sw, dh, dw, wp, need_grad_x, need_grad_w)
                    continue
                for oh in range(out_h):
                    start = margin + oh * wp
                    d = gbuf[start:start + out_w]
                    s = g_plane[oh]
                    for ow in range(out_w):
                        d[ow] = s[ow]
                if need_grad_w:
                    _dots_flat(gw_parts[chunk, co], gbuf[margin:margin + span], xs, dh * wp, dw, span)
                if need_grad_x:
                    _corr_flat(gacc[first_x:first_x + span_x], gbuf[first_x:], wflip3[co],
                               dh * wp, dw, span_x)
            if need_grad_x:
                b = bias[c]
                for r in range(height):
                    src = gacc[(r + ph) * wp + pw:(r + ph) * wp + pw + width]
                    dst = grad_x[img, c, r]
                    for col in range(width):
                        dst[col] = src[col] + b
