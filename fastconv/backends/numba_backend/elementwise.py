"""The layers' elementwise ops on the numba kernels (`kernels/elementwise.py`): one
pass over flat arrays, split over the threads where the arrays are large enough to
repay a parallel launch.  A ResNet-20 training step at batch 128 spent 36 ms in
NumPy's ReLU passes and 26 ms in its residual sums, against PyTorch's 19 and 11
(`fastconv bench --networks`' breakdown)."""

from __future__ import annotations

import numpy as np

from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import elementwise as _k

# Elements per thread below which a second thread does not pay (a launch costs a few us).
_MIN_ELEMENTS = 1 << 15


def _run(kernel, arrays, scalars=()):
    """``kernel`` over the flattened ``arrays`` (and ``scalars``) into a new array
    shaped as the first."""
    like = arrays[0]
    flat = [rt.kernel_array(a).reshape(-1) for a in arrays]
    out = np.empty(like.size, dtype=like.dtype)
    rt.launch(kernel, *flat, *scalars, out, rt.chunks(like.size, like.size, _MIN_ELEMENTS))
    return out.reshape(like.shape)


def relu(x):
    return _run(_k.relu_forward, (x,))


def relu_backward(grad_y, y):
    return _run(_k.relu_backward, (grad_y, y))


def clamp(x, low, high):
    return _run(_k.clamp_forward, (x,), (float(low), float(high)))


def clamp_backward(grad_y, y, low, high):
    return _run(_k.clamp_backward, (grad_y, y), (float(low), float(high)))


def add(a, b):
    return _run(_k.add, (a, b))


def channel_affine(x, scale, shift):
    x = rt.kernel_array(x)
    planes = x.reshape(x.shape[0] * x.shape[1], -1)
    out = np.empty_like(planes)
    rt.launch(_k.channel_affine, planes, rt.kernel_array(scale), rt.kernel_array(shift), out,
              rt.chunks(planes.shape[0], x.size, _MIN_ELEMENTS))
    return out.reshape(x.shape)


def sgd_step(param, grad, buffer, lr, momentum, weight_decay):
    scalar = param.dtype.type
    flat = [a.reshape(-1) for a in (param, grad)]
    buffer = rt.dummy(param.dtype, 1)[:0] if buffer is None else buffer.reshape(-1)
    rt.launch(_k.sgd_step, *flat, buffer, scalar(lr), scalar(momentum), scalar(weight_decay),
              rt.chunks(param.size, param.size, _MIN_ELEMENTS))


def warm(dtype) -> None:
    """Run every kernel here once on a tiny ``dtype`` array (for `warmup`)."""
    x = np.linspace(-1.0, 7.0, 9).astype(dtype)
    y = relu(x)
    relu_backward(x, y)
    c = clamp(x, 0.0, 6.0)
    clamp_backward(x, c, 0.0, 6.0)
    add(x, y)
    planes = x[:8].reshape(2, 2, 2)
    channel_affine(planes, x[:2].copy(), x[2:4].copy())
    sgd_step(x, y, c, 0.1, 0.9, 0.0)
    sgd_step(x, y, None, 0.1, 0.0, 0.01)
