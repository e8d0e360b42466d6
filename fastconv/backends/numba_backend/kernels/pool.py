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

from fastconv.backends.numba_backend.lean_codegen import plain

_JIT = dict(cache=True, nogil=True)
_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(**_JIT)
def _columns(j, sw, pw, width, out_w):
    """[lo, hi): output columns ow whose input column ow*sw + j - pw lies in [0, width)."""
    lo = 0 if pw - j <= 0 else (pw - j + sw - 1) // sw
    top = width - 1 + pw - j
    hi = 0 if top < 0 else min(out_w, top // sw + 1)
    return lo, max(lo, hi)


@njit(**_JIT)
def _offsets(kw, sw, pw, width, out_w):
    """[lo, hi): window column offsets j that reach the input for some output column.
    At other offsets every window is in the padding (adds 0, never the maximum), so
    the loops skip them: their cost follows the input, however wide the window."""
    return max(0, pw - (out_w - 1) * sw), max(0, min(kw, pw + width))


# 2x2 windows with stride 2 and no padding (both reports' pools) take a dedicated
# path: 7x (average) and 2-3x (max, branch-free selects) faster than the general
# loops on report 000's shapes.  The general loops run over whole output rows (for
# each window offset (r, j): all output columns at once), not window by window.
@njit(**_JIT)
def _is_2x2(kh, kw, sh, sw, ph, pw):
    return kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0


@njit(**_JIT)
def _avg_2x2(plane, dst):
    quarter = plane.dtype.type(0.25)          # exact: same result as dividing by 4
    for oh in range(dst.shape[0]):
        a = plane[2 * oh]
        b = plane[2 * oh + 1]
        d = dst[oh]
        for ow in range(dst.shape[1]):
            d[ow] = ((a[2 * ow] + a[2 * ow + 1]) + (b[2 * ow] + b[2 * ow + 1])) * quarter


@njit(**_JIT)
def _avg_2x2_backward(src, plane):
    quarter = src.dtype.type(0.25)
    plane[:, :] = 0                           # rows/columns beyond the last window
    for oh in range(src.shape[0]):
        g = src[oh]
        a = plane[2 * oh]
        b = plane[2 * oh + 1]
        for ow in range(src.shape[1]):
            v = g[ow] * quarter
            a[2 * ow] = v
            a[2 * ow + 1] = v
            b[2 * ow] = v
            b[2 * ow + 1] = v


@njit(**_JIT)
def _max_2x2(plane, dst, where, offsets):
    """2x2 windows, stride 2.  Each window's argmax offset (0, 1, W, W+1) goes to
    the int32 row ``offsets`` first, the int64 indices in a second loop: selecting
    int64s under float32 compares kept LLVM from vectorising the window loop (one
    loop: 10.7 ms for 64x64x32x32 on one core, split: 0.9 ms)."""
    width = plane.shape[1]
    zero, one, down, diagonal = np.int32(0), np.int32(1), np.int32(width), np.int32(width + 1)
    for oh in range(dst.shape[0]):
        a = plane[2 * oh]
        b = plane[2 * oh + 1]
        d = dst[oh]
        for ow in range(dst.shape[1]):
            # non-short-circuit | and & keep this branch-free (random data would
            # mispredict every other branch)
            best = a[2 * ow]
            off = zero
            v = a[2 * ow + 1]
            take = (v > best) | ((v != v) & (best == best))
            best = v if take else best
            off = one if take else off
            v = b[2 * ow]
            take = (v > best) | ((v != v) & (best == best))
            best = v if take else best
            off = down if take else off
            v = b[2 * ow + 1]
            take = (v > best) | ((v != v) & (best == best))
            best = v if take else best
            off = diagonal if take else off
            d[ow] = best
            offsets[ow] = off
        e = where[oh]
        base = 2 * oh * width
        for ow in range(dst.shape[1]):
            e[ow] = base + 2 * ow + offsets[ow]


@njit(**_PJIT)
def avg_pool2d_forward(x, kh, kw, sh, sw, ph, pw, out, n_chunks):
    n, c, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    count = kh * kw
    j0, j1 = _offsets(kw, sw, pw, width, out_w)
    items = n * c
    for chunk in prange(n_chunks):
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // c
            ch = item - img * c
            plane = x[img, ch]
            if _is_2x2(kh, kw, sh, sw, ph, pw):
                _avg_2x2(plane, out[img, ch])
                continue
            for oh in range(out_h):
                drow = out[img, ch, oh]
                drow[:] = 0
                for r in range(max(oh * sh - ph, 0), min(oh * sh - ph + kh, height)):
                    src = plane[r]
                    for j in range(j0, j1):
                        lo, hi = _columns(j, sw, pw, width, out_w)
                        d = drow[lo:hi]
                        if sw == 1:
                            s = src[lo + j - pw:hi + j - pw]
                        else:
                            s = src[lo * sw + j - pw:(hi - 1) * sw + j - pw + 1:sw]
                        for q in range(hi - lo):
                            d[q] += s[q]
                for ow in range(out_w):
                    drow[ow] = drow[ow] / count


@njit(**_PJIT)
def avg_pool2d_backward(grad_y, kh, kw, sh, sw, ph, pw, grad_x, n_chunks):
    n, c, height, width = grad_x.shape
    out_h, out_w = grad_y.shape[2], grad_y.shape[3]
    count = kh * kw
    j0, j1 = _offsets(kw, sw, pw, width, out_w)
    items = n * c
    for chunk in prange(n_chunks):
        share = np.empty(out_w, dtype=grad_y.dtype)
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // c
            ch = item - img * c
            plane = grad_x[img, ch]
            if _is_2x2(kh, kw, sh, sw, ph, pw):
                _avg_2x2_backward(grad_y[img, ch], plane)
                continue
            plane[:, :] = 0
            for oh in range(out_h):
                grow = grad_y[img, ch, oh]
                for ow in range(out_w):
                    share[ow] = grow[ow] / count
                for r in range(max(oh * sh - ph, 0), min(oh * sh - ph + kh, height)):
                    dst = plane[r]
                    for j in range(j0, j1):
                        lo, hi = _columns(j, sw, pw, width, out_w)
                        s = share[lo:hi]
                        if sw == 1:
                            d = dst[lo + j - pw:hi + j - pw]
                        else:
                            d = dst[lo * sw + j - pw:(hi - 1) * sw + j - pw + 1:sw]
                        for q in range(hi - lo):
                            d[q] += s[q]


@plain      # numba's own code generation: the 2x2 path's short-row loop runs 1.1-1.3x faster
@njit(**_PJIT)
def max_pool2d_forward(x, kh, kw, sh, sw, ph, pw, out, indices, n_chunks):
    """Max over each clipped window; ties (and NaNs) go to the first in row-major order."""
    n, c, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    j0, j1 = _offsets(kw, sw, pw, width, out_w)
    items = n * c
    fast_2x2 = _is_2x2(kh, kw, sh, sw, ph, pw) and width < 2**31 - 1     # int32 offsets
    for chunk in prange(n_chunks):
        offsets = np.empty(out_w, dtype=np.int32)
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // c
            ch = item - img * c
            plane = x[img, ch]
            if fast_2x2:
                _max_2x2(plane, out[img, ch], indices[img, ch], offsets)
                continue
            for oh in range(out_h):
                best = out[img, ch, oh]
                where = indices[img, ch, oh]
                r0 = max(oh * sh - ph, 0)
                r1 = min(oh * sh - ph + kh, height)
                # start from each window's first (top-left valid) element ...
                for ow in range(out_w):
                    c0 = max(ow * sw - pw, 0)
                    best[ow] = plane[r0, c0]
                    where[ow] = r0 * width + c0
                # ... then visit the window in row-major order; strict > keeps the
                # first maximum, and the first NaN wins and stays (as np.argmax).
                for r in range(r0, r1):
                    src = plane[r]
                    for j in range(j0, j1):
                        lo, hi = _columns(j, sw, pw, width, out_w)
                        for ow in range(lo, hi):
                            col = ow * sw + j - pw
                            v = src[col]
                            b = best[ow]
                            if v > b or (v != v and b == b):
                                best[ow] = v
                                where[ow] = r * width + col


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
            if t[j] != 0:               # 0 * log p is 0, even where log p = -inf
                loss -= t[j] * log_p
            g[j] = (np.exp(log_p) - t[j]) / n
    return loss / n
