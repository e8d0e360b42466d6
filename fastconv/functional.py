"""The kernel interface: validate arguments once, in Python, then dispatch.

Every function here checks shapes, dtypes and hyper-parameters and raises a
`ValueError` / `TypeError` naming the offending argument *before* any backend (and so
any unchecked JIT kernel) runs.  Backends receive C-contiguous float32/float64 arrays
of matching dtype and ``(h, w)`` tuples, see `fastconv.backends`.

Semantics follow PyTorch: NCHW layout, convolution is cross-correlation
(`F.conv2d`), `im2col`/`col2im` are `F.unfold`/`F.fold`, average pooling counts zero
padding (`count_include_pad=True`), max pooling returns flat ``h * W + w`` indices into
each input plane and breaks ties toward the first maximum, and
`softmax_cross_entropy` is the mean of `F.cross_entropy`.

Arrays may be NumPy arrays, CPU ``torch.Tensor``s or nested lists: anything
`numpy.asarray` takes (without a copy where the memory can be shared); results are
NumPy arrays.  Masked arrays are refused (their mask would be ignored).  Sizes are
bounded so that no kernel index can overflow: `MAX_AXIS` per axis for kernel sizes,
strides, paddings and padded inputs, and no implied array (padded input, output)
larger than the machine's memory.
"""

from __future__ import annotations

import functools
import math
import numbers
import os

import numpy as np

from fastconv.backends import get_backend

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------- checks
# Largest kernel size, stride, padding, output size and padded input size per axis.
# The JIT loops compute offsets, window ends and products of two such values in
# int64 without overflow checks; below 2**31 each, every one of them fits.
MAX_AXIS = 2**31 - 1


@functools.lru_cache(maxsize=None)
def _memory_bytes() -> int:
    """This machine's physical memory (2**47 bytes where it cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 2**47


def _check_fits_memory(what: str, array: str, shape, itemsize: int, cause: str) -> None:
    """A ValueError when an array the call implies could not fit in memory (before
    any backend tries to allocate it, or a JIT loop to walk it)."""
    count = math.prod(shape)
    if count * itemsize > _memory_bytes():
        raise ValueError(
            f"{what}: the {array} would be {'x'.join(map(str, shape))} = {count:.3g} elements "
            f"({count * itemsize / 2**30:.3g} GiB), more than this machine's memory "
            f"({_memory_bytes() / 2**30:.3g} GiB); check {cause}")


def _padded_fits(what: str, shape, padding, itemsize: int) -> None:
    n, c, height, width = shape
    padded = (n, c, height + 2 * padding[0], width + 2 * padding[1])
    _check_fits_memory(what, "zero-padded input", padded, itemsize, "padding")


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


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= minimum, as a tuple of Python ints."""
    # Fast path: layers call this on every forward with already-normalised tuples.
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


def _float_array(x, name: str, ndim: int, layout: str) -> np.ndarray:
    """Check ndim and float dtype; return a C-contiguous array (copying if needed)."""
    x = as_array(x, name)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {x.shape}")
    if 0 in x.shape:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _same_dtype(reference: np.ndarray, ref_name: str, **others: np.ndarray) -> None:
    for name, arr in others.items():
        if arr.dtype != reference.dtype:
            raise TypeError(
                f"{name} has dtype {arr.dtype} but {ref_name} has {reference.dtype}; "
                "cast one of them so they match"
            )


def _expect_shape(arr: np.ndarray, name: str, expected: tuple) -> None:
    if arr.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {arr.shape}")


def _output_hw(in_hw, kernel_size, stride, padding, what: str) -> tuple[int, int]:
    """Spatial output size; the kernel must fit inside the padded input."""
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


def _pool_params(kernel_size, stride, padding):
    kernel_size = _pair(kernel_size, "kernel_size", 1)
    stride = kernel_size if stride is None else _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    for p, k in zip(padding, kernel_size):
        if p > k // 2:
            # PyTorch's rule: otherwise a window could lie entirely in the padding.
            raise ValueError(
                f"padding {padding} must be at most half of kernel_size {kernel_size}"
            )
    return kernel_size, stride, padding


