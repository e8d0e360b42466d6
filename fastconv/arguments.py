"""Argument checks shared by `fastconv.functional`, the general convolutions and the
layers: each normalises one argument or raises a `ValueError` / `TypeError` naming it."""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= minimum, as a tuple of Python ints."""
    # Fast path: layers call this on every forward with already-normalised tuples.
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        if value[0] >= minimum and value[1] >= minimum:
            return value
    items = (value, value) if isinstance(value, numbers.Integral) else value
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}") from None
    if len(items) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items
    ):
        raise TypeError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}")
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}")
    if min(items) < minimum:
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(items[0]), int(items[1])


def float_array(x, name: str, ndim: int, layout: str) -> np.ndarray:
    """Check ndim and float dtype; return a C-contiguous array (copying if needed)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {x.shape}")
    if 0 in x.shape:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    return np.ascontiguousarray(x)


def same_dtype(reference: np.ndarray, ref_name: str, **others: np.ndarray) -> None:
    for name, arr in others.items():
        if arr.dtype != reference.dtype:
            raise TypeError(
                f"{name} has dtype {arr.dtype} but {ref_name} has {reference.dtype}; "
                "cast one of them so they match"
            )


def expect_shape(arr: np.ndarray, name: str, expected: tuple) -> None:
    if arr.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {arr.shape}")


def output_hw(in_hw, kernel_size, stride, padding, what: str) -> tuple[int, int]:
    """Spatial output size; the kernel must fit inside the padded input."""
    out = []
    for size, k, s, p, axis in zip(in_hw, kernel_size, stride, padding, ("height", "width")):
        if k > size + 2 * p:
            raise ValueError(
                f"{what}: kernel {axis} {k} is larger than the padded input {axis} "
                f"{size} + 2*{p} = {size + 2 * p}"
            )
        out.append((size + 2 * p - k) // s + 1)
    return out[0], out[1]


def pool_params(kernel_size, stride, padding):
    kernel_size = pair(kernel_size, "kernel_size", 1)
    stride = kernel_size if stride is None else pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    for p, k in zip(padding, kernel_size):
        if p > k // 2:
            # PyTorch's rule: otherwise a window could lie entirely in the padding.
            raise ValueError(
                f"padding {padding} must be at most half of kernel_size {kernel_size}"
            )
    return kernel_size, stride, padding


def input_shape(x_shape, name: str = "x_shape") -> tuple[int, int, int, int]:
    try:
        shape = tuple(int(v) for v in x_shape)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of 4 ints (N, C, H, W), got {x_shape!r}") from None
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"{name} must be 4 positive ints (N, C, H, W), got {x_shape!r}")
    return shape
