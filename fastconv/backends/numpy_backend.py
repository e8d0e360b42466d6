"""The reference backend: the course reports' NumPy algorithms, kept readable, not tuned.

im2col gathers windows with index arrays (report 000's ``_im2col_2d_idx``), col2im
scatter-adds them back with ``np.add.at``, convolution is im2col + matmul, average
pooling reshapes when windows tile the input, and the softmax is max-shifted so it
neither overflows nor underflows.  This is the slow baseline the benchmarks compare
against.  Arguments arrive validated and normalised by `fastconv.functional`.
"""

from __future__ import annotations

import sys

import numpy as np

name = "numpy"


def _window_indices(height, width, kernel_size, stride, padding, dilation=(1, 1)):
    """Row/column index arrays of shape ``(kh*kw, out_h*out_w)`` into the padded image.

    Entry ``[i*kw + j, oh*out_w + ow]`` is the padded-image position that window
    ``(oh, ow)`` reads at offset ``(i, j)`` (``dilation * (i, j)`` pixels from its corner).
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    offset_rows = np.repeat(dh * np.arange(kh), kw)
    offset_cols = np.tile(dw * np.arange(kw), kh)
    start_rows = np.repeat(sh * np.arange(out_h), out_w)
    start_cols = np.tile(sw * np.arange(out_w), out_h)
    rows = offset_rows[:, None] + start_rows[None, :]
    cols = offset_cols[:, None] + start_cols[None, :]
    return rows, cols, (out_h, out_w)


def _windows(x, kernel_size, stride, padding, pad_value=0.0, dilation=(1, 1)):
    """All windows of x: ``(N, C, kh*kw, out_h*out_w)``, plus the index arrays."""
    (ph, pw) = padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    rows, cols, out_hw = _window_indices(x.shape[2], x.shape[3], kernel_size, stride, padding, dilation)
    return padded[:, :, rows, cols], rows, cols, out_hw


def im2col(x, kernel_size, stride, padding, dilation=(1, 1)):
    n, c = x.shape[:2]
    windows, _, _, _ = _windows(x, kernel_size, stride, padding, dilation=dilation)
    return windows.reshape(n, c * kernel_size[0] * kernel_size[1], -1)


def col2im(cols, output_size, kernel_size, stride, padding, dilation=(1, 1)):
    (height, width), (ph, pw) = output_size, padding
    n = cols.shape[0]
    window = kernel_size[0] * kernel_size[1]
    c = cols.shape[1] // window
    rows_idx, cols_idx, _ = _window_indices(height, width, kernel_size, stride, padding, dilation)
    padded = np.zeros((n, c, height + 2 * ph, width + 2 * pw), dtype=cols.dtype)
    # add.at (unbuffered) sums every window's contribution where windows overlap.
    np.add.at(padded, (slice(None), slice(None), rows_idx, cols_idx),
              cols.reshape(n, c, window, -1))
    return padded[:, :, ph:ph + height, pw:pw + width].copy()


# Optional kernels (see `fastconv.backends`): the dilated unfold is the same gather
# with spread-out taps.  Grouped, dilated and transposed convolutions are composed
# from it by `fastconv.functional.compose` (one batched matmul over the groups): that is
# this backend's reference algorithm for them.
im2col_dilated = im2col
col2im_dilated = col2im


def conv2d(x, w, b, stride, padding):
    n = x.shape[0]
    c_out = w.shape[0]
    cols = im2col(x, w.shape[2:], stride, padding)              # (N, C_in*kh*kw, L)
    y = np.matmul(w.reshape(c_out, -1), cols)                    # (N, C_out, L)
    if b is not None:
        y += b.reshape(1, c_out, 1)
    _, _, (out_h, out_w) = _window_indices(x.shape[2], x.shape[3], w.shape[2:], stride, padding)
    return y.reshape(n, c_out, out_h, out_w)


def conv2d_backward(grad_y, x, w, stride, padding):
    n, c_out = grad_y.shape[:2]
    cols = im2col(x, w.shape[2:], stride, padding)               # (N, C_in*kh*kw, L)
    grad_y_flat = grad_y.reshape(n, c_out, -1)                   # (N, C_out, L)
    grad_w = np.matmul(grad_y_flat, cols.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
    grad_b = grad_y_flat.sum(axis=(0, 2))
    grad_cols = np.matmul(w.reshape(c_out, -1).T, grad_y_flat)   # (N, C_in*kh*kw, L)
    grad_x = col2im(grad_cols, x.shape[2:], w.shape[2:], stride, padding)
    return grad_x, grad_w, grad_b


def _tiles(kernel_size, stride, padding):
    """True when pooling windows tile the input without overlap or padding, so a
    reshape does the pooling (report 000's non-overlapping average pooling)."""
    return tuple(stride) == tuple(kernel_size) and tuple(padding) == (0, 0)


def avg_pool2d(x, kernel_size, stride, padding):
    n, c, height, width = x.shape
    kh, kw = kernel_size
    if _tiles(kernel_size, stride, padding):
        out_h, out_w = height // kh, width // kw
        blocks = x[:, :, :out_h * kh, :out_w * kw].reshape(n, c, out_h, kh, out_w, kw)
        return blocks.mean(axis=(3, 5))
    windows, _, _, (out_h, out_w) = _windows(x, kernel_size, stride, padding)
    return windows.mean(axis=2).reshape(n, c, out_h, out_w)


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding):
    n, c, height, width = x_shape
    kh, kw = kernel_size
    share = grad_y / (kh * kw)
    if _tiles(kernel_size, stride, padding):
        out_h, out_w = grad_y.shape[2:]
        grad_x = np.zeros(x_shape, dtype=grad_y.dtype)
        blocks = np.broadcast_to(share[:, :, :, None, :, None], (n, c, out_h, kh, out_w, kw))
        grad_x[:, :, :out_h * kh, :out_w * kw] = blocks.reshape(n, c, out_h * kh, out_w * kw)
        return grad_x
    grad_cols = np.broadcast_to(share.reshape(n, c, 1, -1), (n, c, kh * kw, share[0, 0].size))
    return col2im(grad_cols.reshape(n, c * kh * kw, -1), (height, width), kernel_size, stride, padding)


