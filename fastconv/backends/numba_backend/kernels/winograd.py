"""Winograd F(4x4, 3x3) convolution kernels (Lavin & Gray, 2015), stride 1.

Each 4x4 block of outputs ("tile") of one output channel is computed from a 6x6
input patch ``d`` and the 3x3 filter ``g`` as ``A^T [(G g G^T) . (B^T d B)] A``:
36 multiplies per tile and input channel instead of 144.  Summed over input
channels, the elementwise product becomes 36 independent GEMMs::

    M[t] (K x P) = U[t] (K x C) @ V[t] (C x P)      for t in 0..35

with ``U = G g G^T`` the transformed filters, ``V = B^T d B`` the transformed input
patches of P tiles and ``M`` the transform-domain output.  The tiles are taken in
blocks of whole tile rows (``rows_per_block`` rows of ``ceil(out_w/4)`` tiles, across
the batch), sized so that a block's V and M stay in the core's L2 cache: each thread
transforms a block, runs the 36 GEMMs on it (single-threaded BLAS) and transforms
the result straight into the NCHW output with bias and ReLU.  Blocks are split over
threads, so one image's tile rows keep every core busy at batch 1.

The weight gradient is the transpose of the same computation: with the output
gradient's tiles transformed by ``Z = A dY A^T``, ``dU[t] += Z[t] @ V[t]^T`` over all
blocks and ``grad_w = G^T dU G``.  (The input gradient is a stride-1 convolution of the
output gradient with the flipped, transposed filters, which the caller runs through
`winograd_forward`.)

Matrices, points 0, +-1, +-2 (``B^T`` 6x6, ``G`` 6x3, ``A^T`` 4x6)::

    B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
    G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
    A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]

Float32 hot loops use constants of the array's type (a Python float literal would
promote the arithmetic to float64).  Everything here trusts its caller: arrays
C-contiguous, sizes consistent, stride 1, 3x3 filters.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_JIT = dict(cache=True, nogil=True, fastmath={"contract"})
_PJIT = dict(cache=True, nogil=True, fastmath={"contract"}, parallel=True)

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


# --------------------------------------------------------------------------- filters
# Both filter kernels run one output channel at a time, vectorised across the input
# channels (contiguous in ``u[t, k]``); filter by filter they cost more than the whole
# convolution on small planes (512->512 on 4x4: 31 ms of a 32 ms forward).
@njit(**_PJIT)
def filter_transform(w, u, n_chunks):
    """u[t, k, c] = (G w[k, c] G^T)[t // 6, t % 6], computed in float64."""
    k_out, c_in = w.shape[0], w.shape[1]
    for chunk in prange(n_chunks):
        taps = np.empty((3, 3, c_in))
        cols = np.empty((PATCH, 3, c_in))
        for k in range(k_out * chunk // n_chunks, k_out * (chunk + 1) // n_chunks):
            wk = w[k]
            for c in range(c_in):
                for i in range(3):
                    for j in range(3):
                        taps[i, j, c] = wk[c, i, j]
            for j in range(3):                        # G down each filter column
                g0, g1, g2 = taps[0, j], taps[1, j], taps[2, j]
                r0, r1, r2 = cols[0, j], cols[1, j], cols[2, j]
                r3, r4, r5 = cols[3, j], cols[4, j], cols[5, j]
                for c in range(c_in):
                    r0[c], r1[c], r2[c], r3[c], r4[c], r5[c] = _g(g0[c], g1[c], g2[c])
            for xi in range(PATCH):                   # G across each row
                a0, a1, a2 = cols[xi, 0], cols[xi, 1], cols[xi, 2]
                o0, o1, o2 = u[xi * PATCH, k], u[xi * PATCH + 1, k], u[xi * PATCH + 2, k]
                o3, o4, o5 = u[xi * PATCH + 3, k], u[xi * PATCH + 4, k], u[xi * PATCH + 5, k]
                for c in range(c_in):
                    v0, v1, v2, v3, v4, v5 = _g(a0[c], a1[c], a2[c])
                    o0[c], o1[c], o2[c], o3[c], o4[c], o5[c] = v0, v1, v2, v3, v4, v5


@njit(**_PJIT)
def filter_gradient(du, grad_w, n_chunks):
    """grad_w[k, c] = G^T du[:, k, c] G (du summed over the threads' parts first)."""
    k_out, c_in = grad_w.shape[0], grad_w.shape[1]
    for chunk in prange(n_chunks):
        rows = np.empty((PATCH, 3, c_in))
        taps = np.empty((3, 3, c_in))
        for k in range(k_out * chunk // n_chunks, k_out * (chunk + 1) // n_chunks):
            for xi in range(PATCH):                   # G^T across each row
                b = xi * PATCH
                d0, d1, d2 = du[b, k], du[b + 1, k], du[b + 2, k]
                d3, d4, d5 = du[b + 3, k], du[b + 4, k], du[b + 5, k]
                r0, r1, r2 = rows[xi, 0], rows[xi, 1], rows[xi, 2]
                for c in range(c_in):
                    r0[c], r1[c], r2[c] = _gt(np.float64(d0[c]), np.float64(d1[c]), np.float64(d2[c]),
                                              np.float64(d3[c]), np.float64(d4[c]), np.float64(d5[c]))
            for j in range(3):                        # G^T down each column
                e0, e1, e2 = rows[0, j], rows[1, j], rows[2, j]
                e3, e4, e5 = rows[3, j], rows[4, j], rows[5, j]
                t0, t1, t2 = taps[0, j], taps[1, j], taps[2, j]
                for c in range(c_in):
                    t0[c], t1[c], t2[c] = _gt(e0[c], e1[c], e2[c], e3[c], e4[c], e5[c])
            gk = grad_w[k]
            for c in range(c_in):
                for i in range(3):
                    for j in range(3):
                        gk[c, i, j] = taps[i, j, c]


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


# --------------------------------------------------------------------------- blocks
@njit(**_JIT)
def _point(ws, t, stride, rows, cols):
    """Point t's (rows, cols) matrix in a thread's workspace row."""
    return ws[t * stride:t * stride + rows * cols].reshape((rows, cols))


@njit(**_JIT)
def _tiling(n, out_h, out_w, rows_per_block):
    """(tile rows per image, tiles per row, tile rows in the batch, blocks)."""
    tile_h = (out_h + TILE - 1) // TILE
    tiles = (out_w + TILE - 1) // TILE
    total_rows = n * tile_h
    return tile_h, tiles, total_rows, (total_rows + rows_per_block - 1) // rows_per_block


@njit(**_JIT)
def _scratch(dtype_of, tiles, group):
    """A thread's transform scratch for ``group`` tile rows: (band, hb, rows6, rows4)."""
    pb = group * tiles
    return (np.empty((PATCH, TILE * tiles + 2), dtype=dtype_of.dtype),
            np.empty((POINTS, pb), dtype=dtype_of.dtype),
            np.empty((PATCH, TILE, pb), dtype=dtype_of.dtype),
            np.empty((TILE, TILE, pb), dtype=dtype_of.dtype))


# The three block transforms below cover channels [c0, c1) (k0, k1) and tile rows
# [g0, g1) (global index: image * tile_h + tile row), ``group`` tile rows at a time;
# channel c's tiles start at ``c * pb`` of point t's matrix (at ``t * stride``).
@njit(**_JIT)
def _input_block(x, c0, c1, g0, g1, group, tile_h, tiles, ph, pw, band, hb, v, v_stride, pb):
    """V of x's channels [c0, c1)."""
    for c in range(c0, c1):                # plane by plane: its rows are read in order
        for a in range(g0, g1, group):
            _input_rows(x, c, a, min(g1, a + group), tile_h, tiles, ph, pw, band, hb, v, v_stride,
                        c * pb + (a - g0) * tiles)


@njit(**_JIT)
def _output_block(m, m_stride, pb, k0, k1, g0, g1, group, tile_h, tiles, hs, ob, b, relu, y):
    """y's channels [k0, k1) from M."""
    for k in range(k0, k1):
        for a in range(g0, g1, group):
            _output_rows(m, m_stride, k * pb + (a - g0) * tiles, a, min(g1, a + group), tile_h, tiles,
                         hs, ob, b[k], relu, y, k)


@njit(**_JIT)
def _gradient_block(gy, k0, k1, g0, g1, group, tile_h, tiles, gband, gvt, z, z_stride, pb, bias_sums):
    """Z of the output gradient's channels [k0, k1); ``bias_sums[k]`` accumulates."""
    for k in range(k0, k1):
        for a in range(g0, g1, group):
            _gradient_rows(gy, k, a, min(g1, a + group), tile_h, tiles, gband, gvt, z, z_stride,
                           k * pb + (a - g0) * tiles, bias_sums[k])


@njit(**_PJIT)
def winograd_forward(x, u, b, ph, pw, relu, rows_per_block, group, y, ws_v, ws_m, v_stride, m_stride,
                     n_chunks):
    """y = conv(x, w) + b (ReLU'd if asked), with u = `filter_transform` of w; point t's
    matrices start at ``t * v_stride`` / ``t * m_stride`` of a thread's workspace row."""
    n, c_in = x.shape[0], x.shape[1]
    k_out, out_h, out_w = y.shape[1], y.shape[2], y.shape[3]
    tile_h, tiles, total_rows, blocks = _tiling(n, out_h, out_w, rows_per_block)
    for chunk in prange(n_chunks):
        band, hb, hs, ob = _scratch(x, tiles, group)
        v = ws_v[chunk]
        m = ws_m[chunk]
        for blk in range(blocks * chunk // n_chunks, blocks * (chunk + 1) // n_chunks):
            g0 = blk * rows_per_block
            g1 = min(total_rows, g0 + rows_per_block)
            pb = (g1 - g0) * tiles
            _input_block(x, 0, c_in, g0, g1, group, tile_h, tiles, ph, pw, band, hb, v, v_stride, pb)
            for t in range(POINTS):
                np.dot(u[t], _point(v, t, v_stride, c_in, pb), _point(m, t, m_stride, k_out, pb))
            _output_block(m, m_stride, pb, 0, k_out, g0, g1, group, tile_h, tiles, hs, ob, b, relu, y)


@njit(**_PJIT)
def winograd_weight_grad(gy, x, ph, pw, rows_per_block, group, du_parts, gb_parts, ws_v, ws_z, ws_p,
                         v_stride, z_stride, n_chunks):
    """Per-thread dU = sum over tiles of Z @ V^T (``du_parts[chunk]``, (36, K, C), every
    chunk has at least one block) and grad_b partial sums (``gb_parts[chunk, k]``:
    float64, one per column of a tile row)."""
    n, c_in = x.shape[0], x.shape[1]
    k_out, out_h, out_w = gy.shape[1], gy.shape[2], gy.shape[3]
    tile_h, tiles, total_rows, blocks = _tiling(n, out_h, out_w, rows_per_block)
    for chunk in prange(n_chunks):
        band, hb, gvt, gband = _scratch(x, tiles, group)
        du = du_parts[chunk]
        part = ws_p[chunk].reshape((k_out, c_in))
        v = ws_v[chunk]
        z = ws_z[chunk]
        first = blocks * chunk // n_chunks
        for blk in range(first, blocks * (chunk + 1) // n_chunks):
            g0 = blk * rows_per_block
            g1 = min(total_rows, g0 + rows_per_block)
            pb = (g1 - g0) * tiles
            _input_block(x, 0, c_in, g0, g1, group, tile_h, tiles, ph, pw, band, hb, v, v_stride, pb)
            _gradient_block(gy, 0, k_out, g0, g1, group, tile_h, tiles, gband, gvt, z, z_stride, pb,
                            gb_parts[chunk])
            for t in range(POINTS):
                zt, vt = _point(z, t, z_stride, k_out, pb), _point(v, t, v_stride, c_in, pb).T
                if blk == first:        # straight into dU: a thread with one block adds nothing
                    np.dot(zt, vt, du[t])
                else:
                    np.dot(zt, vt, part)
                    du[t] += part


# --------------------------------------------------------------------------- whole batch
# When the batch has few tiles (small planes or batches), blocks of tiles leave each
# GEMM only a few columns, and packing its (K, C) filter matrix costs more than the
# product.  Then every tile of the batch is transformed at once (split over channels),
# each thread runs whole points' GEMMs over all tiles (split over the 36 points: each
# filter matrix is packed once, and the weight gradient needs no partial sums), and
# the outputs are transformed split over output channels.
@njit(**_PJIT)
def input_points(x, ph, pw, tile_h, tiles, group, v, v_stride, n_chunks):
    """V of every tile of the batch: point t's (C, P) matrix at ``t * v_stride``."""
    c_in = x.shape[1]
    total_rows = x.shape[0] * tile_h
    for chunk in prange(n_chunks):
        band, hb, _, _ = _scratch(x, tiles, group)
        _input_block(x, c_in * chunk // n_chunks, c_in * (chunk + 1) // n_chunks, 0, total_rows, group,
                     tile_h, tiles, ph, pw, band, hb, v, v_stride, total_rows * tiles)


@njit(**_PJIT)
def gradient_points(gy, tile_h, tiles, group, z, z_stride, bias_sums, n_chunks):
    """Z of every output-gradient tile (point t's (K, P) matrix at ``t * z_stride``);
    ``bias_sums[k]`` accumulates channel k's columns (see `_gradient_rows`)."""
    k_out = gy.shape[1]
    total_rows = gy.shape[0] * tile_h
    for chunk in prange(n_chunks):
        _, _, gvt, gband = _scratch(gy, tiles, group)
        _gradient_block(gy, k_out * chunk // n_chunks, k_out * (chunk + 1) // n_chunks, 0, total_rows,
                        group, tile_h, tiles, gband, gvt, z, z_stride, total_rows * tiles, bias_sums)


@njit(**_PJIT)
def output_points(m, m_stride, b, relu, tile_h, tiles, group, y, n_chunks):
    """y (bias added, ReLU'd if asked) from M of every tile of the batch."""
    k_out = y.shape[1]
    total_rows = y.shape[0] * tile_h
    for chunk in prange(n_chunks):
        _, _, hs, ob = _scratch(y, tiles, group)
        _output_block(m, m_stride, total_rows * tiles, k_out * chunk // n_chunks,
                      k_out * (chunk + 1) // n_chunks, 0, total_rows, group, tile_h, tiles, hs, ob, b,
                      relu, y)


@njit(**_PJIT)
def forward_points(u, v, v_stride, m, m_stride, pb, n_chunks):
    """M[t] = U[t] @ V[t] for every point, split over points."""
    k_out, c_in = u.shape[1], u.shape[2]
    for chunk in prange(n_chunks):
        for t in range(POINTS * chunk // n_chunks, POINTS * (chunk + 1) // n_chunks):
            np.dot(u[t], _point(v, t, v_stride, c_in, pb), _point(m, t, m_stride, k_out, pb))


@njit(**_PJIT)
def weight_grad_points(z, z_stride, v, v_stride, pb, du, n_chunks):
    """dU[t] = Z[t] @ V[t]^T for every point, split over points (no partial sums)."""
    k_out, c_in = du.shape[1], du.shape[2]
    for chunk in prange(n_chunks):
        for t in range(POINTS * chunk // n_chunks, POINTS * (chunk + 1) // n_chunks):
            np.dot(_point(z, t, z_stride, k_out, pb), _point(v, t, v_stride, c_in, pb).T, du[t])


@njit(**_PJIT)
def relu_masked(grad_y, mask, out, n_chunks):
    """out = grad_y where mask > 0, else 0 (the ReLU's backward)."""
    flat_g = grad_y.reshape(-1)
    flat_m = mask.reshape(-1)
    flat_o = out.reshape(-1)
    size = flat_g.size
    zero = out.dtype.type(0)
    for chunk in prange(n_chunks):
        for i in range(size * chunk // n_chunks, size * (chunk + 1) // n_chunks):
            flat_o[i] = flat_g[i] if flat_m[i] > zero else zero
