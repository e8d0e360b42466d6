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

The transforms themselves are in ``kernels/winograd_tiles.py``; this module holds the
filter transforms and the parallel kernels that run the plans.  Everything here trusts
its caller: arrays C-contiguous, sizes consistent, stride 1, 3x3 filters.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends.numba_backend.kernels import blas
from fastconv.backends.numba_backend.kernels.winograd_tiles import (
    PATCH, POINTS, TILE, _g, _gradient_rows, _gt, _input_rows, _output_rows)

_JIT = dict(cache=True, nogil=True, fastmath={"contract"})
_PJIT = dict(cache=True, nogil=True, fastmath={"contract"}, parallel=True)


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
                blas.gemm(u[t], _point(v, t, v_stride, c_in, pb), _point(m, t, m_stride, k_out, pb))
            _output_block(m, m_stride, pb, 0, k_out, g0, g1, group, tile_h, tiles, hs, ob, b, relu, y)


@njit(**_PJIT)
def winograd_weight_grad(gy, x, ph, pw, rows_per_block, group, du_parts, gb_parts, ws_v, ws_z,
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
                blas.gemm(zt, vt, du[t], blk != first)     # the thread's first block writes dU


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
            blas.gemm(u[t], _point(v, t, v_stride, c_in, pb), _point(m, t, m_stride, k_out, pb))


@njit(**_PJIT)
def weight_grad_points(z, z_stride, v, v_stride, pb, du, n_chunks):
    """dU[t] = Z[t] @ V[t]^T for every point, split over points (no partial sums)."""
    k_out, c_in = du.shape[1], du.shape[2]
    for chunk in prange(n_chunks):
        for t in range(POINTS * chunk // n_chunks, POINTS * (chunk + 1) // n_chunks):
            blas.gemm(_point(z, t, z_stride, k_out, pb), _point(v, t, v_stride, c_in, pb).T, du[t])


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
