"""Register-blocked direct convolution (``kernels/blocked.py``): no column buffer and
no GEMM library, the multiply-adds in explicit SIMD registers (``kernels/simd.py``).

Each group of images is copied once into the stride phases of its padded planes;
forward, input gradient and weight gradient are then register blocks over flat runs
of positions (the module doc of ``kernels/blocked.py``).  Any kernel size, stride and
padding.  Exact: plain products and sums, in another order than direct summation.

Written for 32 vector registers (AVX-512); elsewhere it stays correct but spills,
so autotuning only times it where the registers exist (`tuned`).
"""

from __future__ import annotations

import functools

import numpy as np

from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import blocked as _k
from fastconv.backends.numba_backend.kernels import simd

NAME = "blocked"
EXACT = True
FUSES_POOL = False

# One group's padded input (and, backward, its output gradient) per thread: L2-sized.
_GROUP_BYTES = 1 << 19


def supports(x_shape, w_shape, stride, padding) -> bool:
    return True


@functools.lru_cache(maxsize=1)
def tuned() -> bool:
    """Whether autotuning should time it: the host has 32 512-bit registers."""
    return simd.fits_registers()


@functools.lru_cache(maxsize=1024)     # Python-side planning: ~10 us per call otherwise
def _plan(x_shape, w_shape, stride, padding, itemsize, backward):
    """(group, phase_size, pwid, tap offsets, tap indices, source buffer size)."""
    n, c_in, height, width = x_shape
    c_out, _, kh, kw = w_shape
    (sh, sw), (ph, pw) = stride, padding
    pwid = -(-(width + 2 * pw) // sw)
    phase_size = -(-(height + 2 * ph) // sh) * pwid
    per_image = (c_in + (c_out if backward else 0)) * sh * sw * phase_size * itemsize
    blocks = -(-c_out // (_k.WG_BLOCK if backward else _k.OUT_BLOCK))
    threads = rt.get_num_threads()
    share = n if blocks >= threads else -(-n // threads)     # split images only if blocks cannot
    largest = max(1, min(share, _GROUP_BYTES // per_image))
    group = -(-share // -(-share // largest))
    block = group * phase_size
    offs = np.array([((i % sh) * sw + j % sw) * block + (i // sh) * pwid + j // sw
                     for i in range(kh) for j in range(kw)], dtype=np.int64)
    strip = _k.VECTORS * simd.lanes(itemsize)
    src_size = c_in * sh * sw * block + int(offs.max()) + strip
    return group, phase_size, pwid, offs, np.arange(kh * kw, dtype=np.int64), src_size


def _chunks(n, group, blocks, work):
    return rt.chunks(-(-n // group) * blocks, work)


def forward(x, w, b, stride, padding, relu):
    n, c_in, height, width = x.shape
    c_out = w.shape[0]
    out_h, out_w = rt.out_hw(height, width, w.shape[2:], stride, padding)
    y = np.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    group, _, _, offs, tmap, src_size = _plan(x.shape, w.shape, stride, padding, x.itemsize, False)
    chunks = _chunks(n, group, -(-c_out // _k.OUT_BLOCK), 2.0 * y.size * w[0].size)
    rt.launch(_k.blocked_forward, x, w, b, offs, tmap, *stride, *padding, group, src_size, bool(relu),
              y, chunks)
    return y


@functools.lru_cache(maxsize=1024)
def _input_grad_taps(w_shape, stride, pwid):
    """Taps grouped by the stride phase they land in: (margin - shift, tap index,
    phase starts) and the margin (the furthest shift)."""
    _, _, kh, kw = w_shape
    sh, sw = stride
    by_phase = [[] for _ in range(sh * sw)]
    for i in range(kh):
        for j in range(kw):
            by_phase[(i % sh) * sw + j % sw].append(((i // sh) * pwid + j // sw, i * kw + j))
    margin = max(shift for taps in by_phase for shift, _ in taps)
    offs = np.array([margin - shift for taps in by_phase for shift, _ in taps], dtype=np.int64)
    tmap = np.array([t for taps in by_phase for _, t in taps], dtype=np.int64)
    starts = np.cumsum([0] + [len(taps) for taps in by_phase]).astype(np.int64)
    return offs, tmap, starts, margin


def backward(grad_y, x, w, mask, stride, padding, need_grad_x):
    n, c_in = x.shape[:2]
    c_out = w.shape[0]
    use_mask = mask is not None
    mask = mask if use_mask else rt.dummy(x.dtype, 4)
    group, phase_size, pwid, offs, _, src_size = _plan(x.shape, w.shape, stride, padding,
                                                       x.itemsize, True)
    strip = _k.VECTORS * simd.lanes(x.itemsize)
    work = 2.0 * grad_y.size * w[0].size
    chunks = _chunks(n, group, -(-c_out // _k.WG_BLOCK), work)
    grad_w_parts = np.zeros((chunks, c_out, c_in, offs.size), dtype=x.dtype)
    grad_b_parts = np.zeros((chunks, c_out), dtype=x.dtype)
    rt.launch(_k.blocked_weight_grad, grad_y, mask, use_mask, x, offs, *stride, *padding, group,
              src_size, group * phase_size + strip, grad_w_parts, grad_b_parts, chunks)
    grad_w = (grad_w_parts[0] if chunks == 1 else grad_w_parts.sum(axis=0)).reshape(w.shape)
    grad_b = grad_b_parts[0] if chunks == 1 else grad_b_parts.sum(axis=0)
    if not need_grad_x:
        return None, grad_w, grad_b
    grad_x = np.empty_like(x)
    g_offs, g_tmap, starts, margin = _input_grad_taps(w.shape, stride, pwid)
    chunks = _chunks(n, group, -(-c_in // _k.OUT_BLOCK), work)
    rt.launch(_k.blocked_input_grad, grad_y, mask, use_mask, w, g_offs, g_tmap, starts, *stride,
              *padding, group, margin, margin + group * phase_size + strip, grad_x, chunks)
    return grad_x, grad_w, grad_b
