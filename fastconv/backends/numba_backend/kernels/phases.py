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

from fastconv.backends.numba_backend.kernels.simd import (
    vadd, veven, vload_first, vlanes, vodd, vsplat, vstore_first, vzip_hi, vzip_lo)

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
    ``C // sw`` (for stride 1: the flat padded plane, row length ``pwid``).  Only the
    pixels' places are written: the padding keeps whatever ``dst`` holds (zeros)."""
    height, width = plane.shape
    for r in range(height):
        big_r = r + ph
        row_base = ((big_r % sh) * sw) * phase_size + (big_r // sh) * pwid
        if sw == 2:
            _split_pairs(dst, row_base + (pw % 2) * phase_size + pw // 2,
                         row_base + ((pw + 1) % 2) * phase_size + (pw + 1) // 2, plane[r])
            continue
        src = plane[r]
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
        if sw == 2:
            _join_pairs(plane[r], src, row_base + (pw % 2) * phase_size + pw // 2,
                        row_base + ((pw + 1) % 2) * phase_size + (pw + 1) // 2, bias)
            continue
        dst = plane[r]
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


# Column stride 2, in vectors: a row's even and odd pixels go to two phases' rows.
# Per pixel, scalar strided loops cost ~1.2 ns (a 14x14 plane: 235 ns, 3x the
# depthwise convolution itself).
@njit(**_JIT)
def _split_pairs(dst, even_at, odd_at, row):
    """dst[even_at + k] = row[2k], dst[odd_at + k] = row[2k + 1]."""
    lanes = vlanes(row)
    width = row.shape[0]
    for k in range(0, width, 2 * lanes):
        count = min(2 * lanes, width - k)
        lo = vload_first(row, k, min(lanes, count))
        hi = vload_first(row, k + lanes, max(0, count - lanes))
        vstore_first(dst, even_at + k // 2, veven(lo, hi), (count + 1) // 2)
        vstore_first(dst, odd_at + k // 2, vodd(lo, hi), count // 2)


@njit(**_JIT)
def _join_pairs(row, src, even_at, odd_at, bias):
    """Inverse of `_split_pairs`, plus ``bias``: row[2k] = src[even_at + k] + bias, ..."""
    lanes = vlanes(row)
    width = row.shape[0]
    add = vsplat(row, bias)
    for k in range(0, width, 2 * lanes):
        count = min(2 * lanes, width - k)
        even = vload_first(src, even_at + k // 2, (count + 1) // 2)
        odd = vload_first(src, odd_at + k // 2, count // 2)
        vstore_first(row, k, vadd(vzip_lo(even, odd), add), min(lanes, count))
        vstore_first(row, k + lanes, vadd(vzip_hi(even, odd), add), max(0, count - lanes))


@njit(**_JIT)
def _tap_offset(i, j, sh, sw, dh, dw, phase_size, pwid):
    """Where tap (i, j) of output position 0 reads in the phase buffer: every output
    position q = oh*pwid + ow then reads ``offset + q`` (one phase, contiguous)."""
    ri, ci = i * dh, j * dw
    return ((ri % sh) * sw + ci % sw) * phase_size + (ri // sh) * pwid + ci // sw
