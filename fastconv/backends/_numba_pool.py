"""Pooling and softmax cross-entropy kernels for the numba backend.

Pooling is parallel over (image, channel) planes: every thread owns whole input and
output planes, so the backward scatters (overlapping windows, max-pool routing) are
race-free without atomics.  Windows are clipped to the input instead of padding it:
average pooling still divides by ``kh*kw`` (zero padding counted, PyTorch's
default) and max pooling never selects padding (equivalent to -inf padding).

All functions trust their caller (`numba_backend`): arrays C-contiguous, sizes
consistent, max-pool indices already checked to lie in ``[0, H*W)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(**_PJIT)
def avg_pool2d_forward(x, kh, kw, sh, sw, ph, pw, out, n_chunks):
    n, c, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    count = kh * kw
    items = n * c
    zero = x.dtype.type(0)      # typed: float32 sums stay float32
    for chunk in prange(n_chunks):
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // c
            ch = item - img * c
            plane = x[img, ch]
            dst = out[img, ch]
            for oh in range(out_h):
                r0 = max(oh * sh - ph, 0)
                r1 = min(oh * sh - ph + kh, height)
                for ow in range(out_w):
                    c0 = max(ow * sw - pw, 0)
                    c1 = min(ow * sw - pw + kw, width)
                    total = zero
                    for r in range(r0, r1):
                        for col in range(c0, c1):
                            total += plane[r, col]
                    dst[oh, ow] = total / count


@njit(**_PJIT)
def avg_pool2d_backward(grad_y, kh, kw, sh, sw, ph, pw, grad_x, n_chunks):
    n, c, height, width = grad_x.shape
    out_h, out_w = grad_y.shape[2], grad_y.shape[3]
    count = kh * kw
    items = n * c
    for chunk in prange(n_chunks):
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // c
            ch = item - img * c
            dst = grad_x[img, ch]
            src = grad_y[img, ch]
            dst[:, :] = 0
            for oh in range(out_h):
                r0 = max(oh * sh - ph, 0)
                r1 = min(oh * sh - ph + kh, height)
                for ow in range(out_w):
                    c0 = max(ow * sw - pw, 0)
                    c1 = min(ow * sw - pw + kw, width)
                    share = src[oh, ow] / count
                    for r in range(r0, r1):
                        for col in range(c0, c1):
                            dst[r, col] += share


@njit(**_PJIT)
def max_pool2d_forward(x, kh, kw, sh, sw, ph, pw, out, indices, n_chunks):
    """Max over each clipped window; ties (and NaNs) go to the first in row-major order."""
    n, c, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    items = n * c
    for chunk in prange(n_chunks):
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // c
            ch = item - img * c
            plane = x[img, ch]
            dst = out[img, ch]
            idx = indices[img, ch]
            for oh in range(out_h):
                r0 = max(oh * sh - ph, 0)
                r1 = min(oh * sh - ph + kh, height)
                for ow in range(out_w):
                    c0 = max(ow * sw - pw, 0)
                    c1 = min(ow * sw - pw + kw, width)
                    best = plane[r0, c0]
                    where = r0 * width + c0
                    for r in range(r0, r1):
                        for col in range(c0, c1):
                            v = plane[r, col]
                            # NaN wins over numbers and the first NaN stays, as np.argmax
                            if v > best or (v != v and best == best):
                                best = v
                                where = r * width + col
                    dst[oh, ow] = best
                    idx[oh, ow] = where


@njit(**_PJIT)
def max_pool2d_backward(grad_y, indices, grad_x, n_chunks):
    """grad_x (N, C, H*W) += grad_y routed to each window's argmax (indices in range)."""
    n, c, plane = grad_x.shape
    outs = grad_y.shape[2]
    items = n * c
    for chunk in prange(n_chunks):
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // c
            ch = item - img * c
            dst = grad_x[img, ch]
            src = grad_y[img, ch]
            idx = indices[img, ch]
            dst[:] = 0
            for o in range(outs):
                dst[idx[o]] += src[o]


@njit(**_JIT)
def softmax_cross_entropy(logits, target, grad):
    """Mean cross-entropy of softmax(logits) against target rows; grad written in place.

    Max-shifted log-sum-exp, so no overflow; same formula as the NumPy reference
    (``grad = (exp(log_probs) - target) / N``).  Serial: even 64 x 1000 logits are
    far below the cost of a parallel launch.
    """
    n, k = logits.shape
    loss = 0.0
    for row in range(n):
        z = logits[row]
        top = z[0]
        for j in range(1, k):
            if z[j] > top:
                top = z[j]
        total = 0.0
        for j in range(k):
            total += np.exp(z[j] - top)
        log_norm = np.log(total)
        t = target[row]
        g = grad[row]
        for j in range(k):
            log_p = (z[j] - top) - log_norm
            loss -= t[j] * log_p
            g[j] = (np.exp(log_p) - t[j]) / n
    return loss / n
