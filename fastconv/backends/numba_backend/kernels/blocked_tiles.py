"""The register blocks of the blocked convolution (`kernels/blocked.py`), one per
register budget (`simd.Target.registers`): the block's accumulators plus the
operands of one step must fit the vector registers, or LLVM spills them to the
stack and every FMA pays a load and a store.

* 32 registers (AVX-512, NEON): 8 output channels x 3 vectors of positions; weight
  gradient 4 x 4 channels.
* 16 registers (AVX/AVX2, SSE): 4 output channels x 3 vectors; weight gradient
  3 x 3 channels.

`OUT_BLOCK`, `VECTORS`, `WG_BLOCK`, `block` and `wblock` are the target's choice.
The kernels are chosen as numba compiles their callers, for the target numba keys
its cache by (`simd.target`), so a cached caller always holds its target's block.
"""

from __future__ import annotations

from numba import njit

from fastconv.backends.numba_backend.kernels.simd import target, vfma, vlanes, vload, vsplat, vstore, vsum, vzero

_JIT = dict(cache=True, nogil=True)


@njit(**_JIT)
def _block_8x3(src, cstride, n_src, offs, taps, t0, t1, packed, dst, d0, q0):
    """dst[k, d0 + v] = sum_{s < n_src, t0 <= t < t1} packed[(s*taps + t)*8 + k]
    * src[s*cstride + offs[t] + q0 + v] for k < 8 and the 3*lanes positions v
    (24 accumulators: 28 registers with the operands)."""
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
def _block_4x3(src, cstride, n_src, offs, taps, t0, t1, packed, dst, d0, q0):
    """`_block_8x3` for 4 output channels (12 accumulators: 16 registers)."""
    lanes = vlanes(src)
    a00 = a01 = a02 = a10 = a11 = a12 = a20 = a21 = a22 = a30 = a31 = a32 = vzero(src)
    for s in range(n_src):
        base = s * cstride + q0
        for t in range(t0, t1):
            p = base + offs[t]
            x0 = vload(src, p)
            x1 = vload(src, p + lanes)
            x2 = vload(src, p + 2 * lanes)
            wt = (s * taps + t) * 4
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
    _store3(dst[0], d0, lanes, a00, a01, a02)
    _store3(dst[1], d0, lanes, a10, a11, a12)
    _store3(dst[2], d0, lanes, a20, a21, a22)
    _store3(dst[3], d0, lanes, a30, a31, a32)


@njit(**_JIT)
def _wblock_4x4(g, g0, gs, n_g, xs, x0, xstride, n_x, length, sums):
    """sums[a, b] += sum_{q < length} g[g0 + a'*gs + q] * xs[x0 + b'*xstride + q] for
    a < 4, b < 4 (a' = min(a, n_g - 1), b' = min(b, n_x - 1)); ``length`` a multiple
    of the lanes, the entries read past a run's end zero in ``g`` (16 accumulators:
    21 registers with the operands)."""
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


@njit(**_JIT)
def _wblock_3x3(g, g0, gs, n_g, xs, x0, xstride, n_x, length, sums):
    """`_wblock_4x4` for 3 x 3 channels (9 accumulators: 13 registers)."""
    lanes = vlanes(g)
    ga = g0
    gb = g0 + min(1, n_g - 1) * gs
    gc = g0 + min(2, n_g - 1) * gs
    xa = x0
    xb = x0 + min(1, n_x - 1) * xstride
    xc = x0 + min(2, n_x - 1) * xstride
    s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = vzero(g)
    for q in range(0, length, lanes):
        v0 = vload(g, ga + q)
        v1 = vload(g, gb + q)
        v2 = vload(g, gc + q)
        u = vload(xs, xa + q)
        s00 = vfma(v0, u, s00)
        s10 = vfma(v1, u, s10)
        s20 = vfma(v2, u, s20)
        u = vload(xs, xb + q)
        s01 = vfma(v0, u, s01)
        s11 = vfma(v1, u, s11)
        s21 = vfma(v2, u, s21)
        u = vload(xs, xc + q)
        s02 = vfma(v0, u, s02)
        s12 = vfma(v1, u, s12)
        s22 = vfma(v2, u, s22)
    sums[0, 0] += vsum(s00)
    sums[0, 1] += vsum(s01)
    sums[0, 2] += vsum(s02)
    sums[1, 0] += vsum(s10)
    sums[1, 1] += vsum(s11)
    sums[1, 2] += vsum(s12)
    sums[2, 0] += vsum(s20)
    sums[2, 1] += vsum(s21)
    sums[2, 2] += vsum(s22)


# registers -> (output channels per `block`, vectors per `block`, channels per `wblock`)
SHAPES = {32: (8, 3, 4), 16: (4, 3, 3)}
OUT_BLOCK, VECTORS, WG_BLOCK = SHAPES[target().registers]
block = _block_8x3 if OUT_BLOCK == 8 else _block_4x3
wblock = _wblock_4x4 if WG_BLOCK == 4 else _wblock_3x3