def _input_shape(x_shape, name: str = "x_shape") -> tuple[int, int, int, int]:
    try:
        shape = tuple(int(v) for v in x_shape)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of 4 ints (N, C, H, W), got {x_shape!r}") from None
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"{name} must be 4 positive ints (N, C, H, W), got {x_shape!r}")
    if max(shape) > MAX_AXIS:
        raise ValueError(f"{name} sizes must be at most 2**31 - 1 = {MAX_AXIS}, got {x_shape!r}")
    return shape


def _gradient_input_shape(x_shape, grad_y: np.ndarray, what: str):
    """``x_shape`` of a pooling backward, whose gradient (``x_shape``) is allocated."""
    x_shape = _input_shape(x_shape)
    _check_fits_memory(what, "input gradient", x_shape, grad_y.itemsize, "x_shape")
    return x_shape


def conv_output_size(in_hw, kernel_size, stride=1, padding=0) -> tuple[int, int]:
    """(out_h, out_w) of a convolution or pooling window over an (H, W) input."""
    return _output_hw(
        in_hw, _pair(kernel_size, "kernel_size", 1), _pair(stride, "stride", 1),
        _pair(padding, "padding", 0), "conv_output_size",
    )


# --------------------------------------------------------------------------- im2col
def im2col(x, kernel_size, stride=1, padding=0) -> np.ndarray:
    """Unfold sliding windows: ``(N, C, H, W) -> (N, C*kh*kw, out_h*out_w)``.

    Row ``c*kh*kw + i*kw + j`` holds input channel ``c`` at window offset ``(i, j)``,
    exactly as `torch.nn.functional.unfold`.  Report 000's 'sliding' mode is
    ``stride=1``; its 'distinct' mode is ``stride=kernel_size``.
    """
    x = _float_array(x, "x", 4, "(N, C, H, W)")
    kernel_size = _pair(kernel_size, "kernel_size", 1)
    stride = _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    out_h, out_w = _output_hw(x.shape[2:], kernel_size, stride, padding, "im2col")
    _padded_fits("im2col", x.shape, padding, x.itemsize)
    n, c = x.shape[:2]
    _check_fits_memory("im2col", "output", (n, c * kernel_size[0] * kernel_size[1], out_h * out_w),
                       x.itemsize, "kernel_size, stride and padding")
    return get_backend().im2col(x, kernel_size, stride, padding)


def col2im(cols, output_size, kernel_size, stride=1, padding=0) -> np.ndarray:
    """Fold columns back to images, summing overlaps (`torch.nn.functional.fold`).

    ``cols`` is ``(N, C*kh*kw, L)``; ``output_size`` is the image's ``(H, W)``.
    """
    cols = _float_array(cols, "cols", 3, "(N, C*kh*kw, L)")
    height, width = _pair(output_size, "output_size", 1)
    kernel_size = _pair(kernel_size, "kernel_size", 1)
    stride = _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    out_h, out_w = _output_hw((height, width), kernel_size, stride, padding, "col2im")
    window = kernel_size[0] * kernel_size[1]
    if cols.shape[1] % window:
        raise ValueError(
            f"cols.shape[1] = {cols.shape[1]} must be a multiple of kh*kw = {window}"
        )
    if cols.shape[2] != out_h * out_w:
        raise ValueError(
            f"cols.shape[2] = {cols.shape[2]} must equal the number of windows "
            f"out_h*out_w = {out_h}*{out_w} = {out_h * out_w} for output_size {(height, width)}"
        )
    shape = (cols.shape[0], cols.shape[1] // window, height, width)
    _check_fits_memory("col2im", "output", shape, cols.itemsize, "output_size")
    _padded_fits("col2im", shape, padding, cols.itemsize)
    return get_backend().col2im(cols, (height, width), kernel_size, stride, padding)


# --------------------------------------------------------------------------- conv
def _conv_args(x, w, stride, padding, what):
    x = _float_array(x, "x", 4, "(N, C_in, H, W)")
    w = _float_array(w, "w", 4, "(C_out, C_in, kh, kw)")
    _same_dtype(x, "x", w=w)
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"{what}: channel mismatch, x has C_in = {x.shape[1]} channels but w expects "
            f"{w.shape[1]} (w has shape {w.shape})"
        )
    stride = _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    out_hw = _output_hw(x.shape[2:], w.shape[2:], stride, padding, what)
    _padded_fits(what, x.shape, padding, x.itemsize)
    _check_fits_memory(what, "output", (x.shape[0], w.shape[0], *out_hw), x.itemsize,
                       "stride and padding")
    return x, w, stride, padding, out_hw


