"""The general convolution path: ``dilation``, ``groups``, ``padding="same"/"valid"``
and transposed convolution.

`fastconv.functional.conv` hands a call over to here when it has a string padding
or a dilation / groups other than 1 (`applies`).  After validating
(`fastconv.functional.conv_params`), a call that turns out plain again (``"same"``
with no dilation or groups) goes to `fastconv.functional.plain_conv` -- and so to
every backend's tuned plain kernels -- with the input already padded where
``"same"`` needs an extra bottom/right row or column.  The rest dispatches to the
backend's optional general kernels (see `fastconv.backends`), or to
`fastconv.functional.compose` for a backend that has none.  Transposed convolution
is the input gradient of the convolution it transposes; its backward is that
convolution's forward (input gradient) and weight gradient with the roles of input
and output swapped.
"""

from __future__ import annotations

import numpy as np

from fastconv.backends import get_backend
from fastconv.functional import arguments, compose, plain_conv
from fastconv.functional import conv_params as P


def applies(padding, dilation, groups) -> bool:
    """Whether a convolution call needs this module (cheap: called on every forward)."""
    return isinstance(padding, str) or not (P.is_default(dilation) and P.is_default(groups))


# --------------------------------------------------------------------------- dispatch
def _forward(x, w, b, spec):
    backend = get_backend()
    if spec.plain:
        return backend.conv2d(x, w, b, spec.stride, spec.padding)
    kernel = getattr(backend, "conv2d_general", None)
    if kernel is not None:
        return kernel(x, w, b, spec.stride, spec.padding, spec.dilation, spec.groups)
    return compose.conv2d(backend, x, w, b, spec)


def _backward(grad_y, x, w, spec, input_grad):
    """``(grad_x or None, grad_w, grad_b)`` of a validated convolution."""
    backend = get_backend()
    if spec.plain:
        if input_grad:
            return backend.conv2d_backward(grad_y, x, w, spec.stride, spec.padding)
        return (None, *plain_conv.backward_weights(grad_y, x, w, spec.stride, spec.padding))
    kernel = getattr(backend, "conv2d_general_backward", None)
    if kernel is not None:
        return kernel(grad_y, x, w, spec.stride, spec.padding, spec.dilation, spec.groups, input_grad)
    return compose.conv2d_backward(backend, grad_y, x, w, spec, input_grad)


def _crop(grad_x, spec):
    """Drop the gradient of the ``extra`` padding that ``"same"`` added to x."""
    if grad_x is None or spec.extra == (0, 0):
        return grad_x
    height, width = spec.original_hw
    return np.ascontiguousarray(grad_x[:, :, :height, :width])


def _array_arg(array, name, x, expected):
    array = arguments.float_array(array, name, 4, "(N, C, H, W)")
    arguments.same_dtype(x, "x", **{name: array})
    arguments.expect_shape(array, name, expected)
    return array


def _bias(b, x, channels):
    if b is None:
        return None
    b = arguments.float_array(b, "b", 1, "(C_out,)")
    arguments.same_dtype(x, "x", b=b)
    arguments.expect_shape(b, "b", (channels,))
    return b


# --------------------------------------------------------------------------- conv
def conv2d(x, w, b, stride, padding, dilation, groups):
    x, w, spec = P.conv_args(x, w, stride, padding, dilation, groups, "conv2d")
    if spec.plain:
        return plain_conv.conv2d(x, w, b, spec.stride, spec.padding)
    return _forward(x, w, plain_conv.bias_arg(b, x, w), spec)


def conv2d_backward(grad_y, x, w, stride, padding, dilation, groups):
    x, w, spec = P.conv_args(x, w, stride, padding, dilation, groups, "conv2d_backward")
    grad_y = _array_arg(grad_y, "grad_y", x, (x.shape[0], w.shape[0], *spec.out_hw))
    grad_x, grad_w, grad_b = _backward(grad_y, x, w, spec, input_grad=True)
    return _crop(grad_x, spec), grad_w, grad_b


def conv2d_backward_weights(grad_y, x, w, stride, padding, dilation, groups):
    x, w, spec = P.conv_args(x, w, stride, padding, dilation, groups, "conv2d_backward_weights")
    grad_y = _array_arg(grad_y, "grad_y", x, (x.shape[0], w.shape[0], *spec.out_hw))
    _, grad_w, grad_b = _backward(grad_y, x, w, spec, input_grad=False)
    return grad_w, grad_b


def conv2d_relu(x, w, b, stride, padding, dilation, groups):
    x, w, spec = P.conv_args(x, w, stride, padding, dilation, groups, "conv2d_relu")
    if spec.plain:
        return plain_conv.conv2d_relu(x, w, b, spec.stride, spec.padding)
    y = _forward(x, w, plain_conv.bias_arg(b, x, w), spec)
    return np.maximum(y, 0, out=y)


