"""Direct (im2col-free) convolution kernels for the numba backend.

Stride 1 uses the "flat plane" formulation: the padded input plane is stored row-major
with row length ``wp = W + 2*pw`` and the output is accumulated on the same row
length, so every kernel tap ``(i, j)`` becomes one long axpy over the whole plane::

    acc[q] += w[i, j] * xpad[i*wp + j + q]        for q in [0, span)

with ``span = (out_h - 1)*wp + out_w``.  The ``wp - out_w`` columns of each output row
are garbage and dropped when writing out (14-27 % waste for the reports' shapes), but
the inner loop is a single contiguous loop of ~250-1200 elements that LLVM
vectorises and unrolls; looping over the 14- or 28-wide output rows instead leaves
most of the work in the scalar remainder of an 8-wide x 4-unrolled vector loop.  The
taps of one kernel row and two output channels are fused in one pass
(``_taps2``), so each input vector loaded feeds 10 FMAs.  That needs a zero-padded
copy of each image (``C*(H+2p)*(W+2p)`` writes against ``C_out*C*kh*kw*out_h*out_w``
FMAs, i.e. < 4 % of the work); clipped loop bounds would break the flat loop.

The input gradient of a stride-1 convolution is itself such a correlation of the
zero-framed output gradient with the column-flipped kernel, so it reuses the same
tap kernels; the weight gradient is the matching set of dot products.  Other strides
take a plain (still padded, still parallel) loop nest: correct, not tuned.

Every function here trusts its caller (`numba_backend`): arrays C-contiguous and
writable, shapes consistent, ints in range.  Bounds checks are off, so these must
only be reached through `fastconv.functional`, which validates.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# reassoc lets LLVM vectorise the dot-product reductions; contract allows FMAs.
# No nnan/ninf: NaN and inf inputs must propagate as they do in NumPy.
FASTMATH = {"reassoc", "contract"}
_JIT = dict(cache=True, nogil=True, fastmath=FASTMATH)
_PJIT = dict(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)


# --------------------------------------------------------------------------- taps
# acc_c[q] += sum_j wrow_c[j] * src[q + j] for q < n: one kernel row, two output planes.
# Slices (not base + q offsets) keep indices provably non-negative, which is what
# lets LLVM drop numba's wraparound handling and vectorise (measured 5x).  An odd
# last channel is paired with itself and the copy discarded: one kernel instead of
# a single-plane variant too (compile time), at the cost of 2x work on that channel.
@njit(**_JIT)
def _taps2(acc0, acc1, src, wrow0, wrow1, kw, n):
    """Each input value loaded feeds 2*kw FMAs."""
    if kw == 5:
        a0, a1, a2, a3, a4 = wrow0[0], wrow0[1], wrow0[2], wrow0[3], wrow0[4]
        b0, b1, b2, b3, b4 = wrow1[0], wrow1[1], wrow1[2], wrow1[3], wrow1[4]
        for q in range(n):
            x0 = src[q]
            x1 = src[q + 1]
            x2 = src[q + 2]
            x3 = src[q + 3]
            x4 = src[q + 4]
            acc0[q] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3 + a4 * x4
            acc1[q] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3 + b4 * x4
    elif kw == 3:
        a0, a1, a2 = wrow0[0], wrow0[1], wrow0[2]
        b0, b1, b2 = wrow1[0], wrow1[1], wrow1[2]
        for q in range(n):
            x0 = src[q]
            x1 = src[q + 1]
            x2 = src[q + 2]
            acc0[q] += a0 * x0 + a1 * x1 + a2 * x2
            acc1[q] += b0 * x0 + b1 * x1 + b2 * x2
    else:
        for j in range(kw):
            wa = wrow0[j]
            wb = wrow1[j]
            s = src[j:j + n]
            for q in range(n):
                acc0[q] += wa * s[q]
                acc1[q] += wb * s[q]


@njit(**_JIT)
def _taps2x2(acc0, acc1, src_a, src_b, wa0, wa1, wb0, wb1, kw, n):
    """`_taps2` for two kernel rows at once (sources ``src_a``, ``src_b``): half the
    accumulator loads/stores and calls; ~10 % faster on report 000's 14x14 layer."""
    if kw == 5:
        a0, a1, a2, a3, a4 = wa0[0], wa0[1], wa0[2], wa0[3], wa0[4]
        b0, b1, b2, b3, b4 = wa1[0], wa1[1], wa1[2], wa1[3], wa1[4]
        c0, c1, c2, c3, c4 = wb0[0], wb0[1], wb0[2], wb0[3], wb0[4]
        d0, d1, d2, d3, d4 = wb1[0], wb1[1], wb1[2], wb1[3], wb1[4]
        for q in range(n):
            x0 = src_a[q]
            x1 = src_a[q + 1]
            x2 = src_a[q + 2]
            x3 = src_a[q + 3]
            x4 = src_a[q + 4]
            y0 = src_b[q]
            y1 = src_b[q + 1]
            y2 = src_b[q + 2]
            y3 = src_b[q + 3]
            y4 = src_b[q + 4]
            acc0[q] += (a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3 + a4 * x4
                        + c0 * y0 + c1 * y1 + c2 * y2 + c3 * y3 + c4 * y4)
            acc1[q] += (b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3 + b4 * x4
                        + d0 * y0 + d1 * y1 + d2 * y2 + d3 * y3 + d4 * y4)
    elif kw == 3:
        a0, a1, a2 = wa0[0], wa0[1], wa0[2]
        b0, b1, b2 = wa1[0], wa1[1], wa1[2]
        c0, c1, c2 = wb0[0], wb0[1], wb0[2]
        d0, d1, d2 = wb1[0], wb1[1], wb1[2]
        for q in range(n):
            x0 = src_a[q]
            x1 = src_a[q + 1]
            x2 = src_a[q + 2]
            y0 = src_b[q]
            y1 = src_b[q + 1]
            y2 = src_b[q + 2]
            acc0[q] += a0 * x0 + a1 * x1 + a2 * x2 + c0 * y0 + c1 * y1 + c2 * y2
            acc1[q] += b0 * x0 + b1 * x1 + b2 * x2 + d0 * y0 + d1 * y1 + d2 * y2
    else:
        _taps2(acc0, acc1, src_a, wa0, wa1, kw, n)
        _taps2(acc0, acc1, src_b, wb0, wb1, kw, n)


