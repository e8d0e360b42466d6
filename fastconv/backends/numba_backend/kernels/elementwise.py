"""Elementwise kernels over flat arrays, one contiguous slice per chunk: ReLU, clamp,
their gradients from the output, the sum of two arrays, and a per-channel affine
map (rows of channel planes).  One pass and one output
array each; NumPy's versions of the backward passes make a mask array first, and run
on one thread.  Each chunk loops over slices (indices from 0, provably non-negative),
which is what lets LLVM drop numba's negative-index handling and vectorise.

Every function trusts its caller (`numba_backend.elementwise`): flat C-contiguous
arrays of one dtype and length (planes of one length, a value per channel).
"""

from __future__ import annotations

from numba import njit, prange

_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(**_PJIT)
def relu_forward(x, out, n_chunks):
    zero = x.dtype.type(0)
    n = x.shape[0]
    for chunk in prange(n_chunks):
        lo, hi = n * chunk // n_chunks, n * (chunk + 1) // n_chunks
        src, dst = x[lo:hi], out[lo:hi]
        for i in range(src.shape[0]):
            v = src[i]
            dst[i] = zero if v < zero else v          # NaN stays NaN, as np.maximum
    return out


# The gradients multiply by a 0/1 mask, as the NumPy reference does (an infinite
# gradient where the mask is 0 gives NaN, not 0).
@njit(**_PJIT)
def relu_backward(grad_y, y, out, n_chunks):
    zero = y.dtype.type(0)
    one = y.dtype.type(1)
    n = y.shape[0]
    for chunk in prange(n_chunks):
        lo, hi = n * chunk // n_chunks, n * (chunk + 1) // n_chunks
        g, v, dst = grad_y[lo:hi], y[lo:hi], out[lo:hi]
        for i in range(g.shape[0]):
            dst[i] = g[i] * (one if v[i] > zero else zero)
    return out


@njit(**_PJIT)
def clamp_forward(x, low, high, out, n_chunks):
    lo_value = x.dtype.type(low)
    hi_value = x.dtype.type(high)
    n = x.shape[0]
    for chunk in prange(n_chunks):
        lo, hi = n * chunk // n_chunks, n * (chunk + 1) // n_chunks
        src, dst = x[lo:hi], out[lo:hi]
        for i in range(src.shape[0]):
            v = src[i]
            dst[i] = lo_value if v < lo_value else (hi_value if v > hi_value else v)
    return out


@njit(**_PJIT)
def clamp_backward(grad_y, y, low, high, out, n_chunks):
    zero = y.dtype.type(0)
    one = y.dtype.type(1)
    lo_value = y.dtype.type(low)
    hi_value = y.dtype.type(high)
    n = y.shape[0]
    for chunk in prange(n_chunks):
        lo, hi = n * chunk // n_chunks, n * (chunk + 1) // n_chunks
        g, v, dst = grad_y[lo:hi], y[lo:hi], out[lo:hi]
        for i in range(g.shape[0]):
            dst[i] = g[i] * (one if (v[i] > lo_value and v[i] < hi_value) else zero)
    return out


@njit(**_PJIT)
def channel_affine(x, scale, shift, out, n_chunks):
    """``out[r] = x[r] * scale[r % C] + shift[r % C]`` over the rows ``r`` of
    ``(N*C, L)`` arrays: two roundings, as NumPy's multiply then add."""
    rows = x.shape[0]
    channels = scale.shape[0]
    for chunk in prange(n_chunks):
        for r in range(rows * chunk // n_chunks, rows * (chunk + 1) // n_chunks):
            s = scale[r % channels]
            t = shift[r % channels]
            src, dst = x[r], out[r]
            for i in range(src.shape[0]):
                dst[i] = src[i] * s + t
    return out


@njit(**_PJIT)
def add(a, b, out, n_chunks):
    n = a.shape[0]
    for chunk in prange(n_chunks):
        lo, hi = n * chunk // n_chunks, n * (chunk + 1) // n_chunks
        first, second, dst = a[lo:hi], b[lo:hi], out[lo:hi]
        for i in range(first.shape[0]):
            dst[i] = first[i] + second[i]
    return out


@njit(**_PJIT)
def sgd_step(param, grad, buffer, lr, momentum, weight_decay, n_chunks):
    """One SGD step in place, in one pass: ``d = grad + weight_decay * param`` (when
    ``weight_decay``), ``buffer = momentum * buffer + d`` (when ``buffer`` is not
    empty: else ``buffer`` is d), ``param -= lr * buffer``.  The scalars are of the
    arrays' dtype, so each operation rounds as NumPy's in-place passes do."""
    n = param.shape[0]
    decay = weight_decay != 0
    has_buffer = buffer.shape[0] == n
    for chunk in prange(n_chunks):
        lo, hi = n * chunk // n_chunks, n * (chunk + 1) // n_chunks
        p, g = param[lo:hi], grad[lo:hi]
        v = buffer[lo:hi] if has_buffer else buffer[0:0]
        for i in range(p.shape[0]):
            d = g[i] + weight_decay * p[i] if decay else g[i]
            if has_buffer:
                d = momentum * v[i] + d
                v[i] = d
            p[i] -= lr * d
