"""Register-blocked direct convolution (``kernels/blocked.py``): no column buffer and
no GEMM library, the multiply-adds in explicit SIMD registers (``kernels/simd.py``).

Each group of images is copied once into the stride phases of its padded planes;
forward, input gradient and weight gradient are then register blocks over flat runs
of positions (the module doc of ``kernels/blocked.py``).  Any kernel size, stride and
padding.  Exact: plain products and sums, in another order than direct summation.

Its register blocks fit the target's vector registers (`kernels/blocked_tiles.py`);
autotuning times it where the target has FMA instructions (`worth_timing`).
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
def worth_timing() -> bool:
    """Whether autotuning should time it: the target (`simd.target`) has FMA
    instructions (AVX2, AVX-512, NEON); without them it is a multiply and an add
    per product and never wins."""
    return simd.target().fma


@functools.lru_cache(maxsize=1024)     # Python-side planning: ~10 us per call otherwise
def _plan(x_shape, w_shape, stride, padding, dilation, itemsize, backward):
    """(group, phase_size, pwid, tap offsets, tap indices, source buffer size)."""
    n, c_in, height, width = x_shape
    c_out, _, kh, kw = w_shape
    (sh, sw), (dh, dw) = stride, dilation
    phase_size, pwid = _layout(height, width, kh, kw, stride, padding, dilation)
    per_image = (c_in + (c_out if backward else 0)) * sh * sw * phase_size * itemsize
    blocks = _blocks(c_out, c_in // w_shape[1], _k.WG_BLOCK if backward else _k.OUT_BLOCK)
    threads = rt.get_num_threads()
    share = n if blocks >= threads else -(-n // threads)     # split images only if blocks cannot
    largest = max(1, min(share, _GROUP_BYTES // per_image))
    group = -(-share // -(-share // largest))
    block = group * phase_size
    offs = np.array([(((i * dh) % sh) * sw + (j * dw) % sw) * block + (i * dh // sh) * pwid + j * dw // sw
                     for i in range(kh) for j in range(kw)], dtype=np.int64)
    strip = _k.VECTORS * simd.lanes(itemsize)
    src_size = c_in * sh * sw * block + int(offs.max()) + strip
    return group, phase_size, pwid, offs, np.arange(kh * kw, dtype=np.int64), src_size


def _layout(height, width, kh, kw, stride, padding, dilation):
    """(phase_size, pwid): one image's share of a group's buffer and its row length.
    Strided: the stride phases of the padded plane (`kernels/phases.py`).  Stride 1:
    the padded plane with the padding neighbours share, as far as the outputs of one
    row (image) still fit in it: a row ``pw`` shorter, an image ``ph`` rows shorter
    when the dilated kernel spans at least the padding (``pad <= d*(k-1)``).  A
    4x4 3x3 "same" layer then computes 25 positions per image instead of 36."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    if (sh, sw) == (1, 1):
        pwid = width + 2 * pw - min(pw, dw * (kw - 1))
        return (height + 2 * ph - min(ph, dh * (kh - 1))) * pwid, pwid
    pwid = -(-(width + 2 * pw) // sw)
    return -(-(height + 2 * ph) // sh) * pwid, pwid


def _blocks(channels, groups, size):
    """Channel blocks of ``size`` when no block may cross a convolution group."""
    return groups * -(-(channels // groups) // size)


def _chunks(n, group, blocks, work):
    return rt.chunks(-(-n // group) * blocks, work)


def _out_hw(x_shape, w_shape, stride, padding, dilation):
    return tuple((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, k, s, p, d in
                 zip(x_shape[2:], w_shape[2:], stride, padding, dilation))


def forward(x, w, b, stride, padding, relu, dilation=(1, 1)):
    """Also grouped: ``w`` ``(C_out, C_in / groups, kh, kw)``."""
    n, c_in, height, width = x.shape
    c_out = w.shape[0]
    groups = c_in // w.shape[1]
    y = np.empty((n, c_out, *_out_hw(x.shape, w.shape, stride, padding, dilation)), dtype=x.dtype)
    group, phase_size, pwid, offs, tmap, src_size = _plan(x.shape, w.shape, stride, padding, dilation,
                                                          x.itemsize, False)
    chunks = _chunks(n, group, _blocks(c_out, groups, _k.OUT_BLOCK), 2.0 * y.size * w[0].size)
    rt.launch(_k.blocked_forward, x, w, b, offs, tmap, *stride, *padding, phase_size, pwid, group,
              src_size, bool(relu), y, groups, chunks)
    return y


@functools.lru_cache(maxsize=1024)
def _input_grad_taps(w_shape, stride, dilation, pwid):
    """Taps grouped by the stride phase they land in: (margin - shift, tap index,
    phase starts) and the margin (the furthest shift)."""
    _, _, kh, kw = w_shape
    (sh, sw), (dh, dw) = stride, dilation
    by_phase = [[] for _ in range(sh * sw)]
    for i in range(kh):
        for j in range(kw):
            ri, ci = i * dh, j * dw
            by_phase[(ri % sh) * sw + ci % sw].append(((ri // sh) * pwid + ci // sw, i * kw + j))
    margin = max(shift for taps in by_phase for shift, _ in taps)
    offs = np.array([margin - shift for taps in by_phase for shift, _ in taps], dtype=np.int64)
    tmap = np.array([t for taps in by_phase for _, t in taps], dtype=np.int64)
    starts = np.cumsum([0] + [len(taps) for taps in by_phase]).astype(np.int64)
    return offs, tmap, starts, margin


def _weight_grad(grad_y, mask, x, w_shape, stride, padding, dilation):
    """(grad_w, grad_b) of the convolution of ``x`` giving ``grad_y`` (times ``mask > 0``)."""
    n, c_in = x.shape[:2]
    c_out, cg = w_shape[:2]
    groups = c_in // cg
    group, phase_size, pwid, offs, _, src_size = _plan(x.shape, w_shape, stride, padding, dilation,
                                                       x.itemsize, True)
    strip = _k.VECTORS * simd.lanes(x.itemsize)
    chunks = _chunks(n, group, _blocks(c_out, groups, _k.WG_BLOCK), 2.0 * grad_y.size * cg * offs.size)
    grad_w_parts = rt.parts_workspace("grad_w_parts", (chunks, c_out, cg, offs.size), x.dtype, zero=True)
    grad_b_parts = np.zeros((chunks, c_out), dtype=x.dtype)
    rt.launch(_k.blocked_weight_grad, grad_y, *_mask(mask, x.dtype), x, offs, *stride, *padding,
              phase_size, pwid, group, src_size, group * phase_size + strip, grad_w_parts, grad_b_parts,
              groups, chunks)
    return rt.summed(grad_w_parts).reshape(w_shape), (grad_b_parts[0] if chunks == 1 else grad_b_parts.sum(axis=0))


def _input_grad(grad_y, mask, w, x_shape, stride, padding, dilation, bias):
    """The input gradient (shape ``x_shape``) of the convolution by ``w`` giving
    ``grad_y`` (times ``mask > 0``), plus ``bias`` per channel."""
    group, phase_size, pwid = _plan(x_shape, w.shape, stride, padding, dilation, grad_y.itemsize,
                                    True)[:3]
    offs, tmap, starts, margin = _input_grad_taps(w.shape, stride, dilation, pwid)
    strip = _k.VECTORS * simd.lanes(grad_y.itemsize)
    grad_x = np.empty(x_shape, dtype=grad_y.dtype)
    groups = x_shape[1] // w.shape[1]
    chunks = _chunks(x_shape[0], group, _blocks(x_shape[1], groups, _k.OUT_BLOCK), 2.0 * grad_y.size * w[0].size)
    rt.launch(_k.blocked_input_grad, grad_y, *_mask(mask, grad_y.dtype), w, offs, tmap, starts, *stride,
              *padding, phase_size, pwid, group, margin, margin + group * phase_size + strip, bias, grad_x,
              groups, chunks)
    return grad_x


def _mask(mask, dtype):
    """The kernels' (mask, use_mask) arguments for an optional ReLU output."""
    return (rt.dummy(dtype, 4), False) if mask is None else (mask, True)


def backward(grad_y, x, w, mask, stride, padding, need_grad_x, dilation=(1, 1)):
    grad_w, grad_b = _weight_grad(grad_y, mask, x, w.shape, stride, padding, dilation)
    if not need_grad_x:
        return None, grad_w, grad_b
    bias = np.zeros(x.shape[1], dtype=x.dtype)
    return _input_grad(grad_y, mask, w, x.shape, stride, padding, dilation, bias), grad_w, grad_b