@njit(**_JIT)
def _dots2(gw0, gw1, g0, g1, src, kw, n):
    """gw_c[j] += sum_q g_c[q] * src[q + j]: weight-gradient taps of two output channels."""
    z = src.dtype.type(0)    # float32 sums for float32 data: full-width vectors
    if kw == 5:
        s00 = s01 = s02 = s03 = s04 = z
        s10 = s11 = s12 = s13 = s14 = z
        for q in range(n):
            x0 = src[q]
            x1 = src[q + 1]
            x2 = src[q + 2]
            x3 = src[q + 3]
            x4 = src[q + 4]
            a = g0[q]
            b = g1[q]
            s00 += a * x0
            s01 += a * x1
            s02 += a * x2
            s03 += a * x3
            s04 += a * x4
            s10 += b * x0
            s11 += b * x1
            s12 += b * x2
            s13 += b * x3
            s14 += b * x4
        gw0[0] += s00
        gw0[1] += s01
        gw0[2] += s02
        gw0[3] += s03
        gw0[4] += s04
        gw1[0] += s10
        gw1[1] += s11
        gw1[2] += s12
        gw1[3] += s13
        gw1[4] += s14
    elif kw == 3:
        s00 = s01 = s02 = z
        s10 = s11 = s12 = z
        for q in range(n):
            x0 = src[q]
            x1 = src[q + 1]
            x2 = src[q + 2]
            a = g0[q]
            b = g1[q]
            s00 += a * x0
            s01 += a * x1
            s02 += a * x2
            s10 += b * x0
            s11 += b * x1
            s12 += b * x2
        gw0[0] += s00
        gw0[1] += s01
        gw0[2] += s02
        gw1[0] += s10
        gw1[1] += s11
        gw1[2] += s12
    else:
        for j in range(kw):
            s = src[j:j + n]
            sa = z
            sb = z
            for q in range(n):
                sa += g0[q] * s[q]
                sb += g1[q] * s[q]
            gw0[j] += sa
            gw1[j] += sb


@njit(**_JIT)
def _fill_padded(dst, x_img, ph, pw, wp, channel_stride, offset):
    """Copy the (C, H, W) image into the interior of its zero-bordered padded plane,
    which starts at ``ci * channel_stride + offset`` of the flat ``dst``."""
    c_in, height, width = x_img.shape
    for ci in range(c_in):
        for r in range(height):
            start = ci * channel_stride + offset + (r + ph) * wp + pw
            d = dst[start:start + width]
            s = x_img[ci, r]
            for c in range(width):
                d[c] = s[c]


