"""Plain Python loop implementations of the kernel interface, straight from the
definitions, used as the ground truth for small shapes.  Slow on purpose: no
vectorisation that could share a bug with the backends."""

from __future__ import annotations

import math

import numpy as np


def out_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def padded_value(x, n, c, h, w, fill=0.0):
    """x[n, c, h, w], or `fill` when (h, w) lies in the padding."""
    if 0 <= h < x.shape[2] and 0 <= w < x.shape[3]:
        return x[n, c, h, w]
    return fill


def conv2d(x, w, b, stride, padding):
    n_batch, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    out_h, out_w = out_size(height, kh, sh, ph), out_size(width, kw, sw, pw)
    y = np.zeros((n_batch, c_out, out_h, out_w), dtype=np.float64)
    for n in range(n_batch):
        for o in range(c_out):
            for i in range(out_h):
                for j in range(out_w):
                    total = 0.0 if b is None else float(b[o])
                    for c in range(c_in):
                        for di in range(kh):
                            for dj in range(kw):
                                total += w[o, c, di, dj] * padded_value(
                                    x, n, c, i * sh + di - ph, j * sw + dj - pw)
                    y[n, o, i, j] = total
    return y


def conv2d_backward(grad_y, x, w, stride, padding):
    """Gradients by the chain rule: every output element's partials, accumulated."""
    n_batch, c_in, height, width = x.shape
    c_out, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    grad_x = np.zeros(x.shape)
    grad_w = np.zeros(w.shape)
    grad_b = np.zeros(c_out)
    for n in range(n_batch):
        for o in range(c_out):
            for i in range(grad_y.shape[2]):
                for j in range(grad_y.shape[3]):
                    g = grad_y[n, o, i, j]
                    grad_b[o] += g
                    for c in range(c_in):
                        for di in range(kh):
                            for dj in range(kw):
                                h, v = i * sh + di - ph, j * sw + dj - pw
                                if 0 <= h < height and 0 <= v < width:
                                    grad_x[n, c, h, v] += g * w[o, c, di, dj]
                                    grad_w[o, c, di, dj] += g * x[n, c, h, v]
    return grad_x, grad_w, grad_b


def im2col(x, kernel_size, stride, padding):
    n_batch, channels, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    out_h, out_w = out_size(height, kh, sh, ph), out_size(width, kw, sw, pw)
    cols = np.zeros((n_batch, channels * kh * kw, out_h * out_w))
    for n in range(n_batch):
        for c in range(channels):
            for di in range(kh):
                for dj in range(kw):
                    for i in range(out_h):
                        for j in range(out_w):
                            cols[n, (c * kh + di) * kw + dj, i * out_w + j] = padded_value(
                                x, n, c, i * sh + di - ph, j * sw + dj - pw)
    return cols


def col2im(cols, output_size, kernel_size, stride, padding):
    (height, width), (kh, kw), (sh, sw), (ph, pw) = output_size, kernel_size, stride, padding
    n_batch = cols.shape[0]
    channels = cols.shape[1] // (kh * kw)
    out_w = out_size(width, kw, sw, pw)
    out_h = out_size(height, kh, sh, ph)
    x = np.zeros((n_batch, channels, height, width))
    for n in range(n_batch):
        for c in range(channels):
            for di in range(kh):
                for dj in range(kw):
                    for i in range(out_h):
                        for j in range(out_w):
                            h, v = i * sh + di - ph, j * sw + dj - pw
                            if 0 <= h < height and 0 <= v < width:
                                x[n, c, h, v] += cols[n, (c * kh + di) * kw + dj, i * out_w + j]
    return x


def _pool_windows(shape, kernel_size, stride, padding):
    """Yield (n, c, i, j, [(h, w), ...]) for every window, positions in row-major order."""
    n_batch, channels, height, width = shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    for n in range(n_batch):
        for c in range(channels):
            for i in range(out_size(height, kh, sh, ph)):
                for j in range(out_size(width, kw, sw, pw)):
                    cells = [(i * sh + di - ph, j * sw + dj - pw) for di in range(kh) for dj in range(kw)]
                    yield n, c, i, j, cells


def _pool_out_shape(shape, kernel_size, stride, padding):
    return (*shape[:2], *(out_size(s, k, st, p) for s, k, st, p in zip(shape[2:], kernel_size, stride, padding)))


def avg_pool2d(x, kernel_size, stride, padding):
    y = np.zeros(_pool_out_shape(x.shape, kernel_size, stride, padding))
    area = kernel_size[0] * kernel_size[1]
    for n, c, i, j, cells in _pool_windows(x.shape, kernel_size, stride, padding):
        y[n, c, i, j] = sum(padded_value(x, n, c, h, w) for h, w in cells) / area
    return y


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding):
    grad_x = np.zeros(x_shape)
    area = kernel_size[0] * kernel_size[1]
    for n, c, i, j, cells in _pool_windows(x_shape, kernel_size, stride, padding):
        for h, w in cells:
            if 0 <= h < x_shape[2] and 0 <= w < x_shape[3]:
                grad_x[n, c, h, w] += grad_y[n, c, i, j] / area
    return grad_x


