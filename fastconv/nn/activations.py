"""Elementwise layers beside `ReLU`: `Identity`, `Sigmoid`, `Tanh`, `LeakyReLU`, `ReLU6`.

Plain NumPy but for `ReLU6` (`fastconv.functional.clamp`), PyTorch's values and
gradients, including at the kinks: `LeakyReLU`'s gradient at exactly 0 is ``negative_slope``, `ReLU6`'s at 0 and
at 6 is 0.
"""

from __future__ import annotations

import numbers

import numpy as np

import fastconv.functional as F
from fastconv.nn.module import Module

_NO_KERNELS = frozenset()


def _not_run(layer: Module) -> RuntimeError:
    return RuntimeError(f"{type(layer).__name__}.backward called before forward")


class _Elementwise(Module):
    """A stateless elementwise layer: no kernels, no constructor arguments."""

    def kernel_ops(self) -> frozenset:
        return _NO_KERNELS

    def config(self) -> dict:
        return {}


class Identity(_Elementwise):
    """``y = x``: a placeholder (a branch or shortcut that does nothing).  As
    `torch.nn.Identity`, it takes and ignores any constructor arguments."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x

    def backward(self, grad_y):
        return grad_y


class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))``, accurate in both tails (no overflow for large ``|x|``)."""

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = F.as_array(x)
        decay = np.exp(-np.abs(x))            # in (0, 1]: never overflows
        y = 1.0 / (1.0 + decay)
        negative = x < 0
        y[negative] *= decay[negative]       # exp(x) / (1 + exp(x)) for x < 0
        self._y = y
        return y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._y is None:
            raise _not_run(self)
        return grad_y * (self._y * (1.0 - self._y))


class Tanh(_Elementwise):
    """``tanh(x)``; the gradient ``1 - tanh(x)**2`` comes from the kept output."""

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = np.tanh(F.as_array(x))
        return self._y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._y is None:
            raise _not_run(self)
        return grad_y * (1.0 - self._y * self._y)


class LeakyReLU(_Elementwise):
    """``x`` where ``x > 0``, else ``negative_slope * x`` (`torch.nn.LeakyReLU`)."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        if not isinstance(negative_slope, numbers.Real) or isinstance(negative_slope, bool):
            raise TypeError(f"negative_slope must be a real number, got {negative_slope!r}")
        if not np.isfinite(negative_slope):
            raise ValueError(f"negative_slope must be finite, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)
        self._slopes = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = F.as_array(x)
        # the local slope (1 or negative_slope), which is also backward's factor
        slopes = np.where(x > 0, x.dtype.type(1), x.dtype.type(self.negative_slope))
        self._slopes = slopes
        return x * slopes

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._slopes is None:
            raise _not_run(self)
        return grad_y * self._slopes

    def config(self) -> dict:
        return {"negative_slope": self.negative_slope}

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ReLU6(_Elementwise):
    """``min(max(x, 0), 6)`` (MobileNet's activation); gradient 1 strictly inside (0, 6),
    read off the output (`fastconv.functional.clamp_backward`)."""

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = F.clamp(x, 0.0, 6.0)
        return self._y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._y is None:
            raise _not_run(self)
        return F.clamp_backward(grad_y, self._y, 0.0, 6.0)

    def kernel_ops(self) -> frozenset:
        return frozenset({"clamp"})
