"""Dilated stride-1 convolution as an undilated one on sub-grids ("space to batch").

With dilation ``(dh, dw)`` and stride 1, output pixel ``(h, w)`` meets only the
(padded) input pixels whose row is congruent to ``h`` modulo ``dh`` and whose column
to ``w`` modulo ``dw``.  Split the padded input into its ``dh*dw`` sub-grids (every
``dh``-th row from row ``r``, every ``dw``-th column from column ``s``), stack them on
the batch axis, and the dilated convolution is an ordinary, unpadded one of the same
kernel on that batch; its outputs interleave back.  So the stride-1 engine (Winograd,
direct, `blocked`, the GEMMs, each autotuned) runs dilated layers, for two copies of
the input and one of the output -- the atrous convolution of DeepLab, TensorFlow's
``space_to_batch``.  When the output size is not a multiple of the dilation, the
sub-grids are padded to one size with zeros and the extra outputs dropped.

The backward is the same change of variables: ``grad_y`` goes to sub-grids (zeros
for the dropped outputs, so they add nothing), the undilated backward runs on the
batch, ``grad_w`` and ``grad_b`` are already summed over it, and ``grad_x`` comes back
from the sub-grids with the padding cut off.  Arguments arrive validated.
"""

from __future__ import annotations

import numpy as np

from fastconv.backends.numba_backend import conv

_ONE, _ZERO = (1, 1), (0, 0)


def applies(stride, dilation, groups) -> bool:
    """A dilated, stride-1, ungrouped convolution: what this module decomposes."""
    return stride == _ONE and dilation != _ONE and groups == 1


def _geometry(in_hw, kernel, padding, dilation):
    """(sub-grid output size, sub-grid input size, full output size) per axis."""
    out_hw = tuple(size + 2 * p - d * (k - 1) for size, k, p, d in zip(in_hw, kernel, padding, dilation))
    sub_out = tuple(-(-size // d) for size, d in zip(out_hw, dilation))
    sub_in = tuple(size + k - 1 for size, k in zip(sub_out, kernel))
    return sub_out, sub_in, out_hw


def _to_grid(a, offset, dilation, sub_hw):
    """``a`` placed at ``offset`` in zeros of ``sub_hw * dilation`` rows and columns
    (`_geometry` makes them cover it), as ``(N*dh*dw, C, *sub_hw)`` sub-grids."""
    n, c, height, width = a.shape
    (dh, dw), (sh, sw) = dilation, sub_hw
    padded = np.zeros((n, c, sh * dh, sw * dw), dtype=a.dtype)
    padded[:, :, offset[0]:offset[0] + height, offset[1]:offset[1] + width] = a
    grid = padded.reshape(n, c, sh, dh, sw, dw).transpose(0, 3, 5, 1, 2, 4)
    return np.ascontiguousarray(grid).reshape(n * dh * dw, c, sh, sw)


def _from_grid(grid, n, dilation, offset, out_hw):
    """The inverse of `_to_grid`: the ``(N, C, *out_hw)`` window at ``offset``."""
    (dh, dw), (_, c, sh, sw) = dilation, grid.shape
    full = grid.reshape(n, dh, dw, c, sh, sw).transpose(0, 3, 4, 1, 5, 2).reshape(n, c, sh * dh, sw * dw)
    return np.ascontiguousarray(full[:, :, offset[0]:offset[0] + out_hw[0], offset[1]:offset[1] + out_hw[1]])


def forward(x, w, b, padding, dilation):
    sub_out, sub_in, out_hw = _geometry(x.shape[2:], w.shape[2:], padding, dilation)
    y = conv.conv2d(_to_grid(x, padding, dilation, sub_in), w, b, _ONE, _ZERO)
    return _from_grid(y, x.shape[0], dilation, _ZERO, out_hw)


def backward(grad_y, x, w, padding, dilation, input_grad):
    sub_out, sub_in, _ = _geometry(x.shape[2:], w.shape[2:], padding, dilation)
    x_grid = _to_grid(x, padding, dilation, sub_in)
    grad_grid = _to_grid(grad_y, _ZERO, dilation, sub_out)
    if not input_grad:
        return (None, *conv.conv2d_backward_weights(grad_grid, x_grid, w, _ONE, _ZERO))
    grad_x_grid, grad_w, grad_b = conv.conv2d_backward(grad_grid, x_grid, w, _ONE, _ZERO)
    return _from_grid(grad_x_grid, x.shape[0], dilation, padding, x.shape[2:]), grad_w, grad_b
