"""Array loops the loop vectoriser leaves scalar, written on `simd` vectors.

A float sum over an array stays one scalar add chain without fast-math (LLVM may
not reorder it): ~4 cycles per element, 1.5 us for a 32x32 plane, which was half of
the transposed convolution's unfold.  Short row copies (a 16-wide row is one vector)
pay per-row slicing and loop set-up.  Everything trusts its caller: no bounds checks.
"""

from __future__ import annotations

from numba import njit

from fastconv.backends.numba_backend.kernels.simd import (
    vadd, vlanes, vload, vload_first, vstore, vstore_first, vsum, vzero)


@njit(cache=True, nogil=True)
def total(values):
    """The sum of a contiguous 1-D array, in ``lanes`` partial sums."""
    lanes = vlanes(values)
    size = values.shape[0]
    full = size - size % lanes
    acc = vzero(values)
    for q in range(0, full, lanes):
        acc = vadd(acc, vload(values, q))
    return vsum(vadd(acc, vload_first(values, full, size - full)))


@njit(cache=True, nogil=True)
def copy_rows(src, at, pitch, rows, width, dst, to):
    """``rows`` rows of ``width`` elements, ``pitch`` apart in ``src`` from ``at``, into
    ``dst`` back to back from ``to``."""
    lanes = vlanes(dst)
    for r in range(rows):
        s, d = at + r * pitch, to + r * width
        for k in range(0, width, lanes):
            count = min(lanes, width - k)
            vstore_first(dst, d + k, vload_first(src, s + k, count), count)


@njit(cache=True, nogil=True)
def add_rows(src, at, rows, width, dst, to, pitch):
    """The inverse walk of `copy_rows`, adding: ``rows`` rows of ``width`` elements,
    back to back in ``src`` from ``at``, onto ``dst`` from ``to``, ``pitch`` apart."""
    lanes = vlanes(dst)
    full = width - width % lanes
    for r in range(rows):
        s, d = at + r * width, to + r * pitch
        for k in range(0, full, lanes):
            vstore(dst, d + k, vadd(vload(dst, d + k), vload(src, s + k)))
        if full < width:
            count = width - full
            vstore_first(dst, d + full, vadd(vload_first(dst, d + full, count), vload_first(src, s + full, count)),
                         count)
