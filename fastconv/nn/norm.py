"""Batch normalisation with PyTorch semantics.

Training: normalise with the batch mean and the *biased* batch variance, and update
``running_mean``/``running_var`` as ``(1 - momentum) * running + momentum * batch``,
using the *unbiased* variance for ``running_var``.  Eval: normalise with the running
statistics.  ``weight`` (gamma) starts at 1, ``bias`` (beta) at 0.

Synchronised batch norm (PyTorch's ``SyncBatchNorm``): when ``stats_reducer`` is set
to a function that sums an array over all processes (an MPI Allreduce, see
`fastconv.distributed`), training mode uses the mean and variance of the *global*
batch and backward the global sums it needs, so N processes compute what one
process computes on their joint batch.  The layer knows nothing of the transport.
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
        # Sums over the batch go through this when set: (array) -> the array summed
        # over every process.  None: this process's batch alone.
        self.stats_reducer = None

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

    # Training mode runs `fastconv.functional.batch_norm`, eval mode its per-channel
    # affine map `channel_affine` (backend kernels where the backend has them).
    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check(x)
        if self.training and self.stats_reducer is not None:
            return self._forward_synced(x)
        if self.training:
            y, mean, var = F.batch_norm(x, self.weight.data, self.bias.data, self.eps)
            self._update_running(mean, var, x.size // self.num_features)
            self._cache = ("batch", x, mean, var)
            return y
        # Running statistics are constants: one per-channel affine map.  Keep x (not
        # x - mean) so eval forwards cost no extra pass; backward derives it.
        inv_std = 1.0 / np.sqrt(self.running_var + self.eps)
        scale = self.weight.data * inv_std
        y = F.channel_affine(x, scale, self.bias.data - self.running_mean * scale)
        self._cache = ("running", x.reshape(x.shape[0], self.num_features, -1), inv_std,
                       self.running_mean.copy())
        return y

    def _update_running(self, mean: np.ndarray, var: np.ndarray, count) -> None:
        self.running_mean *= 1.0 - self.momentum
        self.running_mean += self.momentum * mean
        self.running_var *= 1.0 - self.momentum
        self.running_var += (self.momentum * count / (count - 1)) * var  # unbiased

    def _forward_synced(self, x: np.ndarray) -> np.ndarray:
        """Training forward with the global batch's statistics, in two passes (sum,
        then squared deviations) as precise as the one-process kernel."""
        reduce, dtype = self.stats_reducer, x.dtype
        x3 = x.reshape(x.shape[0], self.num_features, -1)
        local = np.append(x3.sum(axis=(0, 2), dtype=np.float64), x3.shape[0] * x3.shape[2])
        totals = reduce(local)
        count = float(totals[-1])
        if count < 2:
            raise ValueError(f"{type(self).__name__} needs more than one value per channel "
                             f"across the global batch, got {count:g}")
        mean = totals[:-1] / count
        centered = x3 - mean.astype(dtype)[:, None]
        var = reduce(np.einsum("ncl,ncl->c", centered, centered, dtype=np.float64)) / count
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(dtype)
        xhat = centered * inv_std[:, None]
        self._update_running(mean.astype(dtype), var.astype(dtype), count)
        self._cache = ("synced", xhat, inv_std, count)
        return (xhat * self.weight.data[:, None] + self.bias.data[:, None]).reshape(x.shape)

    def _backward_synced(self, grad_y: np.ndarray) -> np.ndarray:
        """Input gradient from the global sums of ``grad_y`` and ``grad_y * xhat``;
        the parameter gradients stay this process's part (the optimiser's gradient
        reduction adds the parts)."""
        _, xhat, inv_std, count = self._cache
        grad3 = grad_y.reshape(xhat.shape)
        local = np.concatenate([np.einsum("ncl->c", grad3, dtype=np.float64),
                                np.einsum("ncl,ncl->c", grad3, xhat, dtype=np.float64)])
        totals = self.stats_reducer(local)
        c = self.num_features
        self.bias.accumulate_grad(local[:c].astype(grad3.dtype))
        self.weight.accumulate_grad(local[c:].astype(grad3.dtype))
        mean_grad = (totals[:c] / count).astype(grad3.dtype)
        mean_grad_xhat = (totals[c:] / count).astype(grad3.dtype)
        grad_x = grad3 - mean_grad[:, None] - xhat * mean_grad_xhat[:, None]
        grad_x *= (self.weight.data * inv_std)[:, None]
        return grad_x.reshape(grad_y.shape)

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        if self._cache[0] == "synced":
            return self._backward_synced(grad_y)
        if self._cache[0] == "batch":
            _, x, mean, var = self._cache
            grad_x, grad_weight, grad_bias = F.batch_norm_backward(
                grad_y, x, mean, var, self.weight.data, self.eps)
            self.weight.accumulate_grad(grad_weight)
            self.bias.accumulate_grad(grad_bias)
            return grad_x
        _, x3, inv_std, running_mean = self._cache
        centered = x3 - running_mean[:, None]
        grad3 = grad_y.reshape(x3.shape)
        self.weight.accumulate_grad(np.einsum("ncl,ncl->c", grad3, centered) * inv_std)
        self.bias.accumulate_grad(np.einsum("ncl->c", grad3))
        return (grad3 * (self.weight.data * inv_std)[:, None]).reshape(grad_y.shape)

    def kernel_ops(self) -> frozenset:
        return frozenset({"batch_norm", "channel_affine"})

    def config(self) -> dict:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "dtype": self.weight.dtype.name}

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over ``(N, C)`` (or ``(N, C, L)``) input, per feature ``C``."""

    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over ``(N, C, H, W)`` input, per channel ``C``."""

    _ranks = (4,)