def _bias_arg(b, x, w):
    if b is None:
        return None
    b = _float_array(b, "b", 1, "(C_out,)")
    _same_dtype(x, "x", b=b)
    _expect_shape(b, "b", (w.shape[0],))
    return b


def conv2d(x, w, b=None, stride=1, padding=0) -> np.ndarray:
    """2-D cross-correlation plus bias, as `torch.nn.functional.conv2d` (no dilation, groups=1).

    x: ``(N, C_in, H, W)``; w: ``(C_out, C_in, kh, kw)``; b: ``(C_out,)`` or None.
    Returns ``(N, C_out, out_h, out_w)``.
    """
    x, w, stride, padding, _ = _conv_args(x, w, stride, padding, "conv2d")
    b = _bias_arg(b, x, w)
    return get_backend().conv2d(x, w, b, stride, padding)


def conv2d_backward(grad_y, x, w, stride=1, padding=0):
    """Gradients of `conv2d` w.r.t. its inputs: ``(grad_x, grad_w, grad_b)``."""
    x, w, stride, padding, (out_h, out_w) = _conv_args(x, w, stride, padding, "conv2d_backward")
    grad_y = _float_array(grad_y, "grad_y", 4, "(N, C_out, out_h, out_w)")
    _same_dtype(x, "x", grad_y=grad_y)
    _expect_shape(grad_y, "grad_y", (x.shape[0], w.shape[0], out_h, out_w))
    return get_backend().conv2d_backward(grad_y, x, w, stride, padding)


# --------------------------------------------------------------------------- pooling
def avg_pool2d(x, kernel_size, stride=None, padding=0) -> np.ndarray:
    """Average pooling, zero padding counted in the mean (PyTorch's default).

    ``stride`` defaults to ``kernel_size``.  Windows that do not fit are dropped
    (floor mode), as in PyTorch.
    """
    x = _float_array(x, "x", 4, "(N, C, H, W)")
    kernel_size, stride, padding = _pool_params(kernel_size, stride, padding)
    _output_hw(x.shape[2:], kernel_size, stride, padding, "avg_pool2d")
    _padded_fits("avg_pool2d", x.shape, padding, x.itemsize)
    return get_backend().avg_pool2d(x, kernel_size, stride, padding)


