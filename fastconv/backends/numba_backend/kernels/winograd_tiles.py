"""The transforms of Winograd F(4x4, 3x3) (used by ``kernels/winograd.py``).

The 1-D transforms ``B^T``, ``A^T``, ``A``, ``G`` and ``G^T`` (matrices in
``kernels/winograd.py``), and the tile-row transforms that move one channel's tiles
between an NCHW plane and the points' matrices of a workspace: input patches to V
(`_input_rows`), M to output rows with bias and ReLU (`_output_rows`), output-gradient
tiles to Z (`_gradient_rows`).  Each runs across all the tiles of a group of tile
rows at once, so its loops are vectors of 14-256 tiles rather than one tile row's 2-8.

Float32 hot loops use constants of the array's type (a Python float literal would
promote the arithmetic to float64).  Everything here trusts its caller: arrays
C-contiguous, sizes consistent.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True, fastmath={"contract"})

TILE = 4          # outputs per tile side
PATCH = 6         # input patch side = TILE + 3 - 1
POINTS = 36       # PATCH * PATCH transform-domain positions


# --------------------------------------------------------------------------- 1-D transforms
@njit(**_JIT)
def _bt(d0, d1, d2, d3, d4, d5, two, four, five):
    """B^T d for a 6-vector."""
    return (four * d0 - five * d2 + d4,
            d3 + d4 - four * (d1 + d2),
            four * (d1 - d2) - d3 + d4,
            two * (d3 - d1) - d2 + d4,
            two * (d1 - d3) - d2 + d4,
            four * d1 - five * d3 + d5)


@njit(**_JIT)
def _at(m0, m1, m2, m3, m4, m5, two, four, eight):
    """A^T m for a 6-vector (4 outputs)."""
    a = m1 + m2
    b = m1 - m2
    c = m3 + m4
    e = m3 - m4
    return m0 + a + c, b + two * e, a + four * c, b + eight * e + m5


@njit(**_JIT)
def _a(g0, g1, g2, g3, two, four, eight):
    """A g for a 4-vector (6 outputs): the transpose of `_at`."""
    s = g0 + g2
    t = g1 + g3
    u = g0 + four * g2
    v = two * g1 + eight * g3
    return g0, s + t, s - t, u + v, u - v, g3


# Multiplying by the reciprocals rather than dividing: the filter kernels are
# division-bound otherwise (4x slower); the results differ by at most an ulp of float64.
_SIXTH = 1.0 / 6.0
_TWELFTH = 1.0 / 12.0
_TWENTYFOURTH = 1.0 / 24.0


@njit(**_JIT)
def _g(g0, g1, g2):
    """G g for a 3-vector (6 outputs), in float64."""
    s = g0 * _TWENTYFOURTH + g2 * _SIXTH
    return (g0 * 0.25, -(g0 + g1 + g2) * _SIXTH, -(g0 - g1 + g2) * _SIXTH,
            s + g1 * _TWELFTH, s - g1 * _TWELFTH, g2)


@njit(**_JIT)
def _gt(u0, u1, u2, u3, u4, u5):
    """G^T u for a 6-vector (3 outputs): the transpose of `_g`."""
    return (u0 * 0.25 - (u1 + u2) * _SIXTH + (u3 + u4) * _TWENTYFOURTH,
            (u2 - u1) * _SIXTH + (u3 - u4) * _TWELFTH,
            (u3 + u4 - u1 - u2) * _SIXTH + u5)


# --------------------------------------------------------------------------- tiles
# Output and gradient tiles are handled in "phase" layout: ``band[r, ph, j]`` holds
# column ``4*j + ph`` of row r, so each pass is a contiguous loop over j that LLVM
# can vectorise (the output transform measured 1.1-1.6x faster than tile by tile).
@njit(**_JIT)
def _fill_phases(plane, row0, col0, band):
    """band[r, ph, j] = plane[row0 + r, 4j + ph + col0], zero outside the plane.
    Plain index loops: slicing each (row, phase) pair cost more than the copy."""
    height, width = plane.shape
    span = band.shape[2]
    zero = band.dtype.type(0)
    for r in range(band.shape[0]):
        src_row = row0 + r
        if src_row < 0 or src_row >= height:
            band[r] = zero
            continue
        src = plane[src_row]
        for ph in range(TILE):
            dst = band[r, ph]
            for j in range(span):
                col = TILE * j + ph + col0
                dst[j] = src[col] if 0 <= col < width else zero


@njit(**_JIT)
def _fill_band(plane, row0, col0, band):
    """band[r, q] = plane[row0 + r, col0 + q], zero outside the plane.  Copies run on
    slices with zero-based indices: an index LLVM cannot prove non-negative carries
    numba's negative-index wraparound, which kept this loop scalar (3.6x slower)."""
    height, width = plane.shape
    band_w = band.shape[1]
    first = min(max(-col0, 0), band_w)                 # first band column inside the plane
    last = max(min(width - col0, band_w), first)       # one past the last
    zero = band.dtype.type(0)
    for r in range(band.shape[0]):
        dst = band[r]
        src_row = row0 + r
        if src_row < 0 or src_row >= height:
            dst[:] = zero
            continue
        dst[:first] = zero
        inside = dst[first:last]
        src = plane[src_row, first + col0:last + col0]
        for q in range(inside.size):
            inside[q] = src[q]
        dst[last:] = zero


