"""Unfold and fold: `im2col` and `col2im` (``F.unfold`` / ``F.fold``), plain or dilated.

A plain call (``dilation`` 1) runs the backend's ``im2col`` / ``col2im``; a dilated
one its optional dilated kernel, or the composition in `fastconv.functional.compose`.
"""

from __future__ import annotations

import numpy as np

from fastconv.backends import get_backend
from fastconv.functional import compose, conv_params
from fastconv.functional.arguments import check_fits_memory, float_array, output_hw, padded_fits, pair


def _window_args(in_hw, kernel_size, stride, padding, dilation, what):
    """``(kernel_size, stride, padding, dilation, out_hw)``, normalised; ``dilation``
    is None for a plain call."""
    kernel_size = pair(kernel_size, "kernel_size", 1)
    stride = pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    if conv_params.is_default(dilation):
        return kernel_size, stride, padding, None, output_hw(in_hw, kernel_size, stride, padding, what)
    dilation = pair(dilation, "dilation", 1)
    out_hw = conv_params.output_hw(in_hw, kernel_size, stride, padding, dilation, what)
    return kernel_size, stride, padding, dilation, out_hw


def im2col(x, kernel_size, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Unfold sliding windows: ``(N, C, H, W) -> (N, C*kh*kw, out_h*out_w)``.

    Row ``c*kh*kw + i*kw + j`` holds input channel ``c`` at window offset ``(i, j)``,
    exactly as `torch.nn.functional.unfold`.  Report 000's 'sliding' mode is
    ``stride=1``; its 'distinct' mode is ``stride=kernel_size``.  With ``dilation`` the
    window taps are ``dilation`` apart, as in ``F.unfold``.
    """
    x = float_array(x, "x", 4, "(N, C, H, W)")
    kernel_size, stride, padding, dilation, (out_h, out_w) = _window_args(
        x.shape[2:], kernel_size, stride, padding, dilation, "im2col")
    padded_fits("im2col", x.shape, padding, x.itemsize)
    n, c = x.shape[:2]
    check_fits_memory("im2col", "output", (n, c * kernel_size[0] * kernel_size[1], out_h * out_w),
                      x.itemsize, "kernel_size, stride and padding")
    if dilation is None:
        return get_backend().im2col(x, kernel_size, stride, padding)
    return compose.im2col_dilated(get_backend(), x, kernel_size, stride, padding, dilation)


def col2im(cols, output_size, kernel_size, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Fold columns back to images, summing overlaps (`torch.nn.functional.fold`).

    ``cols`` is ``(N, C*kh*kw, L)``; ``output_size`` is the image's ``(H, W)``.
    """
    cols = float_array(cols, "cols", 3, "(N, C*kh*kw, L)")
    height, width = pair(output_size, "output_size", 1)
    kernel_size, stride, padding, dilation, (out_h, out_w) = _window_args(
        (height, width), kernel_size, stride, padding, dilation, "col2im")
    window = kernel_size[0] * kernel_size[1]
    if cols.shape[1] % window:
        raise ValueError(
            f"cols.shape[1] = {cols.shape[1]} must be a multiple of kh*kw = {window}"
        )
    if cols.shape[2] != out_h * out_w:
        raise ValueError(
            f"cols.shape[2] = {cols.shape[2]} must equal the number of windows "
            f"out_h*out_w = {out_h}*{out_w} = {out_h * out_w} for output_size {(height, width)}"
        )
    shape = (cols.shape[0], cols.shape[1] // window, height, width)
    check_fits_memory("col2im", "output", shape, cols.itemsize, "output_size")
    padded_fits("col2im", shape, padding, cols.itemsize)
    if dilation is None:
        return get_backend().col2im(cols, (height, width), kernel_size, stride, padding)
    return compose.col2im_dilated(get_backend(), cols, (height, width), kernel_size, stride,
                                  padding, dilation)
