"""Dilated, grouped and transposed convolution composed from a backend's required
kernels: the fallback `fastconv.functional.general_conv` runs for a backend without the
optional general kernels, and the NumPy backend's reference algorithm.

* dilated ``im2col``: the plain ``im2col`` of the dilated kernel's full extent,
  keeping every ``dilation``-th row of each window (``col2im``: the transpose, the
  skipped rows left zero);
* grouped convolution: one batched ``np.matmul`` of the ``(G, C_out/G, C_in/G*kh*kw)``
  weights with the ``(N, G, C_in/G*kh*kw, L)`` columns, no loop over groups;
* transposed convolution: the input gradient of the convolution it transposes,
  ``col2im(W.T @ x)``.

Arguments arrive validated (`fastconv.functional.conv_params`); ``spec`` is a `ConvSpec`.
"""

from __future__ import annotations

import numpy as np


def im2col_dilated(backend, x, kernel_size, stride, padding, dilation):
    kernel = getattr(backend, "im2col_dilated", None)
    if kernel is not None:
        return kernel(x, kernel_size, stride, padding, dilation)
    if dilation == (1, 1):
        return backend.im2col(x, kernel_size, stride, padding)
    (kh, kw), (dh, dw) = kernel_size, dilation
    extent = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    cols = backend.im2col(x, extent, stride, padding)
    n, _, windows = cols.shape
    c = x.shape[1]
    taps = cols.reshape(n, c, extent[0], extent[1], windows)[:, :, ::dh, ::dw]
    return np.ascontiguousarray(taps).reshape(n, c * kh * kw, windows)


def col2im_dilated(backend, cols, output_size, kernel_size, stride, padding, dilation):
    kernel = getattr(backend, "col2im_dilated", None)
    if kernel is not None:
        return kernel(cols, output_size, kernel_size, stride, padding, dilation)
    if dilation == (1, 1):
        return backend.col2im(cols, output_size, kernel_size, stride, padding)
    (kh, kw), (dh, dw) = kernel_size, dilation
    extent = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    n, rows, windows = cols.shape
    c = rows // (kh * kw)
    full = np.zeros((n, c, extent[0], extent[1], windows), dtype=cols.dtype)
    full[:, :, ::dh, ::dw] = cols.reshape(n, c, kh, kw, windows)
    return backend.col2im(full.reshape(n, -1, windows), output_size, extent, stride, padding)


def _grouped_weights(w, groups):
    """``(C_out, C_in/G, kh, kw) -> (G, C_out/G, C_in/G*kh*kw)``."""
    return w.reshape(groups, w.shape[0] // groups, -1)


def conv2d(backend, x, w, b, spec):
    n, c_out = x.shape[0], w.shape[0]
    cols = im2col_dilated(backend, x, w.shape[2:], spec.stride, spec.padding, spec.dilation)
    windows = cols.shape[2]
    y = np.matmul(_grouped_weights(w, spec.groups), cols.reshape(n, spec.groups, -1, windows))
    y = y.reshape(n, c_out, *spec.out_hw)
    if b is not None:
        y += b.reshape(1, c_out, 1, 1)
    return y


def conv2d_backward(backend, grad_y, x, w, spec, input_grad):
    """``(grad_x or None, grad_w, grad_b)``."""
    n, c_out = grad_y.shape[:2]
    groups = spec.groups
    cols = im2col_dilated(backend, x, w.shape[2:], spec.stride, spec.padding, spec.dilation)
    windows = cols.shape[2]
    cols = cols.reshape(n, groups, -1, windows)                       # (N, G, K, L)
    grad_groups = grad_y.reshape(n, groups, c_out // groups, windows)  # (N, G, Og, L)
    grad_w = np.matmul(grad_groups, cols.transpose(0, 1, 3, 2)).sum(axis=0).reshape(w.shape)
    grad_b = grad_y.sum(axis=(0, 2, 3))
    if not input_grad:
        return None, grad_w, grad_b
    grad_cols = np.matmul(_grouped_weights(w, groups).transpose(0, 2, 1), grad_groups)
    grad_x = col2im_dilated(backend, grad_cols.reshape(n, -1, windows), spec.in_hw, w.shape[2:],
                            spec.stride, spec.padding, spec.dilation)
    return grad_x, grad_w, grad_b


def conv_transpose2d(backend, x, w, b, spec):
    """``spec`` is the transposed convolution's conv view (`conv_params.transpose_args`)."""
    n, c_in = x.shape[:2]
    groups = spec.groups
    x = zero_extend(x, spec.out_hw)
    windows = x.shape[2] * x.shape[3]
    # conv weights (C_in, C_out/G, kh, kw) as (G, C_in/G, K): the transpose maps C_in -> K
    weights = _grouped_weights(w, groups).transpose(0, 2, 1)
    cols = np.matmul(weights, x.reshape(n, groups, c_in // groups, windows))
    y = col2im_dilated(backend, cols.reshape(n, -1, windows), spec.in_hw, w.shape[2:],
                       spec.stride, spec.padding, spec.dilation)
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    return y


def zero_extend(x, hw):
    """``x`` zero-padded at the bottom/right to ``hw`` (the convolution's full output
    when ``output_padding >= stride`` leaves it rows the input does not have)."""
    if tuple(x.shape[2:]) == tuple(hw):
        return x
    out = np.zeros((*x.shape[:2], *hw), dtype=x.dtype)
    out[:, :, :x.shape[2], :x.shape[3]] = x
    return out
