"""Adaptive pooling to a fixed output size, as `torch.nn.AdaptiveAvgPool2d` /
`torch.nn.AdaptiveMaxPool2d`.

Output cell ``i`` (of ``out`` along an axis of length ``size``) pools the input
range ``[floor(i * size / out), ceil((i + 1) * size / out))``, PyTorch's bins (they
overlap when ``size`` is not a multiple of ``out``).  Three paths, one result:

* output 1x1 (global pooling, a classifier head): one NumPy reduction per plane;
* every bin the same size (``size % out == 0``): the pooling kernel of
  `fastconv.functional` with kernel = stride = ``size // out``;
* otherwise: average pooling as two small matrix products (it is separable), max
  pooling bin by bin.
"""

from __future__ import annotations

import numbers

import numpy as np

import fastconv.functional as F
from fastconv.nn.module import Module


def output_size_arg(output_size) -> tuple:
    """An int or an (h, w) pair of positive ints or None (None: the input's size)."""
    items = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else tuple(output_size)
    if len(items) != 2:
        raise TypeError(f"output_size must be an int or an (h, w) pair, got {output_size!r}")
    for item in items:
        if item is None:
            continue
        if not isinstance(item, numbers.Integral) or isinstance(item, bool):
            raise TypeError(f"output_size must be an int or an (h, w) pair of ints or None, "
                            f"got {output_size!r}")
        if item < 1:
            raise ValueError(f"output_size must be positive, got {output_size!r}")
    return tuple(None if item is None else int(item) for item in items)


def bins(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling ranges ``[start, stop)`` over an axis of ``size``."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def _averaging_matrix(size: int, out: int, dtype) -> np.ndarray:
    """``(out, size)``: row i averages bin i."""
    matrix = np.zeros((out, size), dtype=dtype)
    for row, (start, stop) in enumerate(bins(size, out)):
        matrix[row, start:stop] = 1.0 / (stop - start)
    return matrix


class _AdaptivePool2d(Module):
    _kernel = ""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size_arg(output_size)
        self._x_shape = None
        self._out = None          # the last forward's output (h, w)
        self._path = None         # "global", "kernel" or "bins": how the last forward ran
        self._indices = None      # max pooling: each output's argmax, flat h * W + w

    def _input(self, x) -> tuple[np.ndarray, tuple[int, int]]:
        x = F.as_array(x)
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects (N, C, H, W) input, got shape {x.shape}")
        out = tuple(size if wanted is None else wanted for size, wanted in zip(x.shape[2:], self.output_size))
        self._x_shape = x.shape
        if out == (1, 1):
            self._path = "global"
        elif x.shape[2] % out[0] == 0 and x.shape[3] % out[1] == 0:
            self._path = "kernel"
        else:
            self._path = "bins"
        return x, out

    def _window(self) -> tuple[int, int]:
        """Kernel = stride of the "kernel" path."""
        return self._x_shape[2] // self._out[0], self._x_shape[3] // self._out[1]

    def _check_run(self) -> None:
        if self._x_shape is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")

    def kernel_ops(self) -> frozenset:
        return frozenset() if self.output_size == (1, 1) else frozenset({self._kernel})

    def config(self) -> dict:
        return {"output_size": self.output_size}

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptivePool2d):
    """Average pooling to ``output_size`` (an int, an ``(h, w)`` pair, None for "as
    the input"); ``AdaptiveAvgPool2d(1)`` is global average pooling."""

    _kernel = "avg_pool2d"

    def forward(self, x: np.ndarray) -> np.ndarray:
        x, self._out = self._input(x)
        n, c, height, width = x.shape
        if self._path == "global":
            return x.reshape(n, c, height * width).mean(axis=2).reshape(n, c, 1, 1)
        if self._path == "kernel":
            window = self._window()
            return F.avg_pool2d(x, window, window, 0)
        rows = _averaging_matrix(height, self._out[0], x.dtype)
        cols = _averaging_matrix(width, self._out[1], x.dtype)
        return np.ascontiguousarray(rows @ x @ cols.T)

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        self._check_run()
        n, c, height, width = self._x_shape
        if self._path == "global":
            grad_x = np.empty(self._x_shape, dtype=grad_y.dtype)
            grad_x[...] = grad_y.reshape(n, c, 1, 1) * (1.0 / (height * width))
            return grad_x
        if self._path == "kernel":
            window = self._window()
            return F.avg_pool2d_backward(grad_y, self._x_shape, window, window, 0)
        rows = _averaging_matrix(height, self._out[0], grad_y.dtype)
        cols = _averaging_matrix(width, self._out[1], grad_y.dtype)
        return np.ascontiguousarray(rows.T @ grad_y @ cols)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """Max pooling to ``output_size`` (as `AdaptiveAvgPool2d`); the gradient goes to
    the first maximum of each bin (row-major), as in PyTorch."""

    _kernel = "max_pool2d"

    def forward(self, x: np.ndarray) -> np.ndarray:
        x, self._out = self._input(x)
        n, c, height, width = x.shape
        if self._path == "kernel":
            window = self._window()
            y, self._indices = F.max_pool2d(x, window, window, 0)
            return y
        planes = x.reshape(n, c, height * width)
        if self._path == "global":
            self._indices = planes.argmax(axis=2).reshape(n, c, 1, 1)
        else:
            self._indices = self._bin_argmax(x)
        flat = self._indices.reshape(n, c, -1)
        return np.take_along_axis(planes, flat, axis=2).reshape(self._indices.shape)

    def _bin_argmax(self, x: np.ndarray) -> np.ndarray:
        """Flat ``h * W + w`` index of each bin's first maximum, ``(N, C, oh, ow)``."""
        n, c, _, width = x.shape
        indices = np.empty((n, c, *self._out), dtype=np.int64)
        for i, (top, bottom) in enumerate(bins(x.shape[2], self._out[0])):
            for j, (left, right) in enumerate(bins(width, self._out[1])):
                region = x[:, :, top:bottom, left:right].reshape(n, c, -1)
                local = region.argmax(axis=2)
                indices[:, :, i, j] = (top + local // (right - left)) * width + left + local % (right - left)
        return indices

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        self._check_run()
        if self._path == "kernel":
            window = self._window()
            return F.max_pool2d_backward(grad_y, self._indices, self._x_shape, window, window, 0)
        n, c, height, width = self._x_shape
        plane = height * width
        # bins may overlap: an input element that wins several bins sums their gradients
        offsets = (np.arange(n * c, dtype=np.int64) * plane).reshape(n, c, 1, 1)
        grad_x = np.bincount((self._indices + offsets).ravel(), weights=grad_y.ravel(),
                             minlength=n * c * plane)
        return grad_x.astype(grad_y.dtype, copy=False).reshape(self._x_shape)
