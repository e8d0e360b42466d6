"""Stride phases of a zero-padded plane, shared by the depthwise and transposed
convolution kernels.

Padded pixel ``(R, C)`` is stored in phase ``(R % sh, C % sw)`` at row ``R // sh``,
column ``C // sw``; each phase is a ``rows x pwid`` flat block.  Seen from there, a
kernel tap ``(i, j)`` (dilation ``dh, dw``) of every output ``(oh, ow)`` of a stride
``(sh, sw)`` convolution lies at ``_tap_offset(i, j) + oh*pwid + ow``: one
contiguous run per tap over the whole output grid (row length ``pwid``; the columns
past ``out_w`` are garbage), however large the stride.  With stride 1 there is one
phase, the padded plane itself.  Everything trusts its caller: no bounds checks.
"""

from __future__ import annotations

from numba import njit

_JIT = dict(cache=True, nogil=True)


@njit(**_JIT)
def _geometry(height, width, ph, pw, sh, sw):
    """(phase_size, pwid) of the stride-phase buffer of a padded ``H x W`` plane."""
    pwid = (width + 2 * pw + sw - 1) // sw
    return ((height + 2 * ph + sh - 1) // sh) * pwid, pwid


@njit(**_JIT)
def _fill_phases(dst, plane, ph, pw, sh, sw, phase_size, pwid):
    """Scatter ``plane`` (H, W) into the stride phases of its zero-padded copy: padded
    pixel (R, C) goes to phase ``(R % sh)*sw + C % sw``, row ``R // sh``, column
    ``C // sw`` (for stride 1: the flat padded plane, row length ``pwid``)."""
    height, width = plane.shape
    for r in range(height):
        big_r = r + ph
        row_base = ((big_r % sh) * sw) * phase_size + (big_r // sh) * pwid
        src = plane[r]
        if sw == 2 and width > 1:
            even, odd = _pair_starts(row_base, pw, phase_size)
            d0 = dst[even:even + (width + 1) // 2]
            d1 = dst[odd:odd + width // 2]
            for k in range(width // 2):             # an interleaved pair: vectorised
                d0[k] = src[2 * k]
                d1[k] = src[2 * k + 1]
            if width % 2:
                d0[width // 2] = src[width - 1]
            continue
        for pc in range(sw):
            c0 = (pc - pw) % sw                     # first column of this phase
            if c0 >= width:
                continue
            count = (width - c0 + sw - 1) // sw
            start = row_base + pc * phase_size + (c0 + pw) // sw
            d = dst[start:start + count]
            if sw == 1:                             # contiguous: a vectorised copy
                s = src[c0:c0 + count]
                for k in range(count):
                    d[k] = s[k]
            else:
                s = src[c0:]                        # zero-based: no wraparound check
                for k in range(count):
                    d[k] = s[k * sw]


@njit(**_JIT)
def _read_phases(src, plane, ph, pw, sh, sw, phase_size, pwid, bias):
    """Inverse of `_fill_phases`: ``plane`` (overwritten) = interior of ``src`` + bias."""
    height, width = plane.shape
    for r in range(height):
        big_r = r + ph
        row_base = ((big_r % sh) * sw) * phase_size + (big_r // sh) * pwid
        dst = plane[r]
        if sw == 2 and width > 1:
            even, odd = _pair_starts(row_base, pw, phase_size)
            s0 = src[even:even + (width + 1) // 2]
            s1 = src[odd:odd + width // 2]
            for k in range(width // 2):             # an interleaved pair: vectorised
                dst[2 * k] = s0[k] + bias
                dst[2 * k + 1] = s1[k] + bias
            if width % 2:
                dst[width - 1] = s0[width // 2] + bias
            continue
        for pc in range(sw):
            c0 = (pc - pw) % sw
            if c0 >= width:
                continue
            count = (width - c0 + sw - 1) // sw
            start = row_base + pc * phase_size + (c0 + pw) // sw
            s = src[start:start + count]
            if sw == 1:
                d = dst[c0:c0 + count]
                for k in range(count):
                    d[k] = s[k] + bias
            else:
                d = dst[c0:]                        # zero-based: no wraparound check
                for k in range(count):
                    d[k * sw] = s[k] + bias


@njit(**_JIT)
def _pair_starts(row_base, pw, phase_size):
    """Stride 2: where a row's even and odd columns (0, 2, ... and 1, 3, ...) start in
    the phase buffer.  Column c is padded column c + pw: phase (c + pw) % 2, index
    (c + pw) // 2.  Strided single-phase loops stayed scalar (3 ns per output)."""
    even = row_base + (pw % 2) * phase_size + pw // 2
    odd = row_base + ((pw + 1) % 2) * phase_size + (pw + 1) // 2
    return even, odd


@njit(**_JIT)
def _tap_offset(i, j, sh, sw, dh, dw, phase_size, pwid):
    """Where tap (i, j) of output position 0 reads in the phase buffer: every output
    position q = oh*pwid + ow then reads ``offset + q`` (one phase, contiguous)."""
    ri, ci = i * dh, j * dw
    return ((ri % sh) * sw + ci % sw) * phase_size + (ri // sh) * pwid + ci // sw
