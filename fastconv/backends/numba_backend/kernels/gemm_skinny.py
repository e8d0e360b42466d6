"""A convolution's GEMM when it has few columns (deep layers at batch 1-8: a 512 ->
512 3x3 layer on a 2x2 plane is a 512 x 4608 by 4608 x 4 product).

A BLAS packs the weights into its panel layout on every call -- a full read and
write of 9 MB there -- for four columns of work.  Here the output positions are
unfolded as rows (`im2row`: position ``p``'s window contiguous, ``depth`` long, in
the weights' ``(C_in, kh, kw)`` order), and `skinny_forward` computes
``y[o, p] = w[o] . rows[p]`` in register blocks of weight rows x positions
(`blocked_tiles.wblock`: vector FMAs along the depth, lanes summed at the end), so
each weight row is read from memory once and from L2 once per block of positions.
The caller keeps ``depth`` a multiple of the vector lanes (no tail to mask).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends.numba_backend.kernels.blocked_tiles import WG_BLOCK
from fastconv.backends.numba_backend.kernels.blocked_tiles import wblock as _wblock

_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(**_JIT)
def im2row(x, kh, kw, sh, sw, ph, pw, out_h, out_w, rows):
    """rows[(img*out_h + oh)*out_w + ow, (c*kh + i)*kw + j] = the padded input under
    tap (i, j) of output (img, oh, ow)."""
    n, c_in, height, width = x.shape
    zero = x.dtype.type(0)
    for img in range(n):
        for oh in range(out_h):
            for ow in range(out_w):
                row = rows[(img * out_h + oh) * out_w + ow]
                for c in range(c_in):
                    for i in range(kh):
                        hi = oh * sh - ph + i
                        inside = 0 <= hi < height
                        for j in range(kw):
                            wj = ow * sw - pw + j
                            v = zero
                            if inside and 0 <= wj < width:
                                v = x[img, c, hi, wj]
                            row[(c * kh + i) * kw + j] = v


@njit(**_PJIT)
def skinny_forward(w2, rows, b, relu, y, n_chunks):
    """y[img, o, q] = w2[o] . rows[img*windows + q] + b[o] (then max(., 0) if relu),
    ``windows = y.shape[2]``; parallel over blocks of ``WG_BLOCK`` weight rows."""
    c_out, depth = w2.shape
    positions = rows.shape[0]
    windows = y.shape[2]
    wflat = w2.ravel()
    rflat = rows.ravel()
    blocks = (c_out + WG_BLOCK - 1) // WG_BLOCK
    zero = y.dtype.type(0)
    for chunk in prange(n_chunks):
        sums = np.zeros((WG_BLOCK, WG_BLOCK), dtype=w2.dtype)
        for block in range(blocks * chunk // n_chunks, blocks * (chunk + 1) // n_chunks):
            o0 = block * WG_BLOCK
            n_o = min(WG_BLOCK, c_out - o0)
            for p0 in range(0, positions, WG_BLOCK):
                n_p = min(WG_BLOCK, positions - p0)
                sums[:] = 0
                _wblock(wflat, o0 * depth, depth, n_o, rflat, p0 * depth, depth, n_p, depth, sums)
                for a in range(n_o):
                    bias = b[o0 + a]
                    for k in range(n_p):
                        p = p0 + k
                        v = sums[a, k] + bias
                        if relu and v < zero:
                            v = zero
                        y[p // windows, o0 + a, p % windows] = v
