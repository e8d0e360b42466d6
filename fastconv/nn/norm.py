"""Batch normalisation with PyTorch semantics.

Training: normalise with the batch mean and the *biased* batch variance, and update
``running_mean``/``running_var`` as ``(1 - momentum) * running + momentum * batch``,
using the *unbiased* variance for ``running_var``.  Eval: normalise with the running
statistics.  ``weight`` (gamma) starts at 1, ``bias`` (beta) at 0.
"""

from __future__ import annotations

import numbers

import numpy as np

import fastconv.functional as F
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
        self._cache = None      # what backward needs from the last forward

    def _check(self, x) -> np.ndarray:
        x = F.as_array(x)
        if x.ndim not in self._ranks or x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expects input of rank "
                f"{' or '.join(map(str, self._ranks))} with {self.num_features} channels in "
                f"axis 1, got shape {x.shape}"
            )
        if x.dtype != self.weight.data.dtype:
            raise TypeError(
                f"{type(self).__name__}: input has dtype {x.dtype} but the layer is "
                f"{self.weight.data.dtype}; cast the input or build the layer with that dtype"
            )
        return x

    # Training mode runs `fastconv.functional.batch_norm` (a backend kernel where the
    # backend has one); eval mode is one per-channel affine map, done here.
    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check(x)
        if self.training:
            y, mean, var = F.batch_norm(x, self.weight.data, self.bias.data, self.eps)
            count = x.size // self.num_features
            self.running_mean *= 1.0 - self.momentum
            self.running_mean += self.momentum * mean
            self.running_var *= 1.0 - self.momentum
            self.running_var += (self.momentum * count / (count - 1)) * var  # unbiased
            self._cache = (True, x, mean, var)
            return y
        # Running statistics are constants: one per-channel affine map.  Keep x (not
        # x - mean) so eval forwards cost no extra pass; backward derives it.
        x3 = x.reshape(x.shape[0], self.num_features, -1)
        inv_std = 1.0 / np.sqrt(self.running_var + self.eps)
        scale = self.weight.data * inv_std
        y = x3 * scale[:, None]
        y += (self.bias.data - self.running_mean * scale)[:, None]
        self._cache = (False, x3, inv_std, self.running_mean.copy())
        return y.reshape(x.shape)

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        if self._cache[0]:
            _, x, mean, var = self._cache
            grad_x, grad_weight, grad_bias = F.batch_norm_backward(
                grad_y, x, mean, var, self.weight.data, self.eps)
            self.weight.grad += grad_weight
            self.bias.grad += grad_bias
            return grad_x
        _, x3, inv_std, running_mean = self._cache
        centered = x3 - running_mean[:, None]
        grad3 = grad_y.reshape(x3.shape)
        self.weight.grad += np.einsum("ncl,ncl->c", grad3, centered) * inv_std
        self.bias.grad += np.einsum("ncl->c", grad3)
        return (grad3 * (self.weight.data * inv_std)[:, None]).reshape(grad_y.shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over ``(N, C)`` (or ``(N, C, L)``) input, per feature ``C``."""

    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over ``(N, C, H, W)`` input, per channel ``C``."""

    _ranks = (4,)