def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride=None, padding=0) -> np.ndarray:
    """Gradient of `avg_pool2d` w.r.t. its input of shape ``x_shape``."""
    grad_y = _float_array(grad_y, "grad_y", 4, "(N, C, out_h, out_w)")
    x_shape = _gradient_input_shape(x_shape, grad_y, "avg_pool2d_backward")
    kernel_size, stride, padding = _pool_params(kernel_size, stride, padding)
    out_hw = _output_hw(x_shape[2:], kernel_size, stride, padding, "avg_pool2d_backward")
    _padded_fits("avg_pool2d_backward", x_shape, padding, grad_y.itemsize)
    _expect_shape(grad_y, "grad_y", (*x_shape[:2], *out_hw))
    return get_backend().avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max pooling: ``(y, indices)``, indices int64 flat ``h * W + w`` into each plane.

    Padding is -inf (never selected); ties go to the first maximum in row-major
    window order, as `F.max_pool2d(..., return_indices=True)`.
    """
    x = _float_array(x, "x", 4, "(N, C, H, W)")
    kernel_size, stride, padding = _pool_params(kernel_size, stride, padding)
    _output_hw(x.shape[2:], kernel_size, stride, padding, "max_pool2d")
    _padded_fits("max_pool2d", x.shape, padding, x.itemsize)
    return get_backend().max_pool2d(x, kernel_size, stride, padding)


def max_pool2d_backward(grad_y, indices, x_shape, kernel_size, stride=None, padding=0):
    """Gradient of `max_pool2d`: each ``grad_y`` element is routed to its argmax."""
    grad_y = _float_array(grad_y, "grad_y", 4, "(N, C, out_h, out_w)")
    x_shape = _gradient_input_shape(x_shape, grad_y, "max_pool2d_backward")
    kernel_size, stride, padding = _pool_params(kernel_size, stride, padding)
    out_hw = _output_hw(x_shape[2:], kernel_size, stride, padding, "max_pool2d_backward")
    _padded_fits("max_pool2d_backward", x_shape, padding, grad_y.itemsize)
    _expect_shape(grad_y, "grad_y", (*x_shape[:2], *out_hw))
    indices = as_array(indices, "indices")
    if indices.dtype.kind not in "iu":
        raise TypeError("indices must be an integer numpy.ndarray as returned by max_pool2d")
    _expect_shape(indices, "indices", grad_y.shape)
    plane = x_shape[2] * x_shape[3]
    if indices.min() < 0 or indices.max() >= plane:
        # An out-of-range index would make a JIT kernel write outside grad_x.
        raise ValueError(f"indices must lie in [0, H*W) = [0, {plane})")
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    return get_backend().max_pool2d_backward(grad_y, indices, x_shape, kernel_size, stride, padding)


# --------------------------------------------------------------------------- loss
def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy and its gradient: ``(loss, grad_logits)``.

    ``labels`` is either int class indices of shape ``(N,)`` or target distributions
    of shape ``(N, K)`` (one-hot or soft, rows summing to 1).  ``loss`` is a Python
    float; ``grad_logits = (softmax(logits) - target) / N``.
    """
    logits = _float_array(logits, "logits", 2, "(N, K)")
    n, k = logits.shape
    labels = as_array(labels, "labels")
    if labels.ndim == 1:
        if labels.dtype.kind not in "iu":
            raise TypeError(f"1-D labels must be integer class indices, got dtype {labels.dtype}")
        _expect_shape(labels, "labels", (n,))
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"labels must lie in [0, {k}) for {k} classes")
        target = np.zeros_like(logits)
        target[np.arange(n), labels] = 1
    elif labels.ndim == 2:
        if labels.dtype.kind != "f":
            raise TypeError(f"2-D labels must be float distributions, got dtype {labels.dtype}")
        _expect_shape(labels, "labels", (n, k))
        target = np.ascontiguousarray(labels, dtype=logits.dtype)
    else:
        raise ValueError(f"labels must be (N,) int or (N, K) float, got shape {labels.shape}")
    loss, grad = get_backend().softmax_cross_entropy(logits, target)
    return float(loss), grad


# =========================================================================== fused ops
# Optional in a backend: one that implements them (numba) runs them in one pass;
# for any other the same result is composed here from the kernels above.
def _fused_kernel(op: str):
    return getattr(get_backend(), op, None)


def conv2d_relu(x, w, b=None, stride=1, padding=0) -> np.ndarray:
    """``max(conv2d(x, w, b, stride, padding), 0)``, fused into the convolution's
    write-out where the backend can.  Returns ``(N, C_out, out_h, out_w)``."""
    x, w, stride, padding, _ = _conv_args(x, w, stride, padding, "conv2d_relu")
    b = _bias_arg(b, x, w)
    fused = _fused_kernel("conv2d_relu")
    if fused is not None:
        return fused(x, w, b, stride, padding)
    y = get_backend().conv2d(x, w, b, stride, padding)
    return np.maximum(y, 0, out=y)


def conv2d_relu_backward(grad_y, y, x, w, stride=1, padding=0, input_grad=True):
    """Gradients of `conv2d_relu`: ``(grad_x, grad_w, grad_b)``.

    ``y`` is the forward output (the ReLU passes gradient where ``y > 0``, so the
    gradient at exactly 0 is 0, as in PyTorch).  With ``input_grad=False`` (a
    network's first layer) ``grad_x`` is not computed and None is returned for it.
    """
    x, w, stride, padding, (out_h, out_w) = _conv_args(x, w, stride, padding, "conv2d_relu_backward")
    grad_y = _float_array(grad_y, "grad_y", 4, "(N, C_out, out_h, out_w)")
    y = _float_array(y, "y", 4, "(N, C_out, out_h, out_w)")
    _same_dtype(x, "x", grad_y=grad_y, y=y)
    expected = (x.shape[0], w.shape[0], out_h, out_w)
    _expect_shape(grad_y, "grad_y", expected)
    _expect_shape(y, "y", expected)
    return _relu_backward(grad_y, y, x, w, stride, padding, bool(input_grad))


