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

Forward.  `_block` computes ``OUT_BLOCK`` output channels x ``VECTORS`` vectors of
positions, its accumulators in registers (`kernels/blocked_tiles.py` sizes it to the
target's registers; 8 x 3 with AVX-512): per (input channel, tap), 3 vector loads and
8 weight broadcasts feed 24 FMAs.  The weights are read in place through strides
(``w[o*so + s*ss + tmap[t]]``), so the same block also runs the input gradient.

Input gradient.  Padded input pixel ``r`` of phase ``P`` gets ``w[k, c, t] *
g[k, r - shift_t]`` from every tap ``t`` of that phase: a correlation of the output
gradient (on the output grid behind a zero margin, zero at the dropped positions)
with the taps of ``P`` at negative shifts.  Same block, per phase; the phases are
then read back into the input's planes.

Weight gradient.  ``gw[k, c, t] = sum_q g[k, q] * x[c, offs[t] + q]``: `_wblock`
holds ``WG_BLOCK`` x ``WG_BLOCK`` (output, input channel) accumulators over vectors of q, per tap, and
sums their lanes at the end of each chunk of q.

Channel counts that are not a multiple of the block repeat their last channel and
drop the copy.  Everything trusts its caller (`numba_backend.blocked`): arrays
C-contiguous, buffers sized with the slack the blocks read past a run's end.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends.numba_backend.kernels.phases import _fill_phases, _read_phases
from fastconv.backends.numba_backend.kernels.blocked_tiles import OUT_BLOCK, VECTORS, WG_BLOCK
from fastconv.backends.numba_backend.kernels.blocked_tiles import block as _block
from fastconv.backends.numba_backend.kernels.blocked_tiles import wblock as _wblock
from fastconv.backends.numba_backend.kernels.simd import vlanes

_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)

WG_CHUNK = 2048    # positions per `_wblock` call: its rows stay in L1


@njit(**_JIT)
def _pack(w, o0, n_out, so, ss, n_src, tmap, packed):
    """packed[(s*taps + t)*B + k] = w[o*so + s*ss + tmap[t]] for the B = OUT_BLOCK channels
    o = o0 + k (past ``n_out``: the last one again): the weights one `_block` reads,
    in the order it reads them (per item: 1/positions of its work)."""
    taps = tmap.shape[0]
    for k in range(OUT_BLOCK):
        row = min(o0 + k, n_out - 1) * so
        for s in range(n_src):
            for t in range(taps):
                packed[(s * taps + t) * OUT_BLOCK + k] = w[row + s * ss + tmap[t]]


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
    block of ``OUT_BLOCK`` output channels); ``offs`` / ``tmap``: each tap's offset in the phase
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
    block of ``OUT_BLOCK`` input channels of one convolution group).  Phase P's taps are
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


@njit(**_PJIT)
def blocked_weight_grad(gy, mask, use_mask, x, offs, sh, sw, ph, pw, phase_size, pwid, group, src_size,
                        gstride, gw_parts, gb_parts, groups, n_chunks):
    """Weight and bias gradients of `blocked_forward`, parallel over (group of images,
    block of ``WG_BLOCK`` output channels of one convolution group); chunk t adds into
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
