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


import numpy as np

from fastconv.arguments import (  # noqa: F401  (the layers and conv modules use them too)
    FLOAT_DTYPES, MAX_AXIS, as_array, check_fits_memory as _check_fits_memory,
    expect_shape as _expect_shape, float_array as _float_array,
    gradient_input_shape as _gradient_input_shape, input_shape as _input_shape, output_hw as _output_hw,
    padded_fits as _padded_fits, pair as _pair, pool_params as _pool_params, same_dtype as _same_dtype)
from fastconv.backends import get_backend, optional_kernel as _fused_kernel
from fastconv.dense import linear, linear_backward  # noqa: F401



def conv_output_size(in_hw, kernel_size, stride=1, padding=0, dilation=1) -> tuple[int, int]:
    """(out_h, out_w) of a convolution or pooling window over an (H, W) input."""
    if not _conv_params.is_default(dilation):
        return _conv_params.output_hw(
            in_hw, _pair(kernel_size, "kernel_size", 1), _pair(stride, "stride", 1),
            _pair(padding, "padding", 0), _pair(dilation, "dilation", 1), "conv_output_size")
    return _output_hw(
        in_hw, _pair(kernel_size, "kernel_size", 1), _pair(stride, "stride", 1),
        _pair(padding, "padding", 0), "conv_output_size",
    )