def _relu_backward(grad_y, y, x, w, stride, padding, input_grad):
    fused = _fused_kernel("conv2d_relu_backward")
    if fused is not None:
        return fused(grad_y, y, x, w, stride, padding, input_grad)
    grad_z = grad_y * (y > 0).astype(grad_y.dtype)
    if not input_grad:
        return (None, *_backward_weights(grad_z, x, w, stride, padding))
    return get_backend().conv2d_backward(grad_z, x, w, stride, padding)


def conv2d_backward_weights(grad_y, x, w, stride=1, padding=0):
    """``(grad_w, grad_b)`` of `conv2d`, skipping the input gradient (a network's
    first layer, whose input is data, needs none)."""
    x, w, stride, padding, (out_h, out_w) = _conv_args(x, w, stride, padding, "conv2d_backward_weights")
    grad_y = _float_array(grad_y, "grad_y", 4, "(N, C_out, out_h, out_w)")
    _same_dtype(x, "x", grad_y=grad_y)
    _expect_shape(grad_y, "grad_y", (x.shape[0], w.shape[0], out_h, out_w))
    return _backward_weights(grad_y, x, w, stride, padding)


def _backward_weights(grad_y, x, w, stride, padding):
    fused = _fused_kernel("conv2d_backward_weights")
    if fused is not None:
        return fused(grad_y, x, w, stride, padding)
    _, grad_w, grad_b = get_backend().conv2d_backward(grad_y, x, w, stride, padding)
    return grad_w, grad_b


_POOL2 = ((2, 2), (2, 2), (0, 0))   # kernel, stride, padding of the fused pooling


def _pool2_args(x, w, stride, padding, what):
    x, w, stride, padding, (out_h, out_w) = _conv_args(x, w, stride, padding, what)
    if out_h < 2 or out_w < 2:
        raise ValueError(f"{what}: the convolution's output ({out_h}x{out_w}) is smaller than "
                         "the 2x2 pooling window")
    return x, w, stride, padding, (out_h, out_w)


def conv2d_relu_avgpool2(x, w, b=None, stride=1, padding=0):
    """Report 000's block, conv + bias + ReLU + 2x2 average pooling (stride 2, floor
    mode): ``(pooled, y)`` with ``y = conv2d_relu(x, w, b, stride, padding)`` (kept
    for the backward pass and for feature-map plots) and ``pooled = avg_pool2d(y, 2)``."""
    x, w, stride, padding, _ = _pool2_args(x, w, stride, padding, "conv2d_relu_avgpool2")
    b = _bias_arg(b, x, w)
    fused = _fused_kernel("conv2d_relu_avgpool2")
    if fused is not None:
        return fused(x, w, b, stride, padding)
    y = conv2d_relu(x, w, b, stride, padding)
    return get_backend().avg_pool2d(y, *_POOL2), y


def conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, stride=1, padding=0, input_grad=True):
    """Gradients of `conv2d_relu_avgpool2`: ``(grad_x, grad_w, grad_b)``, from the
    gradient of ``pooled`` and the forward's ``y``; ``input_grad`` as in
    `conv2d_relu_backward`."""
    x, w, stride, padding, (out_h, out_w) = _pool2_args(
        x, w, stride, padding, "conv2d_relu_avgpool2_backward")
    grad_pooled = _float_array(grad_pooled, "grad_pooled", 4, "(N, C_out, out_h // 2, out_w // 2)")
    y = _float_array(y, "y", 4, "(N, C_out, out_h, out_w)")
    _same_dtype(x, "x", grad_pooled=grad_pooled, y=y)
    _expect_shape(y, "y", (x.shape[0], w.shape[0], out_h, out_w))
    _expect_shape(grad_pooled, "grad_pooled", (x.shape[0], w.shape[0], out_h // 2, out_w // 2))
    fused = _fused_kernel("conv2d_relu_avgpool2_backward")
    if fused is not None:
        return fused(grad_pooled, y, x, w, stride, padding, bool(input_grad))
    grad_y = get_backend().avg_pool2d_backward(grad_pooled, y.shape, *_POOL2)
    return _relu_backward(grad_y, y, x, w, stride, padding, bool(input_grad))


# =========================================================================== batch norm
# Training-mode batch normalisation, optional in a backend like the fused ops above
# (eval mode is one per-channel affine map, left to the layer).
def _norm_args(x, weight, what):
    x = as_array(x, "x")
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"{what}: x must be (N, C), (N, C, L) or (N, C, H, W), got shape {x.shape}")
    x = _float_array(x, "x", x.ndim, "(N, C, ...)")
    weight = _float_array(weight, "weight", 1, "(C,)")
    _same_dtype(x, "x", weight=weight)
    _expect_shape(weight, "weight", (x.shape[1],))
    if x.size // x.shape[1] < 2:
        raise ValueError(f"{what}: batch statistics need more than 1 value per channel, "
                         f"got input shape {x.shape}")
    return x, weight


def _stats_arg(values, name, x):
    values = _float_array(values, name, 1, "(C,)")
    _same_dtype(x, "x", **{name: values})
    _expect_shape(values, name, (x.shape[1],))
    return values


def batch_norm(x, weight, bias, eps=1e-5):
    """Normalise each channel (axis 1) of ``x`` with its batch mean and biased
    variance, then scale by ``weight`` and shift by ``bias``: ``(y, mean, var)``."""
    x, weight = _norm_args(x, weight, "batch_norm")
    bias = _stats_arg(bias, "bias", x)
    eps = float(eps)
    fused = _fused_kernel("batch_norm")
    if fused is not None:
        return fused(x, weight, bias, eps)
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    count = x3.shape[0] * x3.shape[2]
    # Per-channel sums as einsum reductions: 2-3x faster than .sum(axis=(0, 2)).
    mean = np.einsum("ncl->c", x3) / count
    centered = x3 - mean[:, None]
    var = np.einsum("ncl,ncl->c", centered, centered) / count
    y = centered * (weight / np.sqrt(var + eps))[:, None]
    y += bias[:, None]
    return y.reshape(x.shape), mean, var


def batch_norm_backward(grad_y, x, mean, var, weight, eps=1e-5):
    """Gradients of `batch_norm` (whose statistics depend on ``x``):
    ``(grad_x, grad_weight, grad_bias)``."""
    x, weight = _norm_args(x, weight, "batch_norm_backward")
    grad_y = _float_array(grad_y, "grad_y", x.ndim, "like x")
    _same_dtype(x, "x", grad_y=grad_y)
    _expect_shape(grad_y, "grad_y", x.shape)
    mean = _stats_arg(mean, "mean", x)
    var = _stats_arg(var, "var", x)
    eps = float(eps)
    fused = _fused_kernel("batch_norm_backward")
    if fused is not None:
        return fused(grad_y, x, mean, var, weight, eps)
    x3 = x.reshape(x.shape[0], x.shape[1], -1)
    grad3 = grad_y.reshape(x3.shape)
    count = x3.shape[0] * x3.shape[2]
    inv_std = 1.0 / np.sqrt(var + eps)
    centered = x3 - mean[:, None]
    sum_grad = np.einsum("ncl->c", grad3)
    grad_weight = np.einsum("ncl,ncl->c", grad3, centered) * inv_std
    # grad_x = scale * (grad - mean(grad) - x_hat * mean(grad * x_hat)), built in place.
    scale = weight * inv_std
    grad_x = centered * (-(inv_std * grad_weight / count))[:, None]
    grad_x -= (sum_grad / count)[:, None]
    grad_x += grad3
    grad_x *= scale[:, None]
    return grad_x.reshape(x.shape), grad_weight, sum_grad