def max_pool2d(x, kernel_size, stride, padding):
    out_shape = _pool_out_shape(x.shape, kernel_size, stride, padding)
    y = np.zeros(out_shape)
    indices = np.zeros(out_shape, dtype=np.int64)
    for n, c, i, j, cells in _pool_windows(x.shape, kernel_size, stride, padding):
        best, best_index = -math.inf, -1
        for h, w in cells:
            value = padded_value(x, n, c, h, w, fill=-math.inf)
            if value > best:  # strict: the first maximum wins ties
                best, best_index = value, h * x.shape[3] + w
        y[n, c, i, j], indices[n, c, i, j] = best, best_index
    return y, indices


def max_pool2d_backward(grad_y, indices, x_shape):
    grad_x = np.zeros((*x_shape[:2], x_shape[2] * x_shape[3]))
    for n in range(grad_y.shape[0]):
        for c in range(grad_y.shape[1]):
            for i in range(grad_y.shape[2]):
                for j in range(grad_y.shape[3]):
                    grad_x[n, c, indices[n, c, i, j]] += grad_y[n, c, i, j]
    return grad_x.reshape(x_shape)


def softmax_cross_entropy(logits, target):
    n_rows, n_classes = logits.shape
    loss = 0.0
    grad = np.zeros(logits.shape)
    for r in range(n_rows):
        row = [float(v) for v in logits[r]]
        top = max(row)
        log_norm = top + math.log(sum(math.exp(v - top) for v in row))
        for k in range(n_classes):
            loss -= target[r, k] * (row[k] - log_norm)
            grad[r, k] = (math.exp(row[k] - log_norm) - target[r, k]) / n_rows
    return loss / n_rows, grad


def batch_norm(x, weight, bias, eps):
    """Per channel c of axis 1: the mean and biased variance of every value in it."""
    y = np.zeros(x.shape)
    mean, var = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for c in range(x.shape[1]):
        values = [float(v) for v in x[:, c].ravel()]
        mean[c] = math.fsum(values) / len(values)
        var[c] = math.fsum((v - mean[c]) ** 2 for v in values) / len(values)
        y[:, c] = (x[:, c] - mean[c]) / math.sqrt(var[c] + eps) * weight[c] + bias[c]
    return y, mean, var


def batch_norm_backward(grad_y, x, weight, eps):
    """By the chain rule through mean and variance, one channel at a time."""
    grad_x = np.zeros(x.shape)
    grad_w, grad_b = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for c in range(x.shape[1]):
        xc = x[:, c].astype(np.float64)
        g = grad_y[:, c].astype(np.float64)
        count = xc.size
        mean = xc.sum() / count
        var = ((xc - mean) ** 2).sum() / count
        inv_std = 1.0 / math.sqrt(var + eps)
        x_hat = (xc - mean) * inv_std
        grad_b[c] = g.sum()
        grad_w[c] = (g * x_hat).sum()
        grad_x_hat = g * weight[c]
        grad_var = (grad_x_hat * (xc - mean)).sum() * -0.5 * inv_std ** 3
        grad_mean = -grad_x_hat.sum() * inv_std + grad_var * (-2.0 * (xc - mean)).sum() / count
        grad_x[:, c] = grad_x_hat * inv_std + grad_var * 2.0 * (xc - mean) / count + grad_mean / count
    return grad_x, grad_w, grad_b


# --------------------------------------------------------------------------- general convolution
# Dilated / grouped convolution, dilated unfold and transposed convolution, each
# straight from its definition (PyTorch's docs): output channel o of group
# g = o // (C_out/G) sees input channels g*C_in/G ... (g+1)*C_in/G - 1 only, and tap
# (di, dj) of a window reads the pixel dilation*(di, dj) away from its corner.
def dilated_out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def conv2d_general(x, w, b, stride, padding, dilation, groups):
    n_batch, c_in, height, width = x.shape
    c_out, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    og = c_out // groups
    out_h, out_w = dilated_out_size(height, kh, sh, ph, dh), dilated_out_size(width, kw, sw, pw, dw)
    y = np.zeros((n_batch, c_out, out_h, out_w))
    for n in range(n_batch):
        for o in range(c_out):
            g = o // og
            for i in range(out_h):
                for j in range(out_w):
                    total = 0.0 if b is None else float(b[o])
                    for c in range(cg):
                        for di in range(kh):
                            for dj in range(kw):
                                total += w[o, c, di, dj] * padded_value(
                                    x, n, g * cg + c, i * sh + di * dh - ph, j * sw + dj * dw - pw)
                    y[n, o, i, j] = total
    return y


