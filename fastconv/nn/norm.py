"""Batch normalisation with PyTorch semantics.

Training: normalise with the batch mean and the *biased* batch variance, and update
``running_mean``/``running_var`` as ``(1 - momentum) * running + momentum * batch``,
using the *unbiased* variance for ``running_var``.  Eval: normalise with the running
statistics.  ``weight`` (gamma) starts at 1, ``bias`` (beta) at 0.
"""

from __future__ import annotations

import numbers

import numpy as np

from fastconv.nn.init import float_dtype
from fastconv.nn.module import Module, Parameter


class _BatchNorm(Module):
    # Input ranks the subclass accepts, e.g. (2, 3) for BatchNorm1d.
    _ranks: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 dtype=np.float32):
        super().__init__()
        dtype = float_dtype(dtype)
        self.num_features = int(num_features)
        if self.num_features < 1:
            raise ValueError(f"num_features must be positive, got {num_features}")
        if not isinstance(eps, numbers.Real) or eps <= 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        if not isinstance(momentum, numbers.Real) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum!r}")
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.register_parameter("weight", Parameter(np.ones(self.num_features, dtype)))
        self.register_parameter("bias", Parameter(np.zeros(self.num_features, dtype)))
        self.register_buffer("running_mean", np.zeros(self.num_features, dtype))
        self.register_buffer("running_var", np.ones(self.num_features, dtype))
        self._x_hat = None
        self._inv_std = None
        self._used_batch_stats = False

    def _layout(self, x: np.ndarray):
        """Reduction axes and the shape that broadcasts a per-channel vector over x."""
        if x.ndim not in self._ranks or x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expects input of rank "
                f"{' or '.join(map(str, self._ranks))} with {self.num_features} channels in "
                f"axis 1, got shape {x.shape}"
            )
        if x.dtype != self.weight.data.dtype:
            raise TypeError(
                f"{type(self).__name__}: input has dtype {x.dtype} but the layer is "
                f"{self.weight.data.dtype}"
            )
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, self.num_features) + (1,) * (x.ndim - 2)
        return axes, shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        axes, shape = self._layout(x)
        if self.training:
            count = x.size // self.num_features
            if count < 2:
                # Unbiased variance needs 2 values; PyTorch refuses too.
                raise ValueError(
                    f"{type(self).__name__} in training mode needs more than 1 value per "
                    f"channel, got input shape {x.shape}"
                )
            mean = x.mean(axis=axes)
            centered = x - mean.reshape(shape)
            var = np.mean(centered * centered, axis=axes)
            self.running_mean *= 1.0 - self.momentum
            self.running_mean += self.momentum * mean
            self.running_var *= 1.0 - self.momentum
            self.running_var += (self.momentum * count / (count - 1)) * var
        else:
            centered = x - self.running_mean.reshape(shape)
            var = self.running_var
        inv_std = 1.0 / np.sqrt(var + self.eps)
        centered *= inv_std.reshape(shape)      # now x_hat; centered is our own array
        self._x_hat = centered
        self._inv_std = inv_std
        self._used_batch_stats = self.training
        y = centered * self.weight.data.reshape(shape)
        y += self.bias.data.reshape(shape)
        return y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._x_hat is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        x_hat = self._x_hat
        axes = (0,) + tuple(range(2, x_hat.ndim))
        shape = (1, self.num_features) + (1,) * (x_hat.ndim - 2)
        sum_grad = grad_y.sum(axis=axes)
        sum_grad_x_hat = (grad_y * x_hat).sum(axis=axes)
        self.weight.grad += sum_grad_x_hat
        self.bias.grad += sum_grad
        scale = (self.weight.data * self._inv_std).reshape(shape)
        if not self._used_batch_stats:
            # Running statistics are constants: the layer is a per-channel affine map.
            return grad_y * scale
        # Batch statistics depend on x: subtract the gradient's projection onto the
        # mean and onto x_hat (the standard batch-norm backward).
        count = x_hat.size // self.num_features
        grad_x = x_hat * (sum_grad_x_hat / count).reshape(shape)
        grad_x += (sum_grad / count).reshape(shape)
        np.subtract(grad_y, grad_x, out=grad_x)
        grad_x *= scale
        return grad_x

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over ``(N, C)`` (or ``(N, C, L)``) input, per feature ``C``."""

    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over ``(N, C, H, W)`` input, per channel ``C``."""

    _ranks = (4,)