# --------------------------------------------------------------------------- im2col
def im2col(x, kernel_size, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Unfold sliding windows: ``(N, C, H, W) -> (N, C*kh*kw, out_h*out_w)``.

    Row ``c*kh*kw + i*kw + j`` holds input channel ``c`` at window offset ``(i, j)``,
    exactly as `torch.nn.functional.unfold`.  Report 000's 'sliding' mode is
    ``stride=1``; its 'distinct' mode is ``stride=kernel_size``.  With ``dilation`` the
    window taps are ``dilation`` apart, as in ``F.unfold``.
    """
    if not _conv_params.is_default(dilation):
        return _general.im2col(x, kernel_size, stride, padding, dilation)
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


def col2im(cols, output_size, kernel_size, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Fold columns back to images, summing overlaps (`torch.nn.functional.fold`).

    ``cols`` is ``(N, C*kh*kw, L)``; ``output_size`` is the image's ``(H, W)``.
    """
    if not _conv_params.is_default(dilation):
        return _general.col2im(cols, output_size, kernel_size, stride, padding, dilation)
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


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """2-D cross-correlation plus bias, as `torch.nn.functional.conv2d`.

    x: ``(N, C_in, H, W)``; w: ``(C_out, C_in // groups, kh, kw)``; b: ``(C_out,)`` or
    None.  ``padding`` may also be ``"same"`` (stride 1) or ``"valid"``.
    Returns ``(N, C_out, out_h, out_w)``.
    """
    if _general.applies(padding, dilation, groups):
        return _general.conv2d(x, w, b, stride, padding, dilation, groups)
    x, w, stride, padding, _ = _conv_args(x, w, stride, padding, "conv2d")
    b = _bias_arg(b, x, w)
    return get_backend().conv2d(x, w, b, stride, padding)


def conv2d_backward(grad_y, x, w, stride=1, padding=0, dilation=1, groups=1):
    """Gradients of `conv2d` w.r.t. its inputs: ``(grad_x, grad_w, grad_b)``."""
    if _general.applies(padding, dilation, groups):
        return _general.conv2d_backward(grad_y, x, w, stride, padding, dilation, groups)
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
def conv2d_relu(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """``max(conv2d(x, w, b, stride, padding), 0)``, fused into the convolution's
    write-out where the backend can.  Returns ``(N, C_out, out_h, out_w)``."""
    if _general.applies(padding, dilation, groups):
        return _general.conv2d_relu(x, w, b, stride, padding, dilation, groups)
    x, w, stride, padding, _ = _conv_args(x, w, stride, padding, "conv2d_relu")
    b = _bias_arg(b, x, w)
    fused = _fused_kernel("conv2d_relu")
    if fused is not None:
        return fused(x, w, b, stride, padding)
    y = get_backend().conv2d(x, w, b, stride, padding)
    return np.maximum(y, 0, out=y)


def conv2d_relu_backward(grad_y, y, x, w, stride=1, padding=0, input_grad=True, dilation=1, groups=1):
    """Gradients of `conv2d_relu`: ``(grad_x, grad_w, grad_b)``.

    ``y`` is the forward output (the ReLU passes gradient where ``y > 0``, so the
    gradient at exactly 0 is 0, as in PyTorch).  With ``input_grad=False`` (a
    network's first layer) ``grad_x`` is not computed and None is returned for it.
    """
    if _general.applies(padding, dilation, groups):
        return _general.conv2d_relu_backward(grad_y, y, x, w, stride, padding, input_grad,
                                             dilation, groups)
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


def conv2d_backward_weights(grad_y, x, w, stride=1, padding=0, dilation=1, groups=1):
    """``(grad_w, grad_b)`` of `conv2d`, skipping the input gradient (a network's
    first layer, whose input is data, needs none)."""
    if _general.applies(padding, dilation, groups):
        return _general.conv2d_backward_weights(grad_y, x, w, stride, padding, dilation, groups)
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


def conv2d_relu_avgpool2(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Report 000's block, conv + bias + ReLU + 2x2 average pooling (stride 2, floor
    mode): ``(pooled, y)`` with ``y = conv2d_relu(x, w, b, stride, padding)`` (kept
    for the backward pass and for feature-map plots) and ``pooled = avg_pool2d(y, 2)``."""
    if _general.applies(padding, dilation, groups):
        return _general.conv2d_relu_avgpool2(x, w, b, stride, padding, dilation, groups)
    x, w, stride, padding, _ = _pool2_args(x, w, stride, padding, "conv2d_relu_avgpool2")
    b = _bias_arg(b, x, w)
    fused = _fused_kernel("conv2d_relu_avgpool2")
    if fused is not None:
        return fused(x, w, b, stride, padding)
    y = conv2d_relu(x, w, b, stride, padding)
    return get_backend().avg_pool2d(y, *_POOL2), y


def conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, stride=1, padding=0, input_grad=True,
                                  dilation=1, groups=1):
    """Gradients of `conv2d_relu_avgpool2`: ``(grad_x, grad_w, grad_b)``, from the
    gradient of ``pooled`` and the forward's ``y``; ``input_grad`` as in
    `conv2d_relu_backward`."""
    if _general.applies(padding, dilation, groups):
        return _general.conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, stride, padding,
                                                      input_grad, dilation, groups)
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


# =========================================================================== issue 13
# Dilation, groups, padding="same"/"valid" and transposed convolution live in their
# own modules; the convolution functions above hand such calls over to them.
from fastconv import conv_general as _general  # noqa: E402
from fastconv import conv_params as _conv_params  # noqa: E402


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Transposed convolution, as `torch.nn.functional.conv_transpose2d`: the input
    gradient of the convolution it transposes, plus bias.

    x: ``(N, C_in, H, W)``; w: ``(C_in, C_out // groups, kh, kw)``; b: ``(C_out,)`` or
    None.  Returns ``(N, C_out, H_out, W_out)`` with
    ``H_out = (H - 1)*stride - 2*padding + dilation*(kh - 1) + output_padding + 1``.
    """
    return _general.conv_transpose2d(x, w, b, stride, padding, output_padding, dilation, groups)


def conv_transpose2d_backward(grad_y, x, w, stride=1, padding=0, output_padding=0, dilation=1,
                              groups=1):
    """Gradients of `conv_transpose2d`: ``(grad_x, grad_w, grad_b)``."""
    return _general.conv_transpose2d_backward(grad_y, x, w, stride, padding, output_padding,
                                              dilation, groups)