# --------------------------------------------------------------------------- forward
@njit(**_PJIT)
def conv2d_direct_forward(x, w, b, sh, sw, ph, pw, relu, group, out, pool, pooled, n_chunks):
    """out = conv(x, w) + b (then max(., 0) if relu), parallel over (group of images,
    output-channel pair).  With ``pool``, also ``pooled`` = 2x2 average pooling
    (stride 2, floor) of ``out``, computed while its rows are still in cache.

    Stride 1 stacks the padded planes of ``group`` images end to end, so one flat
    axpy per tap covers the whole group (see the module doc: the rows between two
    images are garbage positions like the columns past ``out_w``).  Fewer, longer
    loops: the tap kernels' set-up and remainder iterations are paid once per group.
    """
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    out_h, out_w = out.shape[2], out.shape[3]
    hp = height + 2 * ph
    wp = width + 2 * pw
    plane = hp * wp
    unit = sh == 1 and sw == 1
    if not unit:
        group = 1
    stack = group * plane                       # one channel's stacked planes
    span = (out_h - 1) * wp + out_w if unit else out_h * out_w
    n_groups = (n + group - 1) // group
    n_pairs = (c_out + 1) // 2
    items = n_groups * n_pairs
    zero = out.dtype.type(0)   # typed, so v stays float32 for float32 input
    quarter = out.dtype.type(0.25)
    for chunk in prange(n_chunks):
        first = items * chunk // n_chunks
        last = items * (chunk + 1) // n_chunks
        xs = np.zeros(c_in * stack, dtype=x.dtype)
        acc = np.empty((2, stack), dtype=x.dtype)
        current = -1
        for item in range(first, last):
            grp = item // n_pairs
            co0 = 2 * (item - grp * n_pairs)
            pair = co0 + 1 < c_out
            img0 = grp * group
            count = min(group, n - img0)
            if grp != current:
                current = grp
                for k in range(count):
                    _fill_padded(xs, x[img0 + k], ph, pw, wp, stack, k * plane)
            length = (count - 1) * plane + span
            acc[:, :length] = 0
            acc0 = acc[0, :length]
            acc1 = acc[1, :length]
            if unit:
                co1 = co0 + 1 if pair else co0
                for ci in range(c_in):
                    for i in range(0, kh - 1, 2):
                        start = ci * stack + i * wp
                        _taps2x2(acc0, acc1, xs[start:start + length + kw - 1],
                                 xs[start + wp:start + wp + length + kw - 1],
                                 w[co0, ci, i], w[co1, ci, i], w[co0, ci, i + 1], w[co1, ci, i + 1],
                                 kw, length)
                    if kh % 2:
                        start = ci * stack + (kh - 1) * wp
                        _taps2(acc0, acc1, xs[start:start + length + kw - 1],
                               w[co0, ci, kh - 1], w[co1, ci, kh - 1], kw, length)
                row_len = wp
            else:
                for c in range(2 if pair else 1):
                    a = acc[c]
                    for ci in range(c_in):
                        for i in range(kh):
                            for j in range(kw):
                                wv = w[co0 + c, ci, i, j]
                                for oh in range(out_h):
                                    start = ci * stack + (oh * sh + i) * wp + j
                                    arow = a[oh * out_w:(oh + 1) * out_w]
                                    for ow in range(out_w):
                                        arow[ow] += wv * xs[start + ow * sw]
                row_len = out_w
            for k in range(count):
                for c in range(2 if pair else 1):
                    bias = b[co0 + c]
                    a = acc[c]
                    for oh in range(out_h):
                        base = k * plane + oh * row_len
                        arow = a[base:base + out_w]
                        orow = out[img0 + k, co0 + c, oh]
                        for ow in range(out_w):
                            v = arow[ow] + bias
                            if relu and v < 0:
                                v = zero
                            orow[ow] = v
                    if pool:
                        plane_out = out[img0 + k, co0 + c]
                        plane_pooled = pooled[img0 + k, co0 + c]
                        for r in range(plane_pooled.shape[0]):
                            row0 = plane_out[2 * r]
                            row1 = plane_out[2 * r + 1]
                            prow = plane_pooled[r]
                            for q in range(plane_pooled.shape[1]):
                                prow[q] = quarter * (row0[2 * q] + row0[2 * q + 1]
                                                     + row1[2 * q] + row1[2 * q + 1])