@njit(**_JIT)
def _input_rows(x, c, g0, g1, tile_h, tiles, ph, pw, band, hb, v, stride, base):
    """v[t * stride + base + q] = (B^T d_q B)[t] for the input patches d_q of channel c
    in tile rows [g0, g1); ``band`` (6, 4 * tiles + 2) and ``hb`` (36, >= q) scratch.
    B across each patch row tile by tile (the tiles' columns overlap, stride 4, which
    defeats vectorising; plain indexed stores: slicing per row cost 10-25 %), then B^T
    down the columns across all the rows' tiles at once."""
    two = band.dtype.type(2)
    four = band.dtype.type(4)
    five = band.dtype.type(5)
    pb = (g1 - g0) * tiles
    for g in range(g0, g1):
        img = g // tile_h
        _fill_band(x[img, c], TILE * (g - img * tile_h) - ph, -pw, band)
        q0 = (g - g0) * tiles
        for r in range(PATCH):
            for j in range(tiles):
                o = TILE * j
                row = _bt(band[r, o], band[r, o + 1], band[r, o + 2], band[r, o + 3], band[r, o + 4],
                          band[r, o + 5], two, four, five)
                for nu in range(PATCH):
                    hb[r * PATCH + nu, q0 + j] = row[nu]
    step = PATCH * stride
    # The six point slices are written out here and in the two transforms below: a
    # helper returning them as a tuple measured 1.5x slower for all three.
    for nu in range(PATCH):
        a0, a1, a2 = hb[nu, :pb], hb[PATCH + nu, :pb], hb[2 * PATCH + nu, :pb]
        a3, a4, a5 = hb[3 * PATCH + nu, :pb], hb[4 * PATCH + nu, :pb], hb[5 * PATCH + nu, :pb]
        at = nu * stride + base
        d0 = v[at:at + pb]
        d1 = v[at + step:at + step + pb]
        d2 = v[at + 2 * step:at + 2 * step + pb]
        d3 = v[at + 3 * step:at + 3 * step + pb]
        d4 = v[at + 4 * step:at + 4 * step + pb]
        d5 = v[at + 5 * step:at + 5 * step + pb]
        for q in range(pb):
            d0[q], d1[q], d2[q], d3[q], d4[q], d5[q] = _bt(a0[q], a1[q], a2[q], a3[q], a4[q], a5[q],
                                                           two, four, five)