def conv2d_relu_backward(grad_y, y, x, w, stride, padding, input_grad, dilation, groups):
    x, w, spec = P.conv_args(x, w, stride, padding, dilation, groups, "conv2d_relu_backward")
    expected = (x.shape[0], w.shape[0], *spec.out_hw)
    grad_y = _array_arg(grad_y, "grad_y", x, expected)
    y = _array_arg(y, "y", x, expected)
    if spec.plain:
        grads = plain_conv.conv2d_relu_backward(grad_y, y, x, w, spec.stride, spec.padding, input_grad)
    else:
        grads = _backward(grad_y * (y > 0).astype(grad_y.dtype), x, w, spec, bool(input_grad))
    return (_crop(grads[0], spec), *grads[1:])


def _pool2_spec(x, w, stride, padding, dilation, groups, what):
    x, w, spec = P.conv_args(x, w, stride, padding, dilation, groups, what)
    if min(spec.out_hw) < 2:
        raise ValueError(f"{what}: the convolution's output ({spec.out_hw[0]}x{spec.out_hw[1]}) is "
                         "smaller than the 2x2 pooling window")
    return x, w, spec


def conv2d_relu_avgpool2(x, w, b, stride, padding, dilation, groups):
    x, w, spec = _pool2_spec(x, w, stride, padding, dilation, groups, "conv2d_relu_avgpool2")
    if spec.plain:
        return plain_conv.conv2d_relu_avgpool2(x, w, b, spec.stride, spec.padding)
    y = _forward(x, w, plain_conv.bias_arg(b, x, w), spec)
    np.maximum(y, 0, out=y)
    return get_backend().avg_pool2d(y, *plain_conv.POOL2), y


def conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, stride, padding, input_grad, dilation, groups):
    x, w, spec = _pool2_spec(x, w, stride, padding, dilation, groups, "conv2d_relu_avgpool2_backward")
    out_h, out_w = spec.out_hw
    y = _array_arg(y, "y", x, (x.shape[0], w.shape[0], out_h, out_w))
    grad_pooled = _array_arg(grad_pooled, "grad_pooled", x, (x.shape[0], w.shape[0], out_h // 2, out_w // 2))
    if spec.plain:
        grads = plain_conv.conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, spec.stride, spec.padding,
                                                         input_grad)
    else:
        grad_y = get_backend().avg_pool2d_backward(grad_pooled, y.shape, *plain_conv.POOL2)
        grads = _backward(grad_y * (y > 0).astype(grad_y.dtype), x, w, spec, bool(input_grad))
    return (_crop(grads[0], spec), *grads[1:])


# --------------------------------------------------------------------------- transposed
def conv_transpose2d(x, w, b, stride, padding, output_padding, dilation, groups):
    x, w, spec, output_padding = P.transpose_args(
        x, w, stride, padding, output_padding, dilation, groups, "conv_transpose2d")
    b = _bias(b, x, w.shape[1] * spec.groups)
    backend = get_backend()
    kernel = getattr(backend, "conv_transpose2d", None)
    if kernel is not None:
        return kernel(x, w, b, spec.stride, spec.padding, output_padding, spec.dilation, spec.groups)
    return compose.conv_transpose2d(backend, x, w, b, spec)


def conv_transpose2d_backward(grad_y, x, w, stride, padding, output_padding, dilation, groups):
    x, w, spec, output_padding = P.transpose_args(
        x, w, stride, padding, output_padding, dilation, groups, "conv_transpose2d_backward")
    grad_y = _array_arg(grad_y, "grad_y", x, (x.shape[0], w.shape[1] * spec.groups, *spec.in_hw))
    backend = get_backend()
    kernel = getattr(backend, "conv_transpose2d_backward", None)
    if kernel is not None:
        return kernel(grad_y, x, w, spec.stride, spec.padding, output_padding, spec.dilation, spec.groups)
    return _transpose_backward(grad_y, x, w, spec)


def _transpose_backward(grad_y, x, w, spec):
    # x is the output gradient of the convolution grad_y -> x, so its gradient is that
    # convolution's forward, and grad_w its weight gradient (rows past x's are zero).
    grad_x = _forward(grad_y, w, None, spec)
    if grad_x.shape[2:] != x.shape[2:]:
        grad_x = np.ascontiguousarray(grad_x[:, :, :x.shape[2], :x.shape[3]])
    _, grad_w, _ = _backward(compose.zero_extend(x, spec.out_hw), grad_y, w, spec, input_grad=False)
    return grad_x, grad_w, grad_y.sum(axis=(0, 2, 3))


def compose_transpose_backward(grad_y, x, w, stride, padding, dilation, groups):
    """`conv_transpose2d_backward` from the current backend's convolution kernels, for
    a backend whose own kernel cannot run a case (arguments already validated)."""
    out_hw = P.output_hw(grad_y.shape[2:], w.shape[2:], stride, padding, dilation, "conv_transpose2d_backward")
    spec = P.ConvSpec(stride, padding, dilation, groups, tuple(grad_y.shape[2:]), out_hw)
    return _transpose_backward(grad_y, x, w, spec)
