"""Argument checks shared by `fastconv.functional`, the general convolutions and the
layers: each normalises one argument or raises a `ValueError` / `TypeError` naming it.

Sizes are bounded so that no kernel index can overflow: `MAX_AXIS` per axis for
kernel sizes, strides, paddings and padded inputs, and no implied array (padded
input, output) larger than the machine's memory."""

from __future__ import annotations

import functools
import math
import numbers
import os

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Largest kernel size, stride, padding, output size and padded input size per axis.
# The JIT loops compute offsets, window ends and products of two such values in
# int64 without overflow checks; below 2**31 each, every one of them fits.
MAX_AXIS = 2**31 - 1


@functools.lru_cache(maxsize=None)
def memory_bytes() -> int:
    """This machine's physical memory (2**47 bytes where it cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 2**47


def check_fits_memory(what: str, array: str, shape, itemsize: int, cause: str) -> None:
    """A ValueError when an array the call implies could not fit in memory (before
    any backend tries to allocate it, or a JIT loop to walk it)."""
    count = math.prod(shape)
    if count * itemsize > memory_bytes():
        raise ValueError(
            f"{what}: the {array} would be {'x'.join(map(str, shape))} = {count:.3g} elements "
            f"({count * itemsize / 2**30:.3g} GiB), more than this machine's memory "
            f"({memory_bytes() / 2**30:.3g} GiB); check {cause}")


def padded_fits(what: str, shape, padding, itemsize: int) -> None:
    n, c, height, width = shape
    padded = (n, c, height + 2 * padding[0], width + 2 * padding[1])
    check_fits_memory(what, "zero-padded input", padded, itemsize, "padding")


def as_array(x, name: str = "x") -> np.ndarray:
    """``x`` as a `numpy.ndarray`: CPU torch tensors and other array-likes go through
    `numpy.asarray` (sharing memory where they can); masked arrays are refused, as
    every kernel would silently ignore their mask."""
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a numpy.ma masked array, whose mask fastconv would ignore: "
                        f"pass {name}.filled(value) (or {name}.data to drop the mask) instead")
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        # e.g. a tensor that requires grad or lives on a GPU: PyTorch says what to call
        raise TypeError(f"{name} must be an array (numpy.ndarray, CPU torch.Tensor, nested "
                        f"list), got {type(x).__name__}: {exc}") from None


def pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= minimum, as a tuple of Python ints."""
    # Fast paths: plain ints, and the normalised tuples layers pass on every forward.
    if type(value) is int and minimum <= value <= MAX_AXIS:
        return value, value
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        if minimum <= value[0] <= MAX_AXIS and minimum <= value[1] <= MAX_AXIS:
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
    if max(items) > MAX_AXIS:
        raise ValueError(f"{name} must be at most 2**31 - 1 = {MAX_AXIS} per axis, got {value!r}")
    return int(items[0]), int(items[1])


def float_array(x, name: str, ndim: int, layout: str) -> np.ndarray:
    """Check ndim and float dtype; return a C-contiguous array (copying if needed)."""
    if type(x) is np.ndarray and x.ndim == ndim and x.flags.c_contiguous and x.dtype in FLOAT_DTYPES \
            and x.size:
        return x                        # the usual call, in a quarter of the checks' time
    x = as_array(x, name)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {x.shape}")
    if 0 in x.shape:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    return np.ascontiguousarray(x)


def same_dtype(reference: np.ndarray, ref_name: str, **others: np.ndarray) -> None:
    for name, arr in others.items():
        if arr.dtype is not reference.dtype and arr.dtype != reference.dtype:
            raise TypeError(
                f"{name} has dtype {arr.dtype} but {ref_name} has {reference.dtype}; "
                "cast one of them so they match"
            )


def expect_shape(arr: np.ndarray, name: str, expected: tuple) -> None:
    if arr.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {arr.shape}")


def output_hw(in_hw, kernel_size, stride, padding, what: str) -> tuple[int, int]:
    """Spatial output size; the kernel must fit inside the padded input."""
    (height, width), (kh, kw), (sh, sw), (ph, pw) = in_hw, kernel_size, stride, padding
    padded_h, padded_w = height + 2 * ph, width + 2 * pw
    if kh <= padded_h <= MAX_AXIS and kw <= padded_w <= MAX_AXIS:     # every valid call: 0.3 us
        return (padded_h - kh) // sh + 1, (padded_w - kw) // sw + 1
    return _checked_output_hw(in_hw, kernel_size, stride, padding, what)


def _checked_output_hw(in_hw, kernel_size, stride, padding, what: str) -> tuple[int, int]:
    """`output_hw` axis by axis, raising for the first that does not fit."""
    out = []
    for size, k, s, p, axis in zip(in_hw, kernel_size, stride, padding, ("height", "width")):
        if size + 2 * p > MAX_AXIS:
            raise ValueError(
                f"{what}: padding {p} makes the padded input {axis} {size} + 2*{p} = "
                f"{size + 2 * p}, more than 2**31 - 1 = {MAX_AXIS}")
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
    if max(shape) > MAX_AXIS:
        raise ValueError(f"{name} sizes must be at most 2**31 - 1 = {MAX_AXIS}, got {x_shape!r}")
    return shape


def gradient_input_shape(x_shape, grad_y: np.ndarray, what: str):
    """``x_shape`` of a pooling backward, whose gradient (``x_shape``) is allocated."""
    x_shape = input_shape(x_shape)
    check_fits_memory(what, "input gradient", x_shape, grad_y.itemsize, "x_shape")
    return x_shape