def max_pool2d(x, kernel_size, stride, padding):
    n, c, height, width = x.shape
    windows, rows, cols, (out_h, out_w) = _windows(x, kernel_size, stride, padding, -np.inf)
    best = windows.argmax(axis=2)                                # first maximum wins ties
    y = np.take_along_axis(windows, best[:, :, None, :], axis=2)[:, :, 0, :]
    # A window of real -inf values must not point into the padding: take its
    # first real position, as PyTorch does.
    inside = ((rows >= padding[0]) & (rows < height + padding[0])
              & (cols >= padding[1]) & (cols < width + padding[1]))
    best = np.where(y == -np.inf, inside.argmax(axis=0), best)
    positions = np.arange(out_h * out_w)
    in_rows = rows[best, positions] - padding[0]
    in_cols = cols[best, positions] - padding[1]
    indices = (in_rows * width + in_cols).astype(np.int64)
    return y.reshape(n, c, out_h, out_w), indices.reshape(n, c, out_h, out_w)


def max_pool2d_backward(grad_y, indices, x_shape, kernel_size, stride, padding):
    n, c, height, width = x_shape
    grad_x = np.zeros((n, c, height * width), dtype=grad_y.dtype)
    batch = np.arange(n)[:, None, None]
    channel = np.arange(c)[None, :, None]
    np.add.at(grad_x, (batch, channel, indices.reshape(n, c, -1)), grad_y.reshape(n, c, -1))
    return grad_x.reshape(x_shape)


def softmax_cross_entropy(logits, target):
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)         # no overflow in exp
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    # 0 * log p counts as 0 (a -inf logit off the target: log p = -inf), as PyTorch
    # does for class-index labels; multiplying would give NaN.
    terms = np.multiply(target, log_probs, out=np.zeros_like(log_probs), where=target != 0)
    loss = -terms.sum() / n
    grad = (np.exp(log_probs) - target) / n
    return loss, grad.astype(logits.dtype, copy=False)


BACKEND = sys.modules[__name__]
