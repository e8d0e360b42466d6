"""A convolution's GEMM on weights packed once into panels of output channels.

For weights that do not change (`numba_backend.frozen_weights`), the ``(C_out,
depth)`` matrix is stored once as panels of ``lanes`` output channels, depth-major
(`pack_panels`): panel ``pn`` holds ``w[pn*lanes + l, k]`` at ``(pn*depth + k)*lanes +
l``.  `packed_forward` then computes ``lanes`` output channels x 8 columns per register
block -- a vector of weights from the panel, each column's input value broadcast, 8
FMAs -- so the weights stream from memory once per call, in the order they are read,
with nothing packed again.  The input is read in place from its zero-padded copy
through two offset tables (an implicit GEMM): unfolding it cost as much as a third
of the GEMM at these sizes.  A BLAS packs them on every call (a
read and a write of 9 MB for a 512 -> 512 3x3 layer) for a few columns of work.

8 accumulators, a weight vector and a broadcast fit the 16 registers of AVX2 as well
as the 32 of AVX-512.  The depth runs in tiles of `DEPTH_TILE` so that a panel's tile
and the columns' tile stay in L1/L2 across the column blocks; partial sums wait in a
per-thread buffer.  Everything trusts its caller: ``offs`` has a multiple of
`BLOCK_COLUMNS` entries (the ones past the positions are never written out), every
offset plus every tap inside ``src``, the panels cover ``y``'s channels.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends.numba_backend.kernels.simd import vfma, vlanes, vload, vsplat_at, vstore

_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)

BLOCK_COLUMNS = 8
DEPTH_TILE = 256


@njit(**_JIT)
def pack_panels(w2, packed):
    """packed[(pn*depth + k)*lanes + l] = w2[pn*lanes + l, k], zero past the last channel."""
    lanes = vlanes(packed)
    c_out, depth = w2.shape
    panels = packed.shape[0] // (depth * lanes)
    zero = packed.dtype.type(0)
    for pn in range(panels):
        for l in range(lanes):
            o = pn * lanes + l
            for k in range(depth):
                packed[(pn * depth + k) * lanes + l] = w2[o, k] if o < c_out else zero


@njit(**_JIT)
def _block(packed, wbase, src, taps, k0, k1, offs, c0, acc, abase):
    """acc[abase + i*lanes + l] += sum_{k0 <= k < k1} packed[wbase + k*lanes + l] *
    src[taps[k] + offs[c0 + i]] for i < 8: the weights of a panel against 8 columns
    read in place from the padded input (no unfolded copy)."""
    lanes = vlanes(packed)
    o0, o1, o2, o3 = offs[c0], offs[c0 + 1], offs[c0 + 2], offs[c0 + 3]
    o4, o5, o6, o7 = offs[c0 + 4], offs[c0 + 5], offs[c0 + 6], offs[c0 + 7]
    a0 = vload(acc, abase)
    a1 = vload(acc, abase + lanes)
    a2 = vload(acc, abase + 2 * lanes)
    a3 = vload(acc, abase + 3 * lanes)
    a4 = vload(acc, abase + 4 * lanes)
    a5 = vload(acc, abase + 5 * lanes)
    a6 = vload(acc, abase + 6 * lanes)
    a7 = vload(acc, abase + 7 * lanes)
    for k in range(k0, k1):
        wv = vload(packed, wbase + k * lanes)
        t = taps[k]
        a0 = vfma(wv, vsplat_at(src, t + o0), a0)
        a1 = vfma(wv, vsplat_at(src, t + o1), a1)
        a2 = vfma(wv, vsplat_at(src, t + o2), a2)
        a3 = vfma(wv, vsplat_at(src, t + o3), a3)
        a4 = vfma(wv, vsplat_at(src, t + o4), a4)
        a5 = vfma(wv, vsplat_at(src, t + o5), a5)
        a6 = vfma(wv, vsplat_at(src, t + o6), a6)
        a7 = vfma(wv, vsplat_at(src, t + o7), a7)
    vstore(acc, abase, a0)
    vstore(acc, abase + lanes, a1)
    vstore(acc, abase + 2 * lanes, a2)
    vstore(acc, abase + 3 * lanes, a3)
    vstore(acc, abase + 4 * lanes, a4)
    vstore(acc, abase + 5 * lanes, a5)
    vstore(acc, abase + 6 * lanes, a6)
    vstore(acc, abase + 7 * lanes, a7)


@njit(**_PJIT)
def packed_forward(packed, src, taps, offs, b, relu, y, n_chunks):
    """y[img, o, q] = sum_k w[o, k] * src[taps[k] + offs[img*windows + q]] + b[o] (then
    max(., 0) if relu), ``windows = y.shape[2]``: ``src`` the flat zero-padded input,
    ``taps[k]`` where weight column k's input sits relative to an output's window,
    ``offs`` where each output's window starts (padded to whole blocks of columns
    with a valid offset); parallel over panels."""
    lanes = vlanes(packed)
    n, c_out, windows = y.shape
    depth = taps.shape[0]
    width = offs.shape[0]
    panels = packed.shape[0] // (depth * lanes)
    zero = y.dtype.type(0)
    for chunk in prange(n_chunks):
        acc = np.empty(width * lanes, dtype=y.dtype)
        for pn in range(panels * chunk // n_chunks, panels * (chunk + 1) // n_chunks):
            acc[:] = 0
            wbase = pn * depth * lanes
            for k0 in range(0, depth, DEPTH_TILE):
                k1 = min(depth, k0 + DEPTH_TILE)
                for c0 in range(0, width, BLOCK_COLUMNS):
                    _block(packed, wbase, src, taps, k0, k1, offs, c0, acc, c0 * lanes)
            for l in range(min(lanes, c_out - pn * lanes)):
                o = pn * lanes + l
                bias = b[o]
                for img in range(n):
                    row = y[img, o]
                    first = img * windows * lanes + l
                    for q in range(windows):
                        v = acc[first + q * lanes] + bias
                        if relu and v < zero:
                            v = zero
                        row[q] = v
