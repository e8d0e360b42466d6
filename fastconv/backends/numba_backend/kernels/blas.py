"""``gemm(a, b, out, accumulate)``: out = a @ b (or out += a @ b) for the kernels, through
the Fortran sgemm/dgemm symbols `numba_backend.blas` binds to MKL or OpenBLAS.

Operands are 2-D views whose rows or columns are contiguous (C arrays, their row
slices and ``.T`` views); ``out`` must have contiguous rows.  Row-major ``out = a @ b``
is column-major ``out^T = b^T a^T``, so ``b`` is passed first.  The callers size and
lay out every operand; nothing here checks them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types

from fastconv.backends.numba_backend.blas import provider

provider()          # bind the symbols before any kernel that calls them is compiled or loaded

_VP = types.voidptr
_SIG = types.void(*([_VP] * 13))
_sgemm = types.ExternalFunction("fastconv_sgemm", _SIG)
_dgemm = types.ExternalFunction("fastconv_dgemm", _SIG)
_N, _T = 78, 84          # ord("N"), ord("T")


@njit(cache=True, nogil=True)
def _operand(arr):
    """(op, leading dimension) of a row-major view as a column-major BLAS operand:
    rows contiguous -> its transpose as stored ("N"), columns contiguous -> "T"."""
    rows, cols = arr.shape
    row_step, col_step = arr.strides[0] // arr.itemsize, arr.strides[1] // arr.itemsize
    if cols == 1 or col_step == 1:
        return _N, max(row_step if rows > 1 else cols, cols, 1)
    return _T, max(col_step if cols > 1 else rows, rows, 1)


@njit(cache=True, nogil=True)
def gemm(a, b, out, accumulate=False):
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0:
        return
    op_a, ld_a = _operand(a)
    op_b, ld_b = _operand(b)
    ints = np.empty(6, np.int32)
    ints[0], ints[1], ints[2] = n, m, k
    ints[3], ints[4] = ld_b, ld_a
    ints[5] = max(out.strides[0] // out.itemsize if m > 1 else n, n, 1)
    ops = np.empty(2, np.uint8)
    ops[0], ops[1] = op_b, op_a
    scalars = np.empty(2, out.dtype)
    scalars[0], scalars[1] = 1, 1 if accumulate else 0
    args = (ops[0:].ctypes, ops[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes,
            scalars[0:].ctypes, b.ctypes, ints[3:].ctypes, a.ctypes, ints[4:].ctypes,
            scalars[1:].ctypes, out.ctypes, ints[5:].ctypes)
    if out.itemsize == 4:
        _sgemm(*args)
    else:
        _dgemm(*args)


@njit(cache=True, nogil=True, parallel=True)
def gemm_on_each_thread(a, b, out, threads):
    """out[t] = a @ b on each of ``threads`` threads at once: what the kernels' BLAS
    reaches with every core busy (the benchmark's matmul peak)."""
    for t in prange(threads):
        gemm(a, b, out[t])
