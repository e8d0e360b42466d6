"""Stride-1 depthwise convolution on stacks of planes, in explicit SIMD vectors.

Why: the per-plane kernels of ``kernels/depthwise.py`` run one flat loop per plane.
On the small planes of a MobileNet's later layers (7x7, 14x14) those loops are
shorter than LLVM's vector loop (16 lanes x 4), so they ran scalar: ~270 ns for a
7x7 plane, 10x PyTorch.

Layout.  ``block`` consecutive input planes of one image are copied into one zero
buffer, plane ``p`` at ``p * stride``, with shared padding (`numba_backend.depthwise.
_stack_layout`): rows ``pwid`` long, a row's right padding the next row's left one,
and each plane's ``rows * pwid`` positions rounded up to whole vectors
(``stride``).  Output ``(oh, ow)`` of plane ``p`` is position ``p*stride + oh*pwid
+ ow`` and tap ``t`` reads ``offs[t]`` past it, so a plane is ``stride / lanes``
vectors, each ``taps`` broadcast weights x loads (`_corr_plane`); the positions past
``out_w`` / ``out_h`` are computed and dropped.  The copies in and out are one
contiguous row at a time.

Backward.  The output gradient goes on the same grid (zero elsewhere) behind a zero
``margin``.  The weight gradient of tap ``t`` is the dot product of a plane's
gradient with its input ``offs[t]`` further on, kept as a vector per (plane, tap)
over the chunk's images and summed once (`_dot_plane`); the input gradient is the
correlation of the gradient with the taps at negative offsets ``margin - offs[t]``
(`_corr_plane` again).

A channel multiplier ``m``: input plane ``p`` feeds output planes ``p*m .. p*m + m-1``
(the same stacking, ``m`` planes per input plane).  Work items are (channel block,
image), block-major, one contiguous range per thread.  Everything trusts its caller:
arrays C-contiguous, buffers as `_stack_layout` sizes them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends.numba_backend.kernels.simd import (
    vadd, vfma, vlanes, vload, vload_first, vsplat, vstore, vstore_first, vsum, vzero)

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


@njit(**_PJIT)
def stacked_forward(x, w2, b, ph, pw, offs, pwid, stride, block, buf_len, y, n_chunks):
    """y[n, c*m + k] = corr(x[n, c], w2[c*m + k]) + b[c*m + k] (``w2`` is (C_out, taps),
    ``offs`` the taps' offsets on the stacked grid)."""
    n, c_in = x.shape[:2]
    c_out = w2.shape[0]
    mult = c_out // c_in
    lanes = vlanes(x)
    n_vec = stride // lanes
    n_blocks = -(-c_in // block)
    for chunk in prange(n_chunks):
        xs = np.zeros(buf_len, dtype=x.dtype)
        acc = np.empty(block * mult * stride, dtype=x.dtype)
        first, last = _items(n_blocks * n, chunk, n_chunks)
        for item in range(first, last):
            blk = item // n
            img = item - blk * n
            c0 = blk * block
            c1 = min(c_in, c0 + block)
            _stack_in(xs, 0, x[img, c0:c1], stride, pwid, ph, pw)
            for p in range(c1 - c0):
                for k in range(mult):
                    o = (c0 + p) * mult + k
                    _corr_plane(acc, (p * mult + k) * stride, xs, p * stride, w2[o], offs, n_vec,
                                False, b[o])
            _stack_out(acc, 0, y[img, c0 * mult:c1 * mult], stride, pwid, 0, 0)


@njit(**_PJIT)
def stacked_backward(gy, x, w2, bias, c_in, ph, pw, offs, pwid, stride, block,
                     margin, buf_len, need_grad_x, need_grad_w, grad_x, gw_parts, gb_parts, n_chunks):
    """Gradients of `stacked_forward`: ``grad_x`` (with ``need_grad_x``; plus
    ``bias[c]``, zero for a backward, the bias of a transposed convolution) and, with
    ``need_grad_w``, chunk t's weight and bias gradients added into ``gw_parts[t]``
    (C_out, taps) and ``gb_parts[t]``; without it ``x`` is not read."""
    n = gy.shape[0]
    c_out, taps = w2.shape
    mult = c_out // c_in
    lanes = vlanes(gy)
    n_vec = stride // lanes
    n_blocks = -(-c_in // block)
    back = margin - offs                     # the input gradient's taps: negative offsets
    for chunk in prange(n_chunks):
        xs = np.zeros(buf_len, dtype=gy.dtype)
        gs = np.zeros(margin + block * mult * stride + lanes, dtype=gy.dtype)
        gx = np.empty(block * stride, dtype=gy.dtype)
        sums = np.zeros((block * mult, taps + 1, lanes), dtype=gy.dtype)
        first, last = _items(n_blocks * n, chunk, n_chunks)
        for item in range(first, last):
            blk = item // n
            img = item - blk * n
            c0 = blk * block
            c1 = min(c_in, c0 + block)
            planes = (c1 - c0) * mult
            _stack_in(gs, margin, gy[img, c0 * mult:c1 * mult], stride, pwid, 0, 0)
            if need_grad_w:
                _stack_in(xs, 0, x[img, c0:c1], stride, pwid, ph, pw)
                for o in range(planes):
                    _dot_plane(sums[o], gs, margin + o * stride, xs, (o // mult) * stride, offs, n_vec)
            if need_grad_x:
                for p in range(c1 - c0):
                    for k in range(mult):
                        o = p * mult + k
                        _corr_plane(gx, p * stride, gs, o * stride, w2[c0 * mult + o], back, n_vec,
                                    k > 0, bias[c0 + p])
                _stack_out(gx, 0, grad_x[img, c0:c1], stride, pwid, ph, pw)
            if need_grad_w and (item == last - 1 or (item + 1) // n != blk):   # block done
                for o in range(planes):
                    for t in range(taps):
                        gw_parts[chunk, c0 * mult + o, t] += vsum(vload(sums[o, t], 0))
                    gb_parts[chunk, c0 * mult + o] += vsum(vload(sums[o, taps], 0))
                sums[:] = 0
