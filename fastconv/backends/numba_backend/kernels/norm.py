"""Batch normalisation (training mode) for the numba backend, parallel over channels.

Arrays arrive as ``(N, C, L)`` views (L = H*W, or 1 for `BatchNorm1d`), validated by
`fastconv.functional`.  Each channel's statistics are sums over its N rows of L
contiguous values, accumulated in float64 whatever the data type; the forward makes
three passes over the channel (mean, centred variance, output) and the backward two,
against NumPy's five and four full-size temporaries.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# reassoc lets LLVM vectorise the reductions; no nnan/ninf, so NaNs propagate.
_PJIT = dict(cache=True, nogil=True, parallel=True, fastmath={"reassoc", "contract"})


@njit(**_PJIT)
def batch_norm_forward(x3, weight, bias, eps, y3, mean, var, n_chunks):
    """y = (x - mean) / sqrt(var + eps) * weight + bias with the batch's mean and
    biased variance per channel, which are also written to ``mean`` / ``var``."""
    n, c, length = x3.shape
    count = n * length
    for chunk in prange(n_chunks):
        for ch in range(c * chunk // n_chunks, c * (chunk + 1) // n_chunks):
            total = 0.0
            for i in range(n):
                row = x3[i, ch]
                for j in range(length):
                    total += row[j]
            m = total / count
            squares = 0.0
            for i in range(n):
                row = x3[i, ch]
                for j in range(length):
                    d = row[j] - m
                    squares += d * d
            v = squares / count
            scale = weight[ch] / np.sqrt(v + eps)
            shift = bias[ch]
            m_t = x3.dtype.type(m)
            scale_t = y3.dtype.type(scale)
            for i in range(n):
                row = x3[i, ch]
                out = y3[i, ch]
                for j in range(length):
                    out[j] = (row[j] - m_t) * scale_t + shift
            mean[ch] = m
            var[ch] = v


@njit(**_PJIT)
def batch_norm_backward(g3, x3, mean, var, weight, eps, gx3, grad_weight, grad_bias, n_chunks):
    """Gradients of `batch_norm_forward` (batch statistics depend on x):
    grad_x = weight * inv_std * (g - mean(g) - x_hat * mean(g * x_hat))."""
    n, c, length = x3.shape
    count = n * length
    for chunk in prange(n_chunks):
        for ch in range(c * chunk // n_chunks, c * (chunk + 1) // n_chunks):
            m = x3.dtype.type(mean[ch])
            inv_std = 1.0 / np.sqrt(var[ch] + eps)
            sum_g = 0.0
            sum_gc = 0.0
            for i in range(n):
                grow = g3[i, ch]
                row = x3[i, ch]
                for j in range(length):
                    sum_g += grow[j]
                    sum_gc += grow[j] * (row[j] - m)
            grad_bias[ch] = sum_g
            grad_weight[ch] = sum_gc * inv_std
            scale = weight[ch] * inv_std
            # grad_x = scale * g + shift + (x - mean) * slope
            scale_t = gx3.dtype.type(scale)
            shift = gx3.dtype.type(-scale * sum_g / count)
            slope = gx3.dtype.type(-scale * inv_std * inv_std * sum_gc / count)
            for i in range(n):
                grow = g3[i, ch]
                row = x3[i, ch]
                out = gx3[i, ch]
                for j in range(length):
                    out[j] = scale_t * grow[j] + shift + (row[j] - m) * slope