def conv2d_general_backward(grad_y, x, w, stride, padding, dilation, groups):
    n_batch, c_in, height, width = x.shape
    c_out, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    og = c_out // groups
    grad_x, grad_w, grad_b = np.zeros(x.shape), np.zeros(w.shape), np.zeros(c_out)
    for n in range(n_batch):
        for o in range(c_out):
            for i in range(grad_y.shape[2]):
                for j in range(grad_y.shape[3]):
                    g = grad_y[n, o, i, j]
                    grad_b[o] += g
                    for c in range(cg):
                        ci = (o // og) * cg + c
                        for di in range(kh):
                            for dj in range(kw):
                                h, v = i * sh + di * dh - ph, j * sw + dj * dw - pw
                                if 0 <= h < height and 0 <= v < width:
                                    grad_x[n, ci, h, v] += g * w[o, c, di, dj]
                                    grad_w[o, c, di, dj] += g * x[n, ci, h, v]
    return grad_x, grad_w, grad_b


def im2col_dilated(x, kernel_size, stride, padding, dilation):
    n_batch, channels, height, width = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    out_h, out_w = dilated_out_size(height, kh, sh, ph, dh), dilated_out_size(width, kw, sw, pw, dw)
    cols = np.zeros((n_batch, channels * kh * kw, out_h * out_w))
    for n in range(n_batch):
        for c in range(channels):
            for di in range(kh):
                for dj in range(kw):
                    for i in range(out_h):
                        for j in range(out_w):
                            cols[n, (c * kh + di) * kw + dj, i * out_w + j] = padded_value(
                                x, n, c, i * sh + di * dh - ph, j * sw + dj * dw - pw)
    return cols


def col2im_dilated(cols, output_size, kernel_size, stride, padding, dilation):
    (height, width), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = output_size, kernel_size, stride, padding, dilation
    n_batch = cols.shape[0]
    channels = cols.shape[1] // (kh * kw)
    out_h, out_w = dilated_out_size(height, kh, sh, ph, dh), dilated_out_size(width, kw, sw, pw, dw)
    x = np.zeros((n_batch, channels, height, width))
    for n in range(n_batch):
        for c in range(channels):
            for di in range(kh):
                for dj in range(kw):
                    for i in range(out_h):
                        for j in range(out_w):
                            h, v = i * sh + di * dh - ph, j * sw + dj * dw - pw
                            if 0 <= h < height and 0 <= v < width:
                                x[n, c, h, v] += cols[n, (c * kh + di) * kw + dj, i * out_w + j]
    return x


def conv_transpose_out_size(size, k, s, p, op, d):
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


def _transpose_taps(x_shape, w_shape, stride, padding, output_padding, dilation, groups):
    """Yield (n, ci, i, j, o, oc, di, dj, h, v): input x[n, ci, i, j] times
    w[ci, oc, di, dj] lands on output y[n, o, h, v] (only in-range (h, v))."""
    n_batch, c_in, height, width = x_shape
    _, og, kh, kw = w_shape
    cg = c_in // groups
    out_h = conv_transpose_out_size(height, kh, stride[0], padding[0], output_padding[0], dilation[0])
    out_w = conv_transpose_out_size(width, kw, stride[1], padding[1], output_padding[1], dilation[1])
    for n in range(n_batch):
        for ci in range(c_in):
            for i in range(height):
                for j in range(width):
                    for oc in range(og):
                        for di in range(kh):
                            for dj in range(kw):
                                h = i * stride[0] - padding[0] + di * dilation[0]
                                v = j * stride[1] - padding[1] + dj * dilation[1]
                                if 0 <= h < out_h and 0 <= v < out_w:
                                    yield n, ci, i, j, (ci // cg) * og + oc, oc, di, dj, h, v


def conv_transpose2d(x, w, b, stride, padding, output_padding, dilation, groups):
    """Every input pixel scatters ``x * w`` onto the output (PyTorch's definition)."""
    c_out = w.shape[1] * groups
    out_h = conv_transpose_out_size(x.shape[2], w.shape[2], stride[0], padding[0], output_padding[0], dilation[0])
    out_w = conv_transpose_out_size(x.shape[3], w.shape[3], stride[1], padding[1], output_padding[1], dilation[1])
    y = np.zeros((x.shape[0], c_out, out_h, out_w))
    if b is not None:
        y += np.asarray(b, dtype=np.float64).reshape(1, -1, 1, 1)
    for n, ci, i, j, o, oc, di, dj, h, v in _transpose_taps(
            x.shape, w.shape, stride, padding, output_padding, dilation, groups):
        y[n, o, h, v] += x[n, ci, i, j] * w[ci, oc, di, dj]
    return y


def conv_transpose2d_backward(grad_y, x, w, stride, padding, output_padding, dilation, groups):
    grad_x, grad_w = np.zeros(x.shape), np.zeros(w.shape)
    for n, ci, i, j, o, oc, di, dj, h, v in _transpose_taps(
            x.shape, w.shape, stride, padding, output_padding, dilation, groups):
        grad_x[n, ci, i, j] += grad_y[n, o, h, v] * w[ci, oc, di, dj]
        grad_w[ci, oc, di, dj] += grad_y[n, o, h, v] * x[n, ci, i, j]
    return grad_x, grad_w, grad_y.sum(axis=(0, 2, 3), dtype=np.float64)
