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

Other strides split the padded plane into its ``sh*sw`` stride phases (pixel (R, C)
to phase (R % sh, C % sw) at (R // sh, C // sw)): in them each tap of every output
is again one contiguous run, so the same flat loops apply, one pass per tap.

Backward, stride 1: the output gradient is laid out on the same padded grid (zero at
the garbage positions) behind a zero ``margin``; the weight gradient is nine dot
products in one pass, and the input gradient is the same correlation with the
flipped kernel (taps reaching back into the margin read zeros).  Strided: per tap, a
dot product and a contiguous scatter-add into the phase buffer.  The input gradient
alone, plus a bias, is also the transposed convolution of a depthwise kernel.

Everything trusts its caller (`numba_backend.depthwise`): arrays C-contiguous,
shapes consistent, no bounds checks.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends.numba_backend.kernels.phases import _fill_phases, _geometry, _read_phases, _tap_offset

# reassoc lets LLVM vectorise the dot-product reductions; contract allows FMAs.
FASTMATH = {"reassoc", "contract"}
_JIT = dict(cache=True, nogil=True, fastmath=FASTMATH)
_PJIT = dict(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)


@njit(**_JIT)
def _corr_flat(acc, src, wk, row_off, col_off, n, assign, init):
    """acc[q] (+)= sum_ij wk[i, j] * src[q + i*row_off + j*col_off] for q < n; with
    ``assign`` acc[q] = init + the sum (no separate fill pass: ~20 % faster at 3x3).

    Slices, not ``q + offset`` indices: they keep every index provably non-negative,
    which is what lets LLVM drop the wraparound checks and vectorise."""
    kh, kw = wk.shape
    if assign and not (kh == 3 and kw == 3):
        acc[:n] = init
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
        if assign:
            for q in range(n):
                acc[q] = init + (w00 * s00[q] + w01 * s01[q] + w02 * s02[q]
                                 + w10 * s10[q] + w11 * s11[q] + w12 * s12[q]
                                 + w20 * s20[q] + w21 * s21[q] + w22 * s22[q])
            return
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
def _phased_corr(acc, buf, wk, sh, sw, dh, dw, phase_size, pwid, n):
    """acc[q] += sum_ij wk[i, j] * buf[offset(i, j) + q]: one contiguous pass per tap."""
    kh, kw = wk.shape
    for i in range(kh):
        for j in range(kw):
            start = _tap_offset(i, j, sh, sw, dh, dw, phase_size, pwid)
            s = buf[start:start + n]
            wv = wk[i, j]
            for q in range(n):
                acc[q] += wv * s[q]


@njit(**_JIT)
def _phased_backward(gw, gacc, g, buf, wk, sh, sw, dh, dw, phase_size, pwid, n, need_grad_x, need_grad_w):
    """Per tap: gw[i, j] += dot(g, buf[offset:]) and gacc[offset:] += wk[i, j] * g."""
    kh, kw = wk.shape
    z = buf.dtype.type(0)
    for i in range(kh):
        for j in range(kw):
            start = _tap_offset(i, j, sh, sw, dh, dw, phase_size, pwid)
            if need_grad_w:
                s = buf[start:start + n]
                total = z
                for q in range(n):
                    total += g[q] * s[q]
                gw[i, j] += total
            if need_grad_x:
                d = gacc[start:start + n]
                wv = wk[i, j]
                for q in range(n):
                    d[q] += wv * g[q]


@njit(**_PJIT)
def depthwise_forward(x, w3, b, sh, sw, ph, pw, dh, dw, y, n_chunks):
    """y[n, c*m + k] = corr(x[n, c], w3[c*m + k]) + b[c*m + k], parallel over
    (image, input channel) items; each item's padded plane feeds its m outputs.

    Strided: the padded plane is split into its ``sh*sw`` stride phases, in which
    every tap of every output is again one flat contiguous run (`_tap_offset`)."""
    n, c_in, height, width = x.shape
    c_out = w3.shape[0]
    mult = c_out // c_in
    out_h, out_w = y.shape[2], y.shape[3]
    phase_size, pwid = _geometry(height, width, ph, pw, sh, sw)
    unit = sh == 1 and sw == 1
    span = (out_h - 1) * pwid + out_w
    items = n * c_in
    for chunk in prange(n_chunks):
        xs = np.zeros(sh * sw * phase_size, dtype=x.dtype)
        rows = np.zeros_like(xs)
        acc = np.empty(span, dtype=x.dtype)
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // c_in
            c = item - img * c_in
            _fill_phases(xs, x[img, c], ph, pw, sh, sw, phase_size, pwid, rows)
            for k in range(mult):
                co = c * mult + k
                if unit:
                    _corr_flat(acc, xs, w3[co], dh * pwid, dw, span, True, b[co])
                else:
                    acc[:] = b[co]
                    _phased_corr(acc, xs, w3[co], sh, sw, dh, dw, phase_size, pwid, span)
                for oh in range(out_h):
                    src = acc[oh * pwid:oh * pwid + out_w]
                    dst = y[img, co, oh]
                    for ow in range(out_w):
                        dst[ow] = src[ow]


@njit(**_PJIT)
def depthwise_backward(gy, x, w3, wflip3, bias, c_in, height, width, sh, sw, ph, pw, dh, dw,
                       need_grad_x, need_grad_w, grad_x, gw_parts, gb_parts, n_chunks):
    """Gradients of `depthwise_forward`, parallel over (image, input channel) items.

    ``grad_x[n, c]`` (when ``need_grad_x``) = sum over its m outputs of the flipped
    correlation, plus ``bias[c]`` (zero for a backward; the bias of a transposed
    convolution).  With ``need_grad_w`` chunk t adds its items' weight and bias
    gradients into ``gw_parts[t]`` / ``gb_parts[t]`` (the caller sums the parts);
    without it ``x`` is not read (a transposed convolution has none).

    The output gradient goes onto the output grid (row length ``pwid``, zero at the
    garbage columns).  Stride 1 puts it behind a zero ``margin`` and gathers (one
    pass for 3x3); other strides scatter each tap into the phase buffer.
    """
    n = gy.shape[0]
    c_out, kh, kw = w3.shape
    mult = c_out // c_in
    out_h, out_w = gy.shape[2], gy.shape[3]
    phase_size, pwid = _geometry(height, width, ph, pw, sh, sw)
    unit = sh == 1 and sw == 1
    margin = (kh - 1) * dh * pwid + (kw - 1) * dw if unit else 0
    span = (out_h - 1) * pwid + out_w
    span_x = (height - 1) * pwid + width        # stride 1: input-gradient positions
    first_x = ph * pwid + pw                    # stride 1: padded position of x[0, 0]
    items = n * c_in
    for chunk in prange(n_chunks):
        xs = np.zeros(sh * sw * phase_size, dtype=gy.dtype)
        gbuf = np.zeros(margin + sh * sw * phase_size, dtype=gy.dtype)   # zero but the gy rows
        gacc = np.empty(sh * sw * phase_size, dtype=gy.dtype)
        rows = np.zeros_like(xs)            # staging: `_fill_phases` needs its padding zero,
        rows_out = np.empty_like(xs)        # `_read_phases` writes all of its own
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // c_in
            c = item - img * c_in
            if need_grad_w:
                _fill_phases(xs, x[img, c], ph, pw, sh, sw, phase_size, pwid, rows)
            gacc[:] = 0
            for k in range(mult):
                co = c * mult + k
                g_plane = gy[img, co]
                total = 0.0
                for oh in range(out_h):
                    d = gbuf[margin + oh * pwid:margin + oh * pwid + out_w]
                    s = g_plane[oh]
                    for ow in range(out_w):
                        d[ow] = s[ow]
                        total += s[ow]
                g = gbuf[margin:margin + span]
                if need_grad_w:
                    gb_parts[chunk, co] += total
                if not unit:
                    _phased_backward(gw_parts[chunk, co], gacc, g, xs, w3[co], sh, sw, dh, dw,
                                     phase_size, pwid, span, need_grad_x, need_grad_w)
                    continue
                if need_grad_w:
                    _dots_flat(gw_parts[chunk, co], g, xs, dh * pwid, dw, span)
                if need_grad_x:
                    _corr_flat(gacc[first_x:first_x + span_x], gbuf[first_x:], wflip3[co],
                               dh * pwid, dw, span_x, False, gacc[0])
            if need_grad_x:
                _read_phases(gacc, grad_x[img, c], ph, pw, sh, sw, phase_size, pwid, bias[c], rows_out)
