"""Convolution entry points: pick an algorithm (``select``) and run it.

Fused variants: `conv2d_relu`, `conv2d_relu_backward` (``input_grad=False`` skips
grad_x), `conv2d_backward_weights`, and `conv2d_relu_avgpool2` /
`conv2d_relu_avgpool2_backward` (report 000's block: conv, bias, ReLU and 2x2 average
pooling in one pass each way when the direct algorithm runs; other algorithms run the
pooling as a separate kernel).  Frozen (read-only) weights are copied and packed once
(`frozen_weights`), and the algorithms that can use packed panels get them; a frozen
layer with more output positions than the GEMM path runs on its panels (up to
`gemm.packed_fits`' timed limit) times the panels against the algorithm chosen.
"""

from __future__ import annotations

import functools

import numpy as np

from fastconv.backends.numba_backend import frozen_weights as _frozen
from fastconv.backends.numba_backend import gemm
from fastconv.backends.numba_backend import pool as _pool
from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend import select

_POOL2 = ((2, 2), (2, 2), (0, 0))   # kernel, stride, padding of the fused pooling


def _forward(x, w, b, stride, padding, relu, pool=False):
    x = rt.kernel_array(x)
    frozen = _frozen.frozen(w)
    weights = w                    # the frozen array itself keys its cached panels
    w = _frozen.writable(w) if frozen else rt.kernel_array(w)
    b = np.zeros(w.shape[0], dtype=x.dtype) if b is None else _frozen.weight_array(b)

    def run(name):
        algorithm = select.ALGORITHMS[name]
        if pool and algorithm.FUSES_POOL:
            return algorithm.forward(x, w, b, stride, padding, relu, pool=True)
        if frozen and getattr(algorithm, "TAKES_PANELS", False):
            y = algorithm.forward(x, w, b, stride, padding, relu, panels=lambda: _frozen.panels(weights))
        else:
            y = algorithm.forward(x, w, b, stride, padding, relu)
        return (_pool.avg_pool2d(y, *_POOL2), y) if pool else y

    if not frozen:
        return select.run_chosen("forward", x, w, stride, padding, run)
    # frozen weights are a problem of their own: packed panels change the GEMM's speed
    out_hw = _packed_plan(x.shape, w.shape, stride, padding) if not pool else None
    if out_hw is None:
        return select.run_chosen("forward frozen", x, w, stride, padding, run)

    def run_plan(plan):
        if plan == "packed":
            return gemm.forward_packed(x, _frozen.panels(weights), b, stride, padding, relu, out_hw,
                                       w.shape[0], w.shape[2:])
        return select.run_chosen("forward frozen", x, w, stride, padding, run)

    return select.run_chosen("forward frozen plan", x, w, stride, padding, run_plan, plans=("chosen", "packed"))


@functools.lru_cache(maxsize=1024)
def _packed_plan(x_shape, w_shape, stride, padding):
    """The output size of a frozen forward whose panels are worth timing against the
    algorithms (more positions than the GEMM path itself runs on them, up to the
    timed limit; not a 1x1 stride-1 layer, whose GEMM needs no unfold), else None.
    Measured here: 128->128 3x3/2 at 28x28, batch 8 (1568 positions), panels 2.7 ms,
    `blocked` 3.0.  The panels need no BLAS."""
    if (w_shape[2:], stride, padding) == ((1, 1), (1, 1), (0, 0)):
        return None
    out_hw = rt.out_hw(x_shape[2], x_shape[3], w_shape[2:], stride, padding)
    columns = x_shape[0] * out_hw[0] * out_hw[1]
    return out_hw if gemm.packed_fits(columns, timed=True) and not gemm.packed_fits(columns) else None


def _backward(grad_y, x, w, mask, stride, padding, need_grad_x, pooled=False):
    grad_y = rt.kernel_array(grad_y)
    x = rt.kernel_array(x)
    w = _frozen.weight_array(w)
    mask = None if mask is None else rt.kernel_array(mask)

    def run(name):
        algorithm = select.ALGORITHMS[name]
        if pooled and algorithm.FUSES_POOL:
            return algorithm.backward(grad_y, x, w, mask, stride, padding, need_grad_x, pooled=True)
        grad_conv = _pool.avg_pool2d_backward(grad_y, mask.shape, *_POOL2) if pooled else grad_y
        return algorithm.backward(grad_conv, x, w, mask, stride, padding, need_grad_x)

    # a weight gradient alone is a problem of its own: the algorithm fastest at it may differ
    return select.run_chosen("backward" if need_grad_x else "backward weights", x, w, stride, padding, run)


def conv2d(x, w, b, stride, padding):
    return _forward(x, w, b, stride, padding, relu=False)


def conv2d_backward(grad_y, x, w, stride, padding):
    return _backward(grad_y, x, w, None, stride, padding, need_grad_x=True)


def conv2d_relu(x, w, b, stride, padding):
    return _forward(x, w, b, stride, padding, relu=True)


def conv2d_relu_backward(grad_y, y, x, w, stride, padding, input_grad):
    return _backward(grad_y, x, w, y, stride, padding, need_grad_x=input_grad)


def conv2d_backward_weights(grad_y, x, w, stride, padding):
    _, grad_w, grad_b = _backward(grad_y, x, w, None, stride, padding, need_grad_x=False)
    return grad_w, grad_b


def conv2d_relu_avgpool2(x, w, b, stride, padding):
    return _forward(x, w, b, stride, padding, relu=True, pool=True)


def conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, stride, padding, input_grad):
    return _backward(grad_pooled, x, w, y, stride, padding, need_grad_x=input_grad, pooled=True)
