"""Elementwise kernels over flat arrays, one contiguous slice per chunk: ReLU, clamp,
their gradients from the output, and the sum of two arrays.  One pass and one output
array each; NumPy's versions of the backward passes make a mask array first, and run
on one thread.

Every function trusts its caller (`numba_backend.elementwise`): flat C-contiguous
arrays of one dtype and length.
"""

from __future__ import annotations

from numba import njit, prange

_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(**_PJIT)
def relu_forward(x, out, n_chunks):
    zero = x.dtype.type(0)
    n = x.shape[0]
    for chunk in prange(n_chunks):
        for i in range(n * chunk // n_chunks, n * (chunk + 1) // n_chunks):
            v = x[i]
            out[i] = zero if v < zero else v          # NaN stays NaN, as np.maximum
    return out


# The gradients multiply by a 0/1 mask, as the NumPy reference does (an infinite
# gradient where the mask is 0 gives NaN, not 0).
@njit(**_PJIT)
def relu_backward(grad_y, y, out, n_chunks):
    zero = y.dtype.type(0)
    one = y.dtype.type(1)
    n = y.shape[0]
    for chunk in prange(n_chunks):
        for i in range(n * chunk // n_chunks, n * (chunk + 1) // n_chunks):
            out[i] = grad_y[i] * (one if y[i] > zero else zero)
    return out


@njit(**_PJIT)
def clamp_forward(x, low, high, out, n_chunks):
    lo = x.dtype.type(low)
    hi = x.dtype.type(high)
    n = x.shape[0]
    for chunk in prange(n_chunks):
        for i in range(n * chunk // n_chunks, n * (chunk + 1) // n_chunks):
            v = x[i]
            out[i] = lo if v < lo else (hi if v > hi else v)
    return out


@njit(**_PJIT)
def clamp_backward(grad_y, y, low, high, out, n_chunks):
    zero = y.dtype.type(0)
    one = y.dtype.type(1)
    lo = y.dtype.type(low)
    hi = y.dtype.type(high)
    n = y.shape[0]
    for chunk in prange(n_chunks):
        for i in range(n * chunk // n_chunks, n * (chunk + 1) // n_chunks):
            v = y[i]
            out[i] = grad_y[i] * (one if (v > lo and v < hi) else zero)
    return out


@njit(**_PJIT)
def add(a, b, out, n_chunks):
    n = a.shape[0]
    for chunk in prange(n_chunks):
        for i in range(n * chunk // n_chunks, n * (chunk + 1) // n_chunks):
            out[i] = a[i] + b[i]
    return out
