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
def _fill_phases(dst, plane, ph, pw, sh, sw, phase_size, pwid, rows):
    """Scatter ``plane`` (H, W) into the stride phases of its zero-padded copy: padded
    pixel (R, C) goes to phase ``(R % sh)*sw + C % sw``, row ``R // sh``, column
    ``C // sw`` (for stride 1: the flat padded plane, row length ``pwid``).

    ``rows`` (``sh*sw*phase_size``, zero but where this writes; not shared with
    `_read_phases`, which writes all of it) is the column-stride-2 path's staging
    buffer: see `_pair_row_start`."""
    height, width = plane.shape
    if sw == 2:
        for r in range(height):
            start = _pair_row_start(r + ph, pw, sh, phase_size, pwid)
            d = rows[start:start + width]
            s = plane[r]
            for k in range(width):
                d[k] = s[k]
        for a in range(sh):                         # de-interleave: one long loop per row phase
            t = rows[2 * a * phase_size:2 * (a + 1) * phase_size]
            d0 = dst[2 * a * phase_size:(2 * a + 1) * phase_size]
            d1 = dst[(2 * a + 1) * phase_size:(2 * a + 2) * phase_size]
            for k in range(phase_size):
                d0[k] = t[2 * k]
                d1[k] = t[2 * k + 1]
        return
    for r in range(height):
        big_r = r + ph
        row_base = ((big_r % sh) * sw) * phase_size + (big_r // sh) * pwid
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
def _read_phases(src, plane, ph, pw, sh, sw, phase_size, pwid, bias, rows):
    """Inverse of `_fill_phases`: ``plane`` (overwritten) = interior of ``src`` + bias.
    ``rows`` (``sh*sw*phase_size``) is the column-stride-2 path's staging buffer."""
    height, width = plane.shape
    if sw == 2:
        for a in range(sh):                         # interleave: one long loop per row phase
            t = rows[2 * a * phase_size:2 * (a + 1) * phase_size]
            s0 = src[2 * a * phase_size:(2 * a + 1) * phase_size]
            s1 = src[(2 * a + 1) * phase_size:(2 * a + 2) * phase_size]
            for k in range(phase_size):
                t[2 * k] = s0[k]
                t[2 * k + 1] = s1[k]
        for r in range(height):
            start = _pair_row_start(r + ph, pw, sh, phase_size, pwid)
            s = rows[start:start + width]
            d = plane[r]
            for k in range(width):
                d[k] = s[k] + bias
        return
    for r in range(height):
        big_r = r + ph
        row_base = ((big_r % sh) * sw) * phase_size + (big_r // sh) * pwid
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


@njit(**_JIT)
def _pair_row_start(big_r, pw, sh, phase_size, pwid):
    """Column stride 2: where padded row ``big_r``'s first interior pixel lies in the
    staging buffer ``rows``, which holds the padded plane's rows grouped by row phase
    (``sh`` blocks of ``phase_size // pwid`` rows of length ``2*pwid``).  A row phase's
    two column phases then (de)interleave with that block in one long vectorised loop;
    per image row, the 16-32 pixel pair loops stayed scalar (3x slower on 32x32)."""
    return (big_r % sh) * 2 * phase_size + (big_r // sh) * 2 * pwid + pw


@njit(**_JIT)
def _tap_offset(i, j, sh, sw, dh, dw, phase_size, pwid):
    """Where tap (i, j) of output position 0 reads in the phase buffer: every output
    position q = oh*pwid + ow then reads ``offset + q`` (one phase, contiguous)."""
    ri, ci = i * dh, j * dw
    return ((ri % sh) * sw + ci % sw) * phase_size + (ri // sh) * pwid + ci // sw
