"""Depthwise convolution (``groups == C_in``, any channel multiplier ``m``: output
channel ``c*m + k`` correlates input channel ``c`` alone with its own kernel) on
stacks of planes, in explicit SIMD vectors (``kernels/simd.py``).

Why stacks: with kh*kw multiply-adds per value this is memory-bound, so no im2col;
but one flat loop per plane is shorter than LLVM's vector loop on the small planes of
a MobileNet's later layers (7x7, 14x14) and ran scalar: 270 ns for a 7x7 plane, 10x
PyTorch.  Here a plane is whole vectors, four in registers at a time.

Layout (`numba_backend.depthwise._stack_layout`).  ``block`` consecutive input
planes of one image go into one zero buffer, plane ``p`` at ``p * in_stride``.
Stride 1: the zero-padded plane with shared padding (rows ``pwid`` long, a row's
right padding the next row's left one).  Other strides: the plane's stride phases
(`kernels.phases`), in which every tap of every output is again one contiguous run.
Output ``(oh, ow)`` of a plane is position ``oh*pwid + ow`` of its output entry
(``out_stride`` apart, whole vectors), and tap ``t`` reads input position ``offs[t]``
past it: per vector of outputs, ``taps`` weight broadcasts and loads (`_corr_plane`).
Stride (2, 2) keeps the stride-1 grid and reads ``2q + offs[t]``, the even lanes of
two loads (`_corr_pairs`, `_dot_pairs`, `_corr_pairs_back`); half of each grid row
is then past ``out_w``, so where an output row's vectors fit in a grid row only
those are computed (`_pair_start`).  Other positions past ``out_w`` / ``out_h`` are
computed and dropped.  Rows are copied in and out in vectors with a masked tail.

Backward.  The output gradient goes on its grid (zero elsewhere) behind a zero
``margin``.  The weight gradient of tap ``t`` is a dot product of a plane's gradient
with its input ``offs[t]`` on, kept as one vector per (plane, tap) over the chunk's
images and summed once per block (`_dot_plane`).  The input gradient, phase by
phase, gathers the gradient at the negative shifts of the taps that land in that
phase (`_corr_plane` again), then is read back from the phases.  That input gradient
plus a bias is also the transposed convolution of a depthwise kernel.

Work items are (channel block, image), block-major, one contiguous range per thread.
Everything trusts its caller: arrays C-contiguous, buffers as `_stack_layout` sizes
them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends.numba_backend.kernels.phases import _fill_phases, _read_phases
from fastconv.backends.numba_backend.kernels.simd import (
    vadd, veven, vfma, vlanes, vload, vload_first, vodd, vsplat, vstore, vstore_first, vsum, vzero, vzip_hi,
    vzip_lo)

_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(**_JIT)
def _corr_plane(dst, d0, src, s0, weights, offs, n_vec, accumulate, init):
    """dst[d0 + q] (+)= sum_t weights[t] * src[s0 + q + offs[t]] for ``n_vec`` vectors of
    q, starting from ``init`` (unless accumulating): four vectors at a time in
    registers, one weight broadcast per tap and group."""
    lanes = vlanes(src)
    taps = offs.shape[0]
    v = 0
    while v + 4 <= n_vec:
        q = v * lanes
        if accumulate:
            a0 = vload(dst, d0 + q)
            a1 = vload(dst, d0 + q + lanes)
            a2 = vload(dst, d0 + q + 2 * lanes)
            a3 = vload(dst, d0 + q + 3 * lanes)
        else:
            a0 = a1 = a2 = a3 = vsplat(src, init)
        for t in range(taps):
            c = vsplat(src, weights[t])
            p = s0 + q + offs[t]
            a0 = vfma(c, vload(src, p), a0)
            a1 = vfma(c, vload(src, p + lanes), a1)
            a2 = vfma(c, vload(src, p + 2 * lanes), a2)
            a3 = vfma(c, vload(src, p + 3 * lanes), a3)
        vstore(dst, d0 + q, a0)
        vstore(dst, d0 + q + lanes, a1)
        vstore(dst, d0 + q + 2 * lanes, a2)
        vstore(dst, d0 + q + 3 * lanes, a3)
        v += 4
    while v < n_vec:
        q = v * lanes
        a0 = vload(dst, d0 + q) if accumulate else vsplat(src, init)
        for t in range(taps):
            a0 = vfma(vsplat(src, weights[t]), vload(src, s0 + q + offs[t]), a0)
        vstore(dst, d0 + q, a0)
        v += 1


@njit(**_JIT)
def _dot_plane(acc, g, g0, src, s0, offs, n_vec):
    """acc[t] += (lane-wise) sum_q g[g0 + q] * src[s0 + q + offs[t]] over ``n_vec``
    vectors of q; ``acc[taps]`` += the sum of g (the bias gradient)."""
    lanes = vlanes(src)
    taps = offs.shape[0]
    for t in range(taps):
        a = vzero(src)
        b = vzero(src)
        p = s0 + offs[t]
        v = 0
        while v + 2 <= n_vec:               # two chains: an FMA's latency is 4 cycles
            q = v * lanes
            a = vfma(vload(g, g0 + q), vload(src, p + q), a)
            b = vfma(vload(g, g0 + q + lanes), vload(src, p + q + lanes), b)
            v += 2
        if v < n_vec:
            a = vfma(vload(g, g0 + v * lanes), vload(src, p + v * lanes), a)
        vstore(acc[t], 0, vadd(vload(acc[t], 0), vadd(a, b)))
    total = vzero(src)
    for v in range(n_vec):
        total = vadd(total, vload(g, g0 + v * lanes))
    vstore(acc[taps], 0, vadd(vload(acc[taps], 0), total))


@njit(**_JIT)
def _pair_start(i, row_vec, pwid, lanes):
    """Where vector ``i`` of a stride-(2, 2) plane starts on its output grid:
    ``row_vec`` vectors per output row, rows ``pwid`` apart (``row_vec`` = all the
    plane's vectors: one run)."""
    return (i // row_vec) * pwid + (i % row_vec) * lanes


@njit(**_JIT)
def _corr_pairs(dst, d0, src, s0, weights, offs, n_vec, row_vec, pwid, init):
    """Stride (2, 2) on the flat grid: dst[d0 + q] = init + sum_t weights[t] *
    src[s0 + 2q + offs[t]] for ``n_vec`` vectors of q (``row_vec`` per output row,
    see `_pair_start`), the even lanes of two loads."""
    lanes = vlanes(src)
    taps = offs.shape[0]
    v = 0
    while v + 2 <= n_vec:
        q = _pair_start(v, row_vec, pwid, lanes)
        r = _pair_start(v + 1, row_vec, pwid, lanes)
        a0 = a1 = vsplat(src, init)
        for t in range(taps):
            c = vsplat(src, weights[t])
            p = s0 + 2 * q + offs[t]
            u = s0 + 2 * r + offs[t]
            a0 = vfma(c, veven(vload(src, p), vload(src, p + lanes)), a0)
            a1 = vfma(c, veven(vload(src, u), vload(src, u + lanes)), a1)
        vstore(dst, d0 + q, a0)
        vstore(dst, d0 + r, a1)
        v += 2
    if v < n_vec:
        q = _pair_start(v, row_vec, pwid, lanes)
        a0 = vsplat(src, init)
        for t in range(taps):
            p = s0 + 2 * q + offs[t]
            a0 = vfma(vsplat(src, weights[t]), veven(vload(src, p), vload(src, p + lanes)), a0)
        vstore(dst, d0 + q, a0)


@njit(**_JIT)
def _dot_pairs(acc, g, g0, src, s0, offs, n_vec, row_vec, pwid):
    """`_dot_plane` at stride (2, 2): acc[t] += g[g0 + q] * src[s0 + 2q + offs[t]]
    over the vectors `_corr_pairs` computes (the grid's other positions hold zeros)."""
    lanes = vlanes(src)
    taps = offs.shape[0]
    n_rows = n_vec // row_vec
    for t in range(taps):
        a = vzero(src)
        b = vzero(src)
        for row in range(n_rows):
            p = s0 + offs[t] + 2 * row * pwid
            q0 = g0 + row * pwid
            v = 0
            while v + 2 <= row_vec:         # two chains: an FMA's latency is 4 cycles
                q = v * lanes
                a = vfma(vload(g, q0 + q), veven(vload(src, p + 2 * q), vload(src, p + 2 * q + lanes)), a)
                b = vfma(vload(g, q0 + q + lanes),
                         veven(vload(src, p + 2 * q + 2 * lanes), vload(src, p + 2 * q + 3 * lanes)), b)
                v += 2
            if v < row_vec:
                q = v * lanes
                b = vfma(vload(g, q0 + q), veven(vload(src, p + 2 * q), vload(src, p + 2 * q + lanes)), b)
        vstore(acc[t], 0, vadd(vload(acc[t], 0), vadd(a, b)))
    total = vzero(src)
    for row in range(n_rows):
        for v in range(row_vec):
            total = vadd(total, vload(g, g0 + row * pwid + v * lanes))
    vstore(acc[taps], 0, vadd(vload(acc[taps], 0), total))


@njit(**_JIT)
def _corr_pairs_back(dst, d0, g, g0, weights, offs, n_pairs, accumulate, init):
    """The input gradient of `_corr_pairs`: dst[d0 + u] (+)= sum over taps with
    ``2q + offs[t] = u`` of weights[t] * g[g0 + q].  Even u take the taps at even
    offsets, odd u the others, both from ``g[g0 + u // 2 - offs[t] // 2]``; the two
    halves are interleaved on the store."""
    lanes = vlanes(g)
    taps = offs.shape[0]
    for m in range(n_pairs):
        q = m * lanes
        if accumulate:
            lo = vload(dst, d0 + 2 * q)
            hi = vload(dst, d0 + 2 * q + lanes)
            even = veven(lo, hi)
            odd = vodd(lo, hi)
        else:
            even = odd = vsplat(g, init)
        for t in range(taps):
            v = vload(g, g0 + q - offs[t] // 2)
            if offs[t] % 2 == 0:
                even = vfma(vsplat(g, weights[t]), v, even)
            else:
                odd = vfma(vsplat(g, weights[t]), v, odd)
        vstore(dst, d0 + 2 * q, vzip_lo(even, odd))
        vstore(dst, d0 + 2 * q + lanes, vzip_hi(even, odd))


@njit(**_JIT)
def _copy_row(dst, d0, src, s0, count):
    """dst[d0:d0 + count] = src[s0:s0 + count] in whole vectors and one masked tail."""
    lanes = vlanes(src)
    k = 0
    while k + lanes <= count:
        vstore(dst, d0 + k, vload(src, s0 + k))
        k += lanes
    if k < count:
        vstore_first(dst, d0 + k, vload_first(src, s0 + k, count - k), count - k)


@njit(**_JIT)
def _stack_in(buf, base, planes, stride, pwid, top, left):
    """Rows of ``planes`` (P, H, W; C-contiguous) into ``buf``: plane p's pixel (r, c)
    at ``base + p*stride + (r + top)*pwid + left + c``."""
    n_planes, height, width = planes.shape
    flat = planes.reshape(n_planes * height * width)
    for p in range(n_planes):
        for r in range(height):
            _copy_row(buf, base + p * stride + (r + top) * pwid + left, flat, (p * height + r) * width, width)


@njit(**_JIT)
def _stack_out(buf, base, planes, stride, pwid, top, left):
    """Inverse of `_stack_in`: ``planes`` (P, H, W; C-contiguous) from ``buf``."""
    n_planes, height, width = planes.shape
    flat = planes.reshape(n_planes * height * width)
    for p in range(n_planes):
        for r in range(height):
            _copy_row(flat, (p * height + r) * width, buf, base + p * stride + (r + top) * pwid + left, width)


@njit(**_JIT)
def _items(n_items, chunk, n_chunks):
    return n_items * chunk // n_chunks, n_items * (chunk + 1) // n_chunks


@njit(**_JIT)
def _pairs(sh, sw):
    """Stride (2, 2) runs on the flat grid: output q reads input 2q + offs[t]."""
    return sh == 2 and sw == 2


@njit(**_JIT)
def _load_planes(buf, planes, ph, pw, sh, sw, pwid, phase_size, in_stride):
    """Input planes (P, H, W) into the stack: strides 1 and (2, 2) with shared
    padding, else each plane's stride phases (`kernels.phases`) at ``p * in_stride``."""
    if (sh == 1 and sw == 1) or _pairs(sh, sw):
        _stack_in(buf, 0, planes, in_stride, pwid, ph, pw)
        return
    n_phases = sh * sw
    for p in range(planes.shape[0]):
        _fill_phases(buf[p * in_stride:p * in_stride + n_phases * phase_size], planes[p], ph, pw, sh, sw,
                     phase_size, pwid)


@njit(**_PJIT)
def depthwise_forward(x, w2, b, ph, pw, sh, sw, offs, pwid, phase_size, in_stride, out_stride, pair_vec,
                      row_vec, block, y, n_chunks):
    """y[n, c*m + k] = corr(x[n, c], w2[c*m + k]) + b[c*m + k] (``w2`` is (C_out, taps),
    ``offs`` the taps' offsets in a plane's stack entry)."""
    n, c_in = x.shape[:2]
    c_out = w2.shape[0]
    mult = c_out // c_in
    lanes = vlanes(x)
    n_vec = out_stride // lanes
    n_blocks = -(-c_in // block)
    for chunk in prange(n_chunks):
        xs = np.zeros(block * in_stride + 2 * out_stride + offs[-1] + 2 * lanes, dtype=x.dtype)
        acc = np.empty(block * mult * out_stride, dtype=x.dtype)
        first, last = _items(n_blocks * n, chunk, n_chunks)
        for item in range(first, last):
            blk = item // n
            img = item - blk * n
            c0 = blk * block
            c1 = min(c_in, c0 + block)
            _load_planes(xs, x[img, c0:c1], ph, pw, sh, sw, pwid, phase_size, in_stride)
            for p in range(c1 - c0):
                for k in range(mult):
                    o = (c0 + p) * mult + k
                    if _pairs(sh, sw):
                        _corr_pairs(acc, (p * mult + k) * out_stride, xs, p * in_stride, w2[o], offs, pair_vec,
                                    row_vec, pwid, b[o])
                    else:
                        _corr_plane(acc, (p * mult + k) * out_stride, xs, p * in_stride, w2[o], offs, n_vec,
                                    False, b[o])
            _stack_out(acc, 0, y[img, c0 * mult:c1 * mult], out_stride, pwid, 0, 0)


@njit(**_PJIT)
def depthwise_backward(gy, x, w2, bias, c_in, ph, pw, sh, sw, offs, phase_ptr, phase_taps, back_offs,
                       pwid, phase_size, in_stride, out_stride, pair_vec, row_vec, block, margin, need_grad_x,
                       need_grad_w, grad_x, gw_parts, gb_parts, n_chunks):
    """Gradients of `depthwise_forward`: ``grad_x`` (with ``need_grad_x``; plus
    ``bias[c]``, zero for a backward, the bias of a transposed convolution) and, with
    ``need_grad_w``, chunk t's weight and bias gradients added into ``gw_parts[t]``
    (C_out, taps) and ``gb_parts[t]``; without it ``x`` is not read.

    Input-gradient phase ``P`` (the whole stack entry at stride 1) gathers from the
    taps ``phase_taps[phase_ptr[P]:phase_ptr[P + 1]]`` at ``back_offs`` (``margin``
    minus their shifts on the output grid); a phase no tap reads gets the bias."""
    n = gy.shape[0]
    c_out, taps = w2.shape
    mult = c_out // c_in
    lanes = vlanes(gy)
    n_vec = out_stride // lanes
    n_phases = sh * sw
    unit = n_phases == 1
    phase_vec = -(-phase_size // lanes)
    n_blocks = -(-c_in // block)
    for chunk in prange(n_chunks):
        xs = np.zeros(block * in_stride + 2 * out_stride + offs[-1] + 2 * lanes, dtype=gy.dtype)
        gs = np.zeros(margin + block * mult * out_stride + phase_vec * lanes, dtype=gy.dtype)
        gx = np.empty(block * in_stride + lanes, dtype=gy.dtype)
        weights = np.empty(taps, dtype=gy.dtype)
        sums = np.zeros((block * mult, taps + 1, lanes), dtype=gy.dtype)
        first, last = _items(n_blocks * n, chunk, n_chunks)
        for item in range(first, last):
            blk = item // n
            img = item - blk * n
            c0 = blk * block
            c1 = min(c_in, c0 + block)
            planes = (c1 - c0) * mult
            _stack_in(gs, margin, gy[img, c0 * mult:c1 * mult], out_stride, pwid, 0, 0)
            if need_grad_w:
                _load_planes(xs, x[img, c0:c1], ph, pw, sh, sw, pwid, phase_size, in_stride)
                for o in range(planes):
                    if _pairs(sh, sw):
                        _dot_pairs(sums[o], gs, margin + o * out_stride, xs, (o // mult) * in_stride, offs,
                                   pair_vec, row_vec, pwid)
                    else:
                        _dot_plane(sums[o], gs, margin + o * out_stride, xs, (o // mult) * in_stride, offs, n_vec)
            if need_grad_x and _pairs(sh, sw):
                for p in range(c1 - c0):
                    for k in range(mult):
                        o = p * mult + k
                        _corr_pairs_back(gx, p * in_stride, gs, margin + o * out_stride, w2[c0 * mult + o], offs,
                                         in_stride // (2 * lanes), k > 0, bias[c0 + p])
                _stack_out(gx, 0, grad_x[img, c0:c1], in_stride, pwid, ph, pw)
            elif need_grad_x:
                for p in range(c1 - c0):
                    for phase in range(n_phases):
                        t0, t1 = phase_ptr[phase], phase_ptr[phase + 1]
                        for k in range(mult):
                            o = p * mult + k
                            for t in range(t0, t1):
                                weights[t - t0] = w2[c0 * mult + o, phase_taps[t]]
                            _corr_plane(gx, p * in_stride + phase * phase_size, gs, margin + o * out_stride,
                                        weights[:t1 - t0], back_offs[t0:t1], phase_vec, k > 0, bias[c0 + p])
                    if not unit:
                        _read_phases(gx[p * in_stride:p * in_stride + n_phases * phase_size],
                                     grad_x[img, c0 + p], ph, pw, sh, sw, phase_size, pwid, 0.0)
                if unit:
                    _stack_out(gx, 0, grad_x[img, c0:c1], in_stride, pwid, ph, pw)
            if need_grad_w and (item == last - 1 or (item + 1) // n != blk):   # block done
                for o in range(planes):
                    for t in range(taps):
                        gw_parts[chunk, c0 * mult + o, t] += vsum(vload(sums[o, t], 0))
                    gb_parts[chunk, c0 * mult + o] += vsum(vload(sums[o, taps], 0))
                sums[:] = 0
