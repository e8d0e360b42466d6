"""`Upsample`: nearest-neighbour upsampling by integer factors (`torch.nn.Upsample`
with ``mode="nearest"``), the decoder step of U-Nets and some generators."""

from __future__ import annotations

import math
import numbers

import numpy as np

import fastconv.functional as F
from fastconv.nn.module import Module

MODES = ("nearest",)


def _scale_factor_arg(scale_factor) -> tuple[int, int]:
    items = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor, scale_factor)
    if len(items) != 2:
        raise TypeError(f"scale_factor must be an int or an (h, w) pair of ints, got {scale_factor!r}")
    integral = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise TypeError(f"scale_factor must be an int or an (h, w) pair of ints, got {scale_factor!r}")
        if not math.isfinite(item) or item != int(item) or item < 1:
            raise ValueError(f"scale_factor must be a positive integer (or a pair of them), "
                             f"got {scale_factor!r}")
        integral.append(int(item))
    return integral[0], integral[1]


class Upsample(Module):
    """Repeat each pixel ``scale_factor`` times along the height and the width:
    ``(N, C, H, W) -> (N, C, H * sh, W * sw)``.  Backward sums each block of the
    gradient.  Keyword-only arguments (PyTorch's first positional one is ``size``,
    which this layer does not take)."""

    def __init__(self, *, scale_factor=2, mode: str = "nearest"):
        super().__init__()
        self.scale_factor = _scale_factor_arg(scale_factor)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self._x_shape = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = F.as_array(x)
        if x.ndim != 4:
            raise ValueError(f"Upsample expects (N, C, H, W) input, got shape {x.shape}")
        self._x_shape = n, c, height, width = x.shape
        sh, sw = self.scale_factor
        y = np.empty((n, c, height * sh, width * sw), dtype=x.dtype)
        y.reshape(n, c, height, sh, width, sw)[...] = x[:, :, :, None, :, None]   # one pass
        return y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._x_shape is None:
            raise RuntimeError("Upsample.backward called before forward")
        n, c, height, width = self._x_shape
        sh, sw = self.scale_factor
        return grad_y.reshape(n, c, height, sh, width, sw).sum(axis=(3, 5))

    def kernel_ops(self) -> frozenset:
        return frozenset()

    def config(self) -> dict:
        return {"scale_factor": self.scale_factor, "mode": self.mode}

    def extra_repr(self) -> str:
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}"
