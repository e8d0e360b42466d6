"""`fastconv.functional`'s parameter update of `fastconv.optim.SGD`, in place.

The backend runs it in one pass where it has the kernel (optional kernel
``sgd_step``, `fastconv.backends`) and the arrays are what kernels take (one float
dtype, C-contiguous, equal shapes, at least `KERNEL_MIN_SIZE` elements: below that a
kernel call costs more than NumPy's passes save); anything else runs NumPy's in-place
passes, the reference semantics.  Both round each operation to the arrays' dtype in
the same order, so the results are identical.
"""

from __future__ import annotations

import numpy as np

from fastconv.backends import optional_kernel
from fastconv.functional.arguments import FLOAT_DTYPES

KERNEL_MIN_SIZE = 1 << 16


def _check(name: str, array, param: np.ndarray, writes: bool) -> None:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"sgd_step: {name} must be a NumPy array, got {type(array).__name__}")
    if array.shape != param.shape or array.dtype != param.dtype:
        raise ValueError(f"sgd_step: {name} must have the parameter's shape {param.shape} and dtype "
                         f"{param.dtype}, got {array.shape} {array.dtype}")
    if writes and not array.flags.writeable:
        raise ValueError(f"sgd_step: {name} is read-only")


def _same(array, param, writes: bool) -> bool:
    """The usual case, checked in a few attribute reads (an optimizer calls this once
    per parameter and step): a writable-where-needed array of the parameter's kind."""
    return (type(array) is np.ndarray and array.dtype is param.dtype and array.shape == param.shape
            and (not writes or array.flags.writeable))


def _check_all(param, grad, buffer) -> None:
    """The checks in full, naming what is wrong (an ndarray subclass or an equal but
    distinct dtype object passes them)."""
    if not isinstance(param, np.ndarray) or param.dtype not in FLOAT_DTYPES:
        raise TypeError("sgd_step: param must be a float32 or float64 NumPy array")
    _check("param", param, param, writes=True)
    _check("grad", grad, param, writes=False)
    if buffer is not None:
        _check("buffer", buffer, param, writes=True)


def sgd_step(param, grad, buffer, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
    """One SGD step on ``param`` in place, as `torch.optim.SGD` (no dampening, not
    Nesterov): ``d = grad + weight_decay * param``; with a momentum ``buffer``
    (updated in place), ``buffer = momentum * buffer + d`` and ``d = buffer``; then
    ``param -= lr * d``.  ``buffer`` is None without momentum."""
    if not (type(param) is np.ndarray and param.dtype in FLOAT_DTYPES and param.flags.writeable
            and _same(grad, param, False) and (buffer is None or _same(buffer, param, True))):
        _check_all(param, grad, buffer)
    arrays = (param, grad) if buffer is None else (param, grad, buffer)
    kernel = optional_kernel("sgd_step") if param.size >= KERNEL_MIN_SIZE else None
    if kernel is not None and all(a.flags.c_contiguous for a in arrays):
        kernel(param, grad, buffer, lr, momentum, weight_decay)
        return
    if weight_decay:
        grad = grad + weight_decay * param
    if buffer is not None:
        buffer *= momentum
        buffer += grad
        grad = buffer
    param -= lr * grad
