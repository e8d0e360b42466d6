"""Register-blocked direct convolution on explicit SIMD vectors (``kernels/simd.py``).

Layout.  A group of ``group`` images is copied, per channel, into the stride phases
of its zero-padded planes (`kernels/phases.py`): phase ``p`` of every image of the
group lies in one block of ``group * phase_size`` entries, images ``phase_size``
apart, rows ``pwid`` long.  Output ``(g, oh, ow)`` is flat position
``q = g*phase_size + oh*pwid + ow`` and its tap ``t`` reads ``offs[t] + q`` of each
channel (one phase, contiguous in q), so a whole group is one run of positions per
channel; the positions past ``out_w`` / ``out_h`` in it are computed and dropped.
With stride 1 neighbours share their padding (``pwid`` and ``phase_size`` from the
caller, `numba_backend.blocked._layout`): a row's right padding is the next row's
left padding, an image's bottom padding the next image's top padding.

Forward.  `_block` computes 8 output channels x 3 vectors of positions (24
accumulators in registers): per (input channel, tap), 3 vector loads and 8 weight
broadcasts feed 24 FMAs.  The weights are read in place through strides
(``w[o*so + s*ss + tmap[t]]``), so the same block also runs the input gradient.

Input gradient.  Padded input pixel ``r`` of phase ``P`` gets ``w[k, c, t] *
g[k, r - shift_t]`` from every tap ``t`` of that phase: a correlation of the output
gradient (on the output grid behind a zero margin, zero at the dropped positions)
with the taps of ``P`` at negative shifts.  Same block, per phase; the phases are
then read back into the input's planes.

Weight gradient.  ``gw[k, c, t] = sum_q g[k, q] * x[c, offs[t] + q]``: `_wblock`
holds 4 x 4 (output, input channel) accumulators over vectors of q, per tap, and
sums their lanes at the end of each chunk of q.

Channel counts that are not a multiple of the block repeat their last channel and
drop the copy.  Everything trusts its caller (`numba_backend.blocked`): arrays
C-contiguous, buffers sized with the slack the blocks read past a run's end.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends.numba_backend.kernels.phases import _fill_phases, _read_phases
from fastconv.backends.numba_backend.kernels.simd import vfma, vlanes, vload, vsplat, vstore, vsum, vzero

_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)

OUT_BLOCK = 8      # output channels per `_block`
VECTORS = 3        # vectors of positions per `_block`
WG_BLOCK = 4       # output and input channels per `_wblock`
WG_CHUNK = 2048    # positions per `_wblock` call: its rows stay in L1


@njit(**_JIT)
def _pack(w, o0, n_out, so, ss, n_src, tmap, packed):
    """packed[(s*taps + t)*8 + k] = w[o*so + s*ss + tmap[t]] for the 8 output channels
    o = o0 + k (past ``n_out``: the last one again): the weights one `_block` reads,
    in the order it reads them (per item: 1/positions of its work)."""
    taps = tmap.shape[0]
    for k in range(OUT_BLOCK):
        row = min(o0 + k, n_out - 1) * so
        for s in range(n_src):
            for t in range(taps):
                packed[(s * taps + t) * OUT_BLOCK + k] = w[row + s * ss + tmap[t]]


@njit(**_JIT)
def _block(src, cstride, n_src, offs, taps, t0, t1, packed, dst, d0, q0):
    """dst[k, d0 + v] = sum_{s < n_src, t0 <= t < t1} packed[(s*taps + t)*8 + k]
    * src[s*cstride + offs[t] + q0 + v] for k < 8 and the 3*lanes positions v."""
    lanes = vlanes(src)
    a00 = a01 = a02 = a10 = a11 = a12 = a20 = a21 = a22 = a30 = a31 = a32 = vzero(src)
    a40 = a41 = a42 = a50 = a51 = a52 = a60 = a61 = a62 = a70 = a71 = a72 = vzero(src)
    for s in range(n_src):
        base = s * cstride + q0
        for t in range(t0, t1):
            p = base + offs[t]
            x0 = vload(src, p)
            x1 = vload(src, p + lanes)
            x2 = vload(src, p + 2 * lanes)
            wt = (s * taps + t) * OUT_BLOCK
            c = vsplat(src, packed[wt])
            a00 = vfma(c, x0, a00)
            a01 = vfma(c, x1, a01)
            a02 = vfma(c, x2, a02)
            c = vsplat(src, packed[wt + 1])
            a10 = vfma(c, x0, a10)
            a11 = vfma(c, x1, a11)
            a12 = vfma(c, x2, a12)
            c = vsplat(src, packed[wt + 2])
            a20 = vfma(c, x0, a20)
            a21 = vfma(c, x1, a21)
            a22 = vfma(c, x2, a22)
            c = vsplat(src, packed[wt + 3])
            a30 = vfma(c, x0, a30)
            a31 = vfma(c, x1, a31)
            a32 = vfma(c, x2, a32)
            c = vsplat(src, packed[wt + 4])
            a40 = vfma(c, x0, a40)
            a41 = vfma(c, x1, a41)
            a42 = vfma(c, x2, a42)
            c = vsplat(src, packed[wt + 5])
            a50 = vfma(c, x0, a50)
            a51 = vfma(c, x1, a51)
            a52 = vfma(c, x2, a52)
            c = vsplat(src, packed[wt + 6])
            a60 = vfma(c, x0, a60)
            a61 = vfma(c, x1, a61)
            a62 = vfma(c, x2, a62)
            c = vsplat(src, packed[wt + 7])
            a70 = vfma(c, x0, a70)
            a71 = vfma(c, x1, a71)
            a72 = vfma(c, x2, a72)
    _store3(dst[0], d0, lanes, a00, a01, a02)
    _store3(dst[1], d0, lanes, a10, a11, a12)
    _store3(dst[2], d0, lanes, a20, a21, a22)
    _store3(dst[3], d0, lanes, a30, a31, a32)
    _store3(dst[4], d0, lanes, a40, a41, a42)
    _store3(dst[5], d0, lanes, a50, a51, a52)
    _store3(dst[6], d0, lanes, a60, a61, a62)
    _store3(dst[7], d0, lanes, a70, a71, a72)


@njit(**_JIT)
def _store3(row, start, lanes, v0, v1, v2):
    vstore(row, start, v0)
    vstore(row, start + lanes, v1)
    vstore(row, start + 2 * lanes, v2)


@njit(**_JIT)
def _fill_group(buf, x, img0, count, ph, pw, sh, sw, phase_size, pwid, cstride, block, tmp):
    """Images ``img0 .. img0+count-1`` of ``x`` into ``buf``'s phase layout (channel c
    at ``c*cstride``, phase p at ``+ p*block``, image g at ``+ g*phase_size``); the
    padding entries are never written (zero from the start)."""
    c_in = x.shape[1]
    one_phase = sh == 1 and sw == 1
    for g in range(count):
        for c in range(c_in):
            start = c * cstride + g * phase_size
            if one_phase:
                _fill_phases(buf[start:], x[img0 + g, c], ph, pw, 1, 1, phase_size, pwid)
                continue
            _fill_phases(tmp, x[img0 + g, c], ph, pw, sh, sw, phase_size, pwid)
            for p in range(sh * sw):
                d = buf[start + p * block:start + p * block + phase_size]
                s = tmp[p * phase_size:(p + 1) * phase_size]
                for k in range(phase_size):
                    d[k] = s[k]


@njit(**_PJIT)
def blocked_forward(x, w, b, offs, tmap, sh, sw, ph, pw, phase_size, pwid, group, src_size, relu, y,
                    groups, n_chunks):
    """y = conv(x, w) + b (then max(., 0) if relu), parallel over (group of images,
    block of 8 output channels); ``offs`` / ``tmap``: each tap's offset in the phase
    layout and index in a weight row; ``src_size``: one group's buffer with slack.
    With ``groups`` > 1 a block's channels lie in one convolution group and read that
    group's input channels only."""
    n, c_in = x.shape[0], x.shape[1]
    c_out, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    cg, og = c_in // groups, c_out // groups
    taps = offs.shape[0]
    wflat = w.ravel()
    block = group * phase_size
    cstride = sh * sw * block
    strip = VECTORS * vlanes(x)
    span = (out_h - 1) * pwid + out_w
    per_group = (og + OUT_BLOCK - 1) // OUT_BLOCK
    n_ob = groups * per_group
    items = ((n + group - 1) // group) * n_ob
    zero = y.dtype.type(0)
    for chunk in prange(n_chunks):
        src = np.zeros(src_size, dtype=x.dtype)
        tmp = np.zeros(sh * sw * phase_size, dtype=x.dtype)
        out = np.empty((OUT_BLOCK, block + strip), dtype=x.dtype)
        packed = np.empty(OUT_BLOCK * cg * taps, dtype=x.dtype)
        current = -1
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            grp = item // n_ob
            cgrp = (item - grp * n_ob) // per_group
            o0 = cgrp * og + (item - grp * n_ob - cgrp * per_group) * OUT_BLOCK
            img0 = grp * group
            count = min(group, n - img0)
            if grp != current:
                current = grp
                _fill_group(src, x, img0, count, ph, pw, sh, sw, phase_size, pwid, cstride, block,
                            tmp)
            _pack(wflat, o0, (cgrp + 1) * og, cg * taps, taps, cg, tmap, packed)
            length = (count - 1) * phase_size + span
            first = cgrp * cg * cstride                 # the group's first input channel
            for q0 in range(0, length, strip):
                _block(src, cstride, cg, offs, taps, 0, taps, packed, out, q0, first + q0)
            for k in range(min(OUT_BLOCK, (cgrp + 1) * og - o0)):
                co = o0 + k
                bias = b[co]
                for g in range(count):
                    for oh in range(out_h):
                        s = out[k, g * phase_size + oh * pwid:g * phase_size + oh * pwid + out_w]
                        d = y[img0 + g, co, oh]
                        for ow in range(out_w):
                            v = s[ow] + bias
                            if relu and v < zero:
                                v = zero
                            d[ow] = v


@njit(**_JIT)
def _fill_grad(buf, gy, mask, use_mask, img0, count, group, phase_size, pwid, margin, gstride):
    """Output gradient (times ``mask > 0`` with ``use_mask``) of images ``img0 ..``
    onto the output grid: channel k's image g at ``k*gstride + margin + g*phase_size``,
    rows ``pwid`` long; the entries past ``out_w`` / ``out_h`` stay zero, and so do
    the slots of images past ``count`` (a short last group)."""
    c_out, out_h, out_w = gy.shape[1], gy.shape[2], gy.shape[3]
    zero = gy.dtype.type(0)
    for k in range(c_out):
        if count < group:
            tail = buf[k * gstride + margin + count * phase_size:k * gstride + margin + group * phase_size]
            tail[:] = zero
        for g in range(count):
            for oh in range(out_h):
                start = k * gstride + margin + g * phase_size + oh * pwid
                d = buf[start:start + out_w]
                s = gy[img0 + g, k, oh]
                if use_mask:
                    m = mask[img0 + g, k, oh]
                    for ow in range(out_w):
                        d[ow] = s[ow] if m[ow] > zero else zero
                else:
                    for ow in range(out_w):
                        d[ow] = s[ow]


@njit(**_PJIT)
def blocked_input_grad(gy, mask, use_mask, w, offs, tmap, tap_start, sh, sw, ph, pw, phase_size, pwid,
                       group, margin, gstride, bias, grad_x, groups, n_chunks):
    """grad_x of `blocked_forward` (plus ``bias[c]``), parallel over (group of images,
    block of 8 input channels of one convolution group).  Phase P's taps are
    ``tap_start[P] .. tap_start[P+1]`` of ``offs`` (``margin - shift``) and ``tmap``
    (their index in a weight row)."""
    n, c_in = grad_x.shape[0], grad_x.shape[1]
    c_out = gy.shape[1]
    cg, og = c_in // groups, c_out // groups
    taps = w.shape[2] * w.shape[3]
    wflat = w.ravel()
    phases = sh * sw
    block = group * phase_size
    strip = VECTORS * vlanes(gy)
    per_group = (cg + OUT_BLOCK - 1) // OUT_BLOCK
    n_ob = groups * per_group
    items = ((n + group - 1) // group) * n_ob
    for chunk in prange(n_chunks):
        gbuf = np.zeros(c_out * gstride, dtype=gy.dtype)
        out = np.empty((OUT_BLOCK, phases * block + strip), dtype=gy.dtype)
        tmp = np.empty(phases * phase_size, dtype=gy.dtype)
        packed = np.empty(OUT_BLOCK * og * taps, dtype=gy.dtype)
        current = -1
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            grp = item // n_ob
            cgrp = (item - grp * n_ob) // per_group
            local = (item - grp * n_ob - cgrp * per_group) * OUT_BLOCK    # first channel in the group
            o0 = cgrp * cg + local
            img0 = grp * group
            count = min(group, n - img0)
            if grp != current:
                current = grp
                _fill_grad(gbuf, gy, mask, use_mask, img0, count, group, phase_size, pwid, margin,
                           gstride)
            _pack(wflat[cgrp * og * cg * taps:], local, cg, taps, cg * taps, og, tmap, packed)
            group_grad = gbuf[cgrp * og * gstride:]
            for p in range(phases):
                if tap_start[p] == tap_start[p + 1]:      # no tap lands here: a zero phase
                    out[:, p * block:p * block + count * phase_size] = 0
                    continue
                for q0 in range(0, count * phase_size, strip):
                    _block(group_grad, gstride, og, offs, taps, tap_start[p], tap_start[p + 1], packed,
                           out, p * block + q0, q0)
            for k in range(min(OUT_BLOCK, cg - local)):
                for g in range(count):
                    if phases == 1:
                        _read_phases(out[k, g * phase_size:], grad_x[img0 + g, o0 + k], ph, pw, 1, 1,
                                     phase_size, pwid, bias[o0 + k])
                        continue
                    for p in range(phases):
                        s = out[k, p * block + g * phase_size:p * block + (g + 1) * phase_size]
                        tmp[p * phase_size:(p + 1) * phase_size] = s
                    _read_phases(tmp, grad_x[img0 + g, o0 + k], ph, pw, sh, sw, phase_size, pwid,
                                 bias[o0 + k])


@njit(**_JIT)
def _wblock(g, g0, gs, n_g, xs, x0, xstride, n_x, length, sums):
    """sums[a, b] += sum_{q < length} g[g0 + a'*gs + q] * xs[x0 + b'*xstride + q] for
    a < 4, b < 4 (a' = min(a, n_g - 1), b' = min(b, n_x - 1)); ``length`` a multiple
    of the lanes, the entries read past a run's end zero in ``g``."""
    lanes = vlanes(g)
    ga = g0
    gb = g0 + min(1, n_g - 1) * gs
    gc = g0 + min(2, n_g - 1) * gs
    gd = g0 + min(3, n_g - 1) * gs
    xa = x0
    xb = x0 + min(1, n_x - 1) * xstride
    xc = x0 + min(2, n_x - 1) * xstride
    xd = x0 + min(3, n_x - 1) * xstride
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = vzero(g)
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = vzero(g)
    for q in range(0, length, lanes):
        v0 = vload(g, ga + q)
        v1 = vload(g, gb + q)
        v2 = vload(g, gc + q)
        v3 = vload(g, gd + q)
        u = vload(xs, xa + q)
        s00 = vfma(v0, u, s00)
        s10 = vfma(v1, u, s10)
        s20 = vfma(v2, u, s20)
        s30 = vfma(v3, u, s30)
        u = vload(xs, xb + q)
        s01 = vfma(v0, u, s01)
        s11 = vfma(v1, u, s11)
        s21 = vfma(v2, u, s21)
        s31 = vfma(v3, u, s31)
        u = vload(xs, xc + q)
        s02 = vfma(v0, u, s02)
        s12 = vfma(v1, u, s12)
        s22 = vfma(v2, u, s22)
        s32 = vfma(v3, u, s32)
        u = vload(xs, xd + q)
        s03 = vfma(v0, u, s03)
        s13 = vfma(v1, u, s13)
        s23 = vfma(v2, u, s23)
        s33 = vfma(v3, u, s33)
    sums[0, 0] += vsum(s00)
    sums[0, 1] += vsum(s01)
    sums[0, 2] += vsum(s02)
    sums[0, 3] += vsum(s03)
    sums[1, 0] += vsum(s10)
    sums[1, 1] += vsum(s11)
    sums[1, 2] += vsum(s12)
    sums[1, 3] += vsum(s13)
    sums[2, 0] += vsum(s20)
    sums[2, 1] += vsum(s21)
    sums[2, 2] += vsum(s22)
    sums[2, 3] += vsum(s23)
    sums[3, 0] += vsum(s30)
    sums[3, 1] += vsum(s31)
    sums[3, 2] += vsum(s32)
    sums[3, 3] += vsum(s33)


@njit(**_PJIT)
def blocked_weight_grad(gy, mask, use_mask, x, offs, sh, sw, ph, pw, phase_size, pwid, group, src_size,
                        gstride, gw_parts, gb_parts, groups, n_chunks):
    """Weight and bias gradients of `blocked_forward`, parallel over (group of images,
    block of 4 output channels of one convolution group); chunk t adds into
    ``gw_parts[t]`` (C_out, C_in/groups, taps) and ``gb_parts[t]``, the caller sums
    the parts."""
    n, c_in = x.shape[0], x.shape[1]
    c_out, out_h, out_w = gy.shape[1], gy.shape[2], gy.shape[3]
    cg, og = c_in // groups, c_out // groups
    taps = offs.shape[0]
    block = group * phase_size
    cstride = sh * sw * block
    lanes = vlanes(x)
    span = (out_h - 1) * pwid + out_w
    per_group = (og + WG_BLOCK - 1) // WG_BLOCK
    n_kb = groups * per_group
    items = ((n + group - 1) // group) * n_kb
    for chunk in prange(n_chunks):
        src = np.zeros(src_size, dtype=x.dtype)
        gbuf = np.zeros(c_out * gstride, dtype=x.dtype)
        tmp = np.zeros(sh * sw * phase_size, dtype=x.dtype)
        sums = np.zeros((WG_BLOCK, WG_BLOCK), dtype=x.dtype)
        current = -1
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            grp = item // n_kb
            cgrp = (item - grp * n_kb) // per_group
            k0 = cgrp * og + (item - grp * n_kb - cgrp * per_group) * WG_BLOCK
            n_k = min(WG_BLOCK, (cgrp + 1) * og - k0)
            img0 = grp * group
            count = min(group, n - img0)
            if grp != current:
                current = grp
                _fill_group(src, x, img0, count, ph, pw, sh, sw, phase_size, pwid, cstride, block,
                            tmp)
                _fill_grad(gbuf, gy, mask, use_mask, img0, count, group, phase_size, pwid, 0, gstride)
            length = (count - 1) * phase_size + span
            for k in range(n_k):
                row = gbuf[(k0 + k) * gstride:(k0 + k) * gstride + length]
                gb_parts[chunk, k0 + k] += row.sum()
            for qa in range(0, length, WG_CHUNK):
                run = min(WG_CHUNK, length - qa)
                run = (run + lanes - 1) // lanes * lanes
                for c0 in range(0, cg, WG_BLOCK):
                    n_c = min(WG_BLOCK, cg - c0)
                    for t in range(taps):
                        sums[:] = 0
                        _wblock(gbuf, k0 * gstride + qa, gstride, n_k, src,
                                (cgrp * cg + c0) * cstride + offs[t] + qa, cstride, n_c, run, sums)
                        for a in range(n_k):
                            for bb in range(n_c):
                                gw_parts[chunk, k0 + a, c0 + bb, t] += sums[a, bb]
