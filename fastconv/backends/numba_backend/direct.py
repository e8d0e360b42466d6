"""Direct convolution: fused loops, no column buffer (see ``kernels/direct.py``).

Works over a group of images' padded planes at a time; bias, ReLU (and the fused 2x2
average pooling) are applied on write-out; the backward computes grad_x, grad_w and
grad_b in one pass over each group with per-thread partial sums for grad_w/grad_b.
Wins for small channel counts (report 000).
"""

from __future__ import annotations

import functools

import numpy as np

from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import direct as _conv

NAME = "direct"
EXACT = True          # plain summation, no transform arithmetic
FUSES_POOL = True     # can fuse report 000's 2x2 average pooling
# Compiled when a layer first needs them, not by the warm-up (its tiny problem has
# stride 1): most networks never do, and the strided backward took a third of the
# direct kernels' compile time when it was a branch of the stride-1 one.
LAZY_KERNELS = ("conv2d_direct_backward_strided",)

# Images whose padded planes the direct kernels stack into one flat loop: enough to
# amortise each tap loop's set-up, few enough that a thread's buffers stay in L2.
_GROUP_BYTES = 1 << 17


def supports(x_shape, w_shape, stride, padding) -> bool:
    return True


def _group(images: int, per_image_planes: int, plane: int, itemsize: int) -> int:
    """Group size for ``images`` images, as even as the L2 budget allows."""
    largest = max(1, min(images, _GROUP_BYTES // (per_image_planes * plane * itemsize)))
    groups = -(-images // largest)
    return -(-images // groups)


def pooled_shape(y_shape) -> tuple:
    """Shape of a 2x2, stride 2 (floor) pooling of ``y_shape``."""
    return (*y_shape[:2], y_shape[2] // 2, y_shape[3] // 2)


def forward(x, w, b, stride, padding, relu, pool=False):
    """``y``, or ``(pooled, y)`` with ``pool`` (2x2 average pooling fused in)."""
    y_shape, group, chunks = _forward_plan(x.shape, w.shape, stride, padding, x.itemsize, rt.get_num_threads())
    y = np.empty(y_shape, dtype=x.dtype)
    pooled = np.empty(pooled_shape(y_shape), dtype=x.dtype) if pool else rt.dummy(x.dtype, 4)
    rt.launch(_conv.conv2d_direct_forward, x, w, b, stride[0], stride[1], padding[0], padding[1],
              bool(relu), group, y, bool(pool), pooled, chunks)
    return (pooled, y) if pool else y


@functools.lru_cache(maxsize=1024)
def _forward_plan(x_shape, w_shape, stride, padding, itemsize, threads):
    """(output shape, images per group, chunks) of a forward: worked out once per
    problem (2 us of Python against a batch-1 layer's few us of work)."""
    n, _, height, width = x_shape
    c_out, c_in, kh, kw = w_shape
    out_h, out_w = rt.out_hw(height, width, (kh, kw), stride, padding)
    work = 2.0 * n * c_out * out_h * out_w * c_in * kh * kw
    plane = (height + 2 * padding[0]) * (width + 2 * padding[1])
    pairs = (c_out + 1) // 2
    # Split the batch over the threads only when the channel pairs alone cannot.
    share = n if pairs >= threads else -(-n // threads)
    group = _group(share, c_in + 2, plane, itemsize)
    return (n, c_out, out_h, out_w), group, rt.chunks(-(-n // group) * pairs, work)


def backward(grad_y, x, w, mask, stride, padding, need_grad_x, pooled=False):
    """With ``pooled``, ``grad_y`` is the gradient of the 2x2-pooled ReLU output ``mask``."""
    n, c_in, height, width = x.shape
    c_out = w.shape[0]
    work = 4.0 * (mask.size if pooled else grad_y.size) * w[0].size
    chunks = rt.chunks(n, work)
    plane = (height + 2 * padding[0]) * (width + 2 * padding[1])
    group = _group(-(-n // chunks), c_in + c_out + 2, plane, x.itemsize)
    grad_w_parts = rt.parts_workspace("grad_w_parts", (chunks,) + w.shape, x.dtype, zero=True)
    grad_b_parts = np.zeros((chunks, c_out), dtype=x.dtype)
    grad_x = np.empty_like(x) if need_grad_x else rt.dummy(x.dtype, 4)
    use_mask = mask is not None
    mask = mask if use_mask else rt.dummy(x.dtype, 4)
    if tuple(stride) == (1, 1):
        rt.launch(_conv.conv2d_direct_backward, grad_y, x, w, mask, use_mask, bool(pooled),
                  padding[0], padding[1], bool(need_grad_x), group, grad_x, grad_w_parts, grad_b_parts,
                  chunks)
    else:
        rt.launch(_conv.conv2d_direct_backward_strided, grad_y, x, w, mask, use_mask, bool(pooled),
                  stride[0], stride[1], padding[0], padding[1], bool(need_grad_x), grad_x,
                  grad_w_parts, grad_b_parts, chunks)
    grad_w = rt.summed(grad_w_parts)
    grad_b = grad_b_parts[0] if chunks == 1 else grad_b_parts.sum(axis=0)
    return (grad_x if need_grad_x else None), grad_w, grad_b