@njit(**_JIT)
def _output_rows(m, stride, base, g0, g1, tile_h, tiles, hs, ob, bias, relu, y, k):
    """y[:, k] tile rows [g0, g1) = A^T M_q A + bias (ReLU'd), clipped to the plane, for
    the rows' tiles q at ``m[t * stride + base + q]``; ``hs`` (6, 4, >= q) and ``ob``
    (4, 4, >= q) are scratch.  The transforms run across all the rows' tiles at once
    (one tile row's 2-8 tiles were too short a vector: 1.5-2x slower)."""
    out_h, out_w = y.shape[2], y.shape[3]
    two = y.dtype.type(2)
    four = y.dtype.type(4)
    eight = y.dtype.type(8)
    zero = y.dtype.type(0)
    pb = (g1 - g0) * tiles
    for xi in range(PATCH):                       # A across each row of M_q
        at = xi * PATCH * stride + base
        m0 = m[at:at + pb]
        m1 = m[at + stride:at + stride + pb]
        m2 = m[at + 2 * stride:at + 2 * stride + pb]
        m3 = m[at + 3 * stride:at + 3 * stride + pb]
        m4 = m[at + 4 * stride:at + 4 * stride + pb]
        m5 = m[at + 5 * stride:at + 5 * stride + pb]
        h0, h1, h2, h3 = hs[xi, 0, :pb], hs[xi, 1, :pb], hs[xi, 2, :pb], hs[xi, 3, :pb]
        for q in range(pb):
            h0[q], h1[q], h2[q], h3[q] = _at(m0[q], m1[q], m2[q], m3[q], m4[q], m5[q],
                                             two, four, eight)
    for s in range(TILE):                         # A^T down the columns
        c0, c1, c2 = hs[0, s, :pb], hs[1, s, :pb], hs[2, s, :pb]
        c3, c4, c5 = hs[3, s, :pb], hs[4, s, :pb], hs[5, s, :pb]
        o0, o1, o2, o3 = ob[0, s, :pb], ob[1, s, :pb], ob[2, s, :pb], ob[3, s, :pb]
        for q in range(pb):
            o0[q], o1[q], o2[q], o3[q] = _at(c0[q], c1[q], c2[q], c3[q], c4[q], c5[q],
                                             two, four, eight)
    for g in range(g0, g1):
        img = g // tile_h
        row0 = TILE * (g - img * tile_h)
        q0 = (g - g0) * tiles
        plane = y[img, k]
        for r in range(min(TILE, out_h - row0)):
            dst = plane[row0 + r]
            for s in range(TILE):
                src = ob[r, s, q0:q0 + tiles]
                for j in range(min(tiles, (out_w - 1 - s) // TILE + 1)):
                    value = src[j] + bias
                    dst[TILE * j + s] = value if (value > zero or not relu) else zero


@njit(**_JIT)
def _gradient_rows(gy, k, g0, g1, tile_h, tiles, gband, vt, z, stride, base, bias_sums):
    """z[t * stride + base + q] = (A G_q A^T)[t] for the output-gradient tiles G_q of
    channel k in tile rows [g0, g1) (zero beyond the plane), transformed across all the
    rows' tiles at once; ``gband`` (4, 4, >= q) and ``vt`` (6, 4, >= q) are scratch.
    Adds each tile row's columns to ``bias_sums`` (float64, 4 * tiles: element-wise,
    so the loop vectorises; one running sum would be a serial dependency chain)."""
    two = gy.dtype.type(2)
    four = gy.dtype.type(4)
    eight = gy.dtype.type(8)
    pb = (g1 - g0) * tiles
    for g in range(g0, g1):
        img = g // tile_h
        q0 = (g - g0) * tiles
        _fill_phases(gy[img, k], TILE * (g - img * tile_h), 0, gband[:, :, q0:q0 + tiles])
        for ph in range(TILE):
            sums = bias_sums[ph * tiles:(ph + 1) * tiles]
            a0, a1 = gband[0, ph, q0:q0 + tiles], gband[1, ph, q0:q0 + tiles]
            a2, a3 = gband[2, ph, q0:q0 + tiles], gband[3, ph, q0:q0 + tiles]
            for j in range(tiles):
                sums[j] += ((np.float64(a0[j]) + np.float64(a1[j]))
                            + (np.float64(a2[j]) + np.float64(a3[j])))
    for ph in range(TILE):                        # A down the tile rows
        b0, b1, b2, b3 = gband[0, ph, :pb], gband[1, ph, :pb], gband[2, ph, :pb], gband[3, ph, :pb]
        t0, t1, t2 = vt[0, ph, :pb], vt[1, ph, :pb], vt[2, ph, :pb]
        t3, t4, t5 = vt[3, ph, :pb], vt[4, ph, :pb], vt[5, ph, :pb]
        for q in range(pb):
            t0[q], t1[q], t2[q], t3[q], t4[q], t5[q] = _a(b0[q], b1[q], b2[q], b3[q], two, four, eight)
    for xi in range(PATCH):                       # A^T across each row
        p0, p1, p2, p3 = vt[xi, 0, :pb], vt[xi, 1, :pb], vt[xi, 2, :pb], vt[xi, 3, :pb]
        at = xi * PATCH * stride + base
        d0 = z[at:at + pb]
        d1 = z[at + stride:at + stride + pb]
        d2 = z[at + 2 * stride:at + 2 * stride + pb]
        d3 = z[at + 3 * stride:at + 3 * stride + pb]
        d4 = z[at + 4 * stride:at + 4 * stride + pb]
        d5 = z[at + 5 * stride:at + 5 * stride + pb]
        for q in range(pb):
            d0[q], d1[q], d2[q], d3[q], d4[q], d5[q] = _a(p0[q], p1[q], p2[q], p3[q], two, four, eight)
