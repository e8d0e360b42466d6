"""`im2col` / `col2im` (``F.unfold`` / ``F.fold`` layout) on the numba kernels."""

from __future__ import annotations

import numpy as np

from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import im2col as _cols


def im2col(x, kernel_size, stride, padding):
    x = rt.kernel_array(x)
    n, c, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    out_h, out_w = rt.out_hw(height, width, kernel_size, stride, padding)
    rows, windows = c * kh * kw, out_h * out_w
    cols = np.empty((n, rows, windows), dtype=x.dtype)
    rt.launch(_cols.im2col_into, x, kh, kw, sh, sw, ph, pw, out_h, out_w, cols.reshape(-1),
              windows, rows * windows, rt.chunks(n * c, cols.size))
    return cols


def col2im(cols, output_size, kernel_size, stride, padding):
    cols = rt.kernel_array(cols)
    n, rows, windows = cols.shape
    (height, width), (kh, kw), (sh, sw), (ph, pw) = output_size, kernel_size, stride, padding
    c = rows // (kh * kw)
    out_h, out_w = rt.out_hw(height, width, kernel_size, stride, padding)
    grad_x = np.empty((n, c, height, width), dtype=cols.dtype)
    rt.launch(_cols.col2im_from, cols.reshape(-1), windows, rows * windows, kh, kw, sh, sw, ph, pw,
              out_h, out_w, grad_x, rt.chunks(n * c, cols.size))
    return grad_x