# --------------------------------------------------------------------------- backward
@njit(**_JIT)
def _gradient_plane(dst, grad_y, mask, img, co, use_mask, pooled, base, row_len, out_h, out_w):
    """Lay out output-gradient plane ``(img, co)`` at ``dst[base + oh*row_len:][:out_w]``
    for every output row ``oh``: times ``mask > 0`` (the fused ReLU) with ``use_mask``;
    with ``pooled``, ``grad_y`` is the 2x2-average-pooled plane's gradient (spread back
    over its windows; what floor-mode pooling dropped gets zero).  Returns its sum (the
    bias gradient's share)."""
    zero = grad_y.dtype.type(0)
    quarter = grad_y.dtype.type(0.25)
    total = 0.0
    for oh in range(out_h):
        start = base + oh * row_len
        row = dst[start:start + out_w]
        if pooled:
            row[:] = zero
            if oh // 2 < grad_y.shape[2]:
                grow = grad_y[img, co, oh // 2]
                mrow = mask[img, co, oh]
                for q in range(grad_y.shape[3]):
                    v = quarter * grow[q]
                    v0 = v if mrow[2 * q] > 0 else zero
                    v1 = v if mrow[2 * q + 1] > 0 else zero
                    row[2 * q] = v0
                    row[2 * q + 1] = v1
                    total += v0 + v1
            continue
        grow = grad_y[img, co, oh]
        if use_mask:
            mrow = mask[img, co, oh]
            for ow in range(out_w):
                v = grow[ow] if mrow[ow] > 0 else zero
                row[ow] = v
                total += v
        else:
            for ow in range(out_w):
                row[ow] = grow[ow]
                total += grow[ow]
    return total


@njit(**_PJIT)
def conv2d_direct_backward(grad_y, x, w, mask, use_mask, pooled, ph, pw, need_grad_x, group,
                           grad_x, grad_w_parts, grad_b_parts, n_chunks):
    """Fused stride-1 conv backward, parallel over chunks of images, ``group`` images
    at a time (strides other than 1: `conv2d_direct_backward_strided`).

    Chunk ``t`` accumulates its images' weight/bias gradients into
    ``grad_w_parts[t]`` / ``grad_b_parts[t]`` (no two threads write the same
    memory); the caller sums the parts.  With ``use_mask`` the incoming gradient is
    first multiplied by ``mask > 0`` (the fused ReLU: ``mask`` is the ReLU output).
    ``grad_x`` is only written when ``need_grad_x``.

    The group's planes are stacked as the forward does.  The output gradient is laid
    out on the same padded grid and is zero at every garbage position (columns past
    ``out_w``, rows past ``out_h``): the weight-gradient dot products then run over
    the whole group at once, and the input-gradient taps, which reach up to ``kh - 1``
    rows and ``kw - 1`` columns back, read zeros where they cross into the previous
    image (or into the leading zero ``margin``).
    """
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    hp = height + 2 * ph
    wp = width + 2 * pw
    out_h = hp - kh + 1
    out_w = wp - kw + 1
    plane = hp * wp
    stack = group * plane
    margin = (kh - 1) * wp + (kw - 1)
    span = (out_h - 1) * wp + out_w
    span_x = (height - 1) * wp + width          # input-gradient positions to compute
    first_x = ph * wp + pw                      # padded position of x[0, 0]
    # Column-flipped weights, transposed to (C_in, C_out, kh, kw): the input gradient
    # is a correlation of the output gradient with these.
    w_flip = np.empty((c_in, c_out, kh, kw), dtype=w.dtype)
    for co in range(c_out):
        for ci in range(c_in):
            for i in range(kh):
                for j in range(kw):
                    w_flip[ci, co, i, j] = w[co, ci, i, kw - 1 - j]
    for chunk in prange(n_chunks):
        first = n * chunk // n_chunks
        last = n * (chunk + 1) // n_chunks
        gw = grad_w_parts[chunk]
        gb = grad_b_parts[chunk]
        xs = np.zeros(c_in * stack, dtype=x.dtype)
        gflat = np.zeros((c_out, margin + stack), dtype=x.dtype)
        gxs = np.empty((2, stack), dtype=x.dtype)
        scratch = np.zeros(kw, dtype=grad_w_parts.dtype)
        for img0 in range(first, last, group):
            count = min(group, last - img0)
            for k in range(count):
                _fill_padded(xs, x[img0 + k], ph, pw, wp, stack, k * plane)
                for co in range(c_out):
                    gb[co] += _gradient_plane(gflat[co], grad_y, mask, img0 + k, co, use_mask, pooled,
                                              margin + k * plane, wp, out_h, out_w)
            length = (count - 1) * plane + span
            # weight gradient: gw[co, ci, i, j] += sum_q g[co, q] * xs[ci, i*wp + j + q]
            for co0 in range(0, c_out, 2):
                co1 = co0 + 1 if co0 + 1 < c_out else co0
                g0 = gflat[co0, margin:margin + length]
                g1 = gflat[co1, margin:margin + length]
                for ci in range(c_in):
                    for i in range(kh):
                        start = ci * stack + i * wp
                        src = xs[start:start + length + kw - 1]
                        if co1 != co0:
                            _dots2(gw[co0, ci, i], gw[co1, ci, i], g0, g1, src, kw, length)
                        else:
                            # odd last channel: pair it with itself, discard the copy
                            _dots2(gw[co0, ci, i], scratch, g0, g0, src, kw, length)
            if need_grad_x:
                # gxs[p] += sum_{co,i,j} w[co,ci,i,j] * g[co, p - i*wp - j], p >= first_x
                length_x = (count - 1) * plane + span_x
                for ci0 in range(0, c_in, 2):
                    pair = ci0 + 1 < c_in
                    gxs[:, :length_x] = 0
                    a0 = gxs[0, :length_x]
                    a1 = gxs[1, :length_x]
                    ci1 = ci0 + 1 if pair else ci0
                    for co in range(c_out):
                        g = gflat[co]
                        for i in range(0, kh - 1, 2):
                            start = margin - i * wp - (kw - 1) + first_x
                            _taps2x2(a0, a1, g[start:start + length_x + kw - 1],
                                     g[start - wp:start - wp + length_x + kw - 1],
                                     w_flip[ci0, co, i], w_flip[ci1, co, i],
                                     w_flip[ci0, co, i + 1], w_flip[ci1, co, i + 1], kw, length_x)
                        if kh % 2:
                            start = margin - (kh - 1) * wp - (kw - 1) + first_x
                            _taps2(a0, a1, g[start:start + length_x + kw - 1],
                                   w_flip[ci0, co, kh - 1], w_flip[ci1, co, kh - 1], kw, length_x)
                    for k in range(count):
                        for c in range(2 if pair else 1):
                            for r in range(height):
                                base = k * plane + r * wp
                                srow = gxs[c, base:base + width]
                                drow = grad_x[img0 + k, ci0 + c, r]
                                for col in range(width):
                                    drow[col] = srow[col]


@njit(**_PJIT)
def conv2d_direct_backward_strided(grad_y, x, w, mask, use_mask, pooled, sh, sw, ph, pw, need_grad_x,
                                   grad_x, grad_w_parts, grad_b_parts, n_chunks):
    """`conv2d_direct_backward` for any stride: plain (still padded, still parallel)
    loops over one image at a time, not tuned.  A kernel of its own, so that the
    stride-1 layers most networks are made of do not compile it."""
    n, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    hp = height + 2 * ph
    wp = width + 2 * pw
    out_h = (hp - kh) // sh + 1
    out_w = (wp - kw) // sw + 1
    for chunk in prange(n_chunks):
        gw = grad_w_parts[chunk]
        gb = grad_b_parts[chunk]
        xs = np.zeros(c_in * hp * wp, dtype=x.dtype)
        gflat = np.zeros((c_out, out_h * out_w), dtype=x.dtype)
        gx = np.empty(hp * wp, dtype=x.dtype)
        for img in range(n * chunk // n_chunks, n * (chunk + 1) // n_chunks):
            _fill_padded(xs, x[img], ph, pw, wp, hp * wp, 0)
            for co in range(c_out):
                gb[co] += _gradient_plane(gflat[co], grad_y, mask, img, co, use_mask, pooled,
                                          0, out_w, out_h, out_w)
            for co in range(c_out):
                g = gflat[co]
                for ci in range(c_in):
                    for i in range(kh):
                        for j in range(kw):
                            s = 0.0
                            for oh in range(out_h):
                                start = ci * hp * wp + (oh * sh + i) * wp + j
                                grow = g[oh * out_w:(oh + 1) * out_w]
                                for ow in range(out_w):
                                    s += grow[ow] * xs[start + ow * sw]
                            gw[co, ci, i, j] += s
            if need_grad_x:
                for ci in range(c_in):
                    gx[:] = 0
                    for co in range(c_out):
                        g = gflat[co]
                        for i in range(kh):
                            for j in range(kw):
                                wv = w[co, ci, i, j]
                                for oh in range(out_h):
                                    start = (oh * sh + i) * wp + j
                                    grow = g[oh * out_w:(oh + 1) * out_w]
                                    for ow in range(out_w):
                                        gx[start + ow * sw] += wv * grow[ow]
                    for r in range(height):
                        srow = gx[(r + ph) * wp + pw:(r + ph) * wp + pw + width]
                        drow = grad_x[img, ci, r]
                        for col in range(width):
                            drow[col] = srow[col]
