"""`fastconv.functional`'s elementwise ops of the layers: ReLU, the clamp of ReLU6 and
hardtanh, the sum of two branches, each backward computed from the forward's output
(what a layer keeps anyway), and the per-channel affine map of batch norm in eval
mode.

The backend runs them where it has the kernel (optional kernels, `fastconv.backends`)
and the arrays are what kernels take -- float32/float64 of one dtype, C-contiguous,
equal shapes; anything else (integers, strided views, broadcasting) is NumPy, the
reference semantics.  NaN propagates forward as in NumPy and PyTorch; a gradient is
``grad_y`` times a 0/1 mask (0 where ReLU's output is not positive, as
`torch.nn.ReLU`'s; an infinite ``grad_y`` where the mask is 0 gives NaN).
"""

from __future__ import annotations

import numpy as np

from fastconv.backends import optional_kernel
from fastconv.functional.arguments import FLOAT_DTYPES, as_array


def _kernel(op: str, *arrays):
    """The backend's ``op`` when every array is one a kernel takes, else None."""
    first = arrays[0]
    if first.dtype not in FLOAT_DTYPES or first.size == 0:
        return None
    for array in arrays:
        if array.dtype != first.dtype or array.shape != first.shape or not array.flags.c_contiguous:
            return None
    return optional_kernel(op)


def _pair(grad_y, y, what: str):
    grad_y, y = as_array(grad_y, "grad_y"), as_array(y, "y")
    if grad_y.shape != y.shape:
        raise ValueError(f"{what}: grad_y has shape {grad_y.shape} but the output y has {y.shape}")
    return grad_y, y


def relu(x) -> np.ndarray:
    """``max(x, 0)``, a new array."""
    x = as_array(x)
    kernel = _kernel("relu", x)
    return kernel(x) if kernel is not None else np.maximum(x, 0)


def relu_backward(grad_y, y) -> np.ndarray:
    """Gradient of `relu` from its output ``y``: ``grad_y * (y > 0)``."""
    grad_y, y = _pair(grad_y, y, "relu_backward")
    kernel = _kernel("relu_backward", grad_y, y)
    if kernel is not None:
        return kernel(grad_y, y)
    return grad_y * (y > 0).astype(grad_y.dtype)


def _bounds(low, high, what: str) -> tuple[float, float]:
    low, high = float(low), float(high)
    if not low < high:
        raise ValueError(f"{what}: low must be below high, got {low} and {high}")
    return low, high


def clamp(x, low: float, high: float) -> np.ndarray:
    """``min(max(x, low), high)`` (ReLU6 is ``clamp(x, 0, 6)``), a new array."""
    x = as_array(x)
    low, high = _bounds(low, high, "clamp")
    kernel = _kernel("clamp", x)
    return kernel(x, low, high) if kernel is not None else np.clip(x, low, high)


def clamp_backward(grad_y, y, low: float, high: float) -> np.ndarray:
    """Gradient of `clamp` from its output ``y``: ``grad_y`` times 1 strictly inside
    ``(low, high)``, 0 on and outside the bounds (as PyTorch's hardtanh)."""
    grad_y, y = _pair(grad_y, y, "clamp_backward")
    low, high = _bounds(low, high, "clamp_backward")
    kernel = _kernel("clamp_backward", grad_y, y)
    if kernel is not None:
        return kernel(grad_y, y, low, high)
    return grad_y * ((y > low) & (y < high)).astype(grad_y.dtype)


def add(a, b) -> np.ndarray:
    """``a + b``, a new array (NumPy's broadcasting where the shapes differ)."""
    a, b = as_array(a, "a"), as_array(b, "b")
    kernel = _kernel("add", a, b)
    return kernel(a, b) if kernel is not None else a + b


def channel_affine(x, scale, shift) -> np.ndarray:
    """``x * scale + shift`` with one ``scale`` and ``shift`` value per channel (axis
    1 of an ``(N, C, ...)`` array; batch norm with running statistics), a new array.
    Multiply, then add: the same two roundings whichever backend runs it."""
    x = as_array(x)
    scale, shift = as_array(scale, "scale"), as_array(shift, "shift")
    if x.ndim < 2:
        raise ValueError(f"channel_affine: x must have a channel axis (rank >= 2), got shape {x.shape}")
    for name, values in (("scale", scale), ("shift", shift)):
        if values.shape != (x.shape[1],):
            raise ValueError(f"channel_affine: {name} must have shape ({x.shape[1]},) for x of shape "
                             f"{x.shape}, got {values.shape}")
    kernel = _kernel("channel_affine", x)
    if kernel is not None and scale.dtype == shift.dtype == x.dtype:
        return kernel(x, np.ascontiguousarray(scale), np.ascontiguousarray(shift))
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    y = x3 * scale[:, None]
    y += shift[:, None]
    return y.reshape(x.shape)
