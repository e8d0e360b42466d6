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
        self._cache = None      # what backward needs from the last forward

    def _check(self, x: np.ndarray) -> None:
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

    # Arrays are viewed as (N, C, L) so one code path serves (N, C), (N, C, L) and
    # (N, C, H, W), and per-channel sums are einsum reductions (2-3x faster than
    # .sum(axis=(0, 2, 3)) or (a * b).sum(...), with no temporary).
    def forward(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        x3 = x.reshape(x.shape[0], self.num_features, -1)
        if self.training:
            count = x3.shape[0] * x3.shape[2]
            if count < 2:
                # The unbiased variance needs 2 values; PyTorch refuses too.
                raise ValueError(
                    f"{type(self).__name__} in training mode needs more than 1 value per "
                    f"channel, got input shape {x.shape}"
                )
            mean = np.einsum("ncl->c", x3) / count
            centered = x3 - mean[:, None]
            var = np.einsum("ncl,ncl->c", centered, centered) / count      # biased
            self.running_mean *= 1.0 - self.momentum
            self.running_mean += self.momentum * mean
            self.running_var *= 1.0 - self.momentum
            self.running_var += (self.momentum * count / (count - 1)) * var  # unbiased
            inv_std = 1.0 / np.sqrt(var + self.eps)
            scale = self.weight.data * inv_std
            y = centered * scale[:, None]
            y += self.bias.data[:, None]
            self._cache = (True, centered, inv_std)
        else:
            # Running statistics are constants: one per-channel affine map.  Keep x
            # (not x - mean) so eval forwards cost no extra pass; backward derives it.
            inv_std = 1.0 / np.sqrt(self.running_var + self.eps)
            scale = self.weight.data * inv_std
            y = x3 * scale[:, None]
            y += (self.bias.data - self.running_mean * scale)[:, None]
            self._cache = (False, x3, inv_std, self.running_mean.copy())
        return y.reshape(x.shape)

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        used_batch_stats, saved, inv_std = self._cache[:3]
        centered = saved if used_batch_stats else saved - self._cache[3][:, None]
        grad3 = grad_y.reshape(centered.shape)
        sum_grad = np.einsum("ncl->c", grad3)
        sum_grad_x_hat = np.einsum("ncl,ncl->c", grad3, centered) * inv_std
        self.weight.grad += sum_grad_x_hat
        self.bias.grad += sum_grad
        scale = self.weight.data * inv_std
        if not used_batch_stats:
            return (grad3 * scale[:, None]).reshape(grad_y.shape)
        # The batch statistics depend on x: remove the gradient's components along the
        # mean and along x_hat = centered * inv_std (the standard batch-norm backward):
        # grad_x = scale * (grad - mean(grad) - x_hat * mean(grad * x_hat)).
        # Built in place in one buffer: fewer full-size temporaries is what counts here.
        count = centered.shape[0] * centered.shape[2]
        grad_x = centered * (-(inv_std * sum_grad_x_hat / count))[:, None]
        grad_x -= (sum_grad / count)[:, None]
        grad_x += grad3
        grad_x *= scale[:, None]
        return grad_x.reshape(grad_y.shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over ``(N, C)`` (or ``(N, C, L)``) input, per feature ``C``."""

    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over ``(N, C, H, W)`` input, per channel ``C``."""

    _ranks = (4,)
