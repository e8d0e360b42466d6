"""Optional PyTorch adapter: the kernel interface on `torch.nn.functional` / ATen.

Only importable when PyTorch is installed; it is never a core dependency.  The
benchmark suite uses it as the "what a user would pick instead" anchor, and the test
suite runs every kernel test on it too, which cross-checks the other backends'
semantics against PyTorch's.  Arrays are shared with PyTorch without copying.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import torch

from fastconv.system import env

name = "torch"

if env.num_threads() is not None:
    torch.set_num_threads(env.num_threads())

_aten = torch.ops.aten


def _t(array: np.ndarray) -> torch.Tensor:
    if not array.flags.writeable:       # frozen weights (`nn.freeze`): the ops here only read them
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(array)
    return torch.from_numpy(array)


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.numpy()


def _shape_only(x_shape, like: torch.Tensor) -> torch.Tensor:
    """ATen's pooling backwards read only the input's shape and dtype."""
    return torch.empty(x_shape, dtype=like.dtype)


@torch.no_grad()
def im2col(x, kernel_size, stride, padding):
    return _np(torch.nn.functional.unfold(_t(x), kernel_size, stride=stride, padding=padding))


@torch.no_grad()
def col2im(cols, output_size, kernel_size, stride, padding):
    return _np(torch.nn.functional.fold(_t(cols), output_size, kernel_size, stride=stride, padding=padding))


@torch.no_grad()
def conv2d(x, w, b, stride, padding):
    bias = None if b is None else _t(b)
    return _np(torch.nn.functional.conv2d(_t(x), _t(w), bias, stride=stride, padding=padding))


@torch.no_grad()
def conv2d_backward(grad_y, x, w, stride, padding):
    grad_x, grad_w, grad_b = _aten.convolution_backward(
        _t(grad_y), _t(x), _t(w), [w.shape[0]], list(stride), list(padding), [1, 1],
        False, [0, 0], 1, [True, True, True])
    return _np(grad_x), _np(grad_w), _np(grad_b)


@torch.no_grad()
def avg_pool2d(x, kernel_size, stride, padding):
    return _np(torch.nn.functional.avg_pool2d(_t(x), kernel_size, stride, padding))


@torch.no_grad()
def avg_pool2d_backward(grad_y, x_shape, kernel_size, stride, padding):
    grad = _t(grad_y)
    return _np(_aten.avg_pool2d_backward(grad, _shape_only(x_shape, grad), list(kernel_size), list(stride),
                                         list(padding), False, True, None))


@torch.no_grad()
def max_pool2d(x, kernel_size, stride, padding):
    y, indices = torch.nn.functional.max_pool2d(_t(x), kernel_size, stride, padding, return_indices=True)
    return _np(y), _np(indices)


@torch.no_grad()
def max_pool2d_backward(grad_y, indices, x_shape, kernel_size, stride, padding):
    grad = _t(grad_y)
    return _np(_aten.max_pool2d_with_indices_backward(
        grad, _shape_only(x_shape, grad), list(kernel_size), list(stride), list(padding), [1, 1], False,
        _t(indices)))


@torch.no_grad()
def softmax_cross_entropy(logits, target):
    logits_t = _t(logits)
    target_t = _t(target)
    log_probs = torch.log_softmax(logits_t, dim=1)
    # 0 * log p counts as 0: a -inf logit off the target gives a finite loss.
    loss = -torch.where(target_t != 0, target_t * log_probs, 0).sum() / logits.shape[0]
    grad = (log_probs.exp() - target_t) / logits.shape[0]
    return loss.item(), _np(grad)


# ------------------------------------------------ general convolution (optional kernels)
@torch.no_grad()
def im2col_dilated(x, kernel_size, stride, padding, dilation):
    return _np(torch.nn.functional.unfold(_t(x), kernel_size, dilation, padding, stride))


@torch.no_grad()
def col2im_dilated(cols, output_size, kernel_size, stride, padding, dilation):
    return _np(torch.nn.functional.fold(_t(cols), output_size, kernel_size, dilation, padding, stride))


@torch.no_grad()
def conv2d_general(x, w, b, stride, padding, dilation, groups):
    bias = None if b is None else _t(b)
    return _np(torch.nn.functional.conv2d(_t(x), _t(w), bias, stride, padding, dilation, groups))


@torch.no_grad()
def conv2d_general_backward(grad_y, x, w, stride, padding, dilation, groups, input_grad):
    grad_x, grad_w, grad_b = _aten.convolution_backward(
        _t(grad_y), _t(x), _t(w), [w.shape[0]], list(stride), list(padding), list(dilation),
        False, [0, 0], groups, [bool(input_grad), True, True])
    return (_np(grad_x) if input_grad else None), _np(grad_w), _np(grad_b)


@torch.no_grad()
def conv_transpose2d(x, w, b, stride, padding, output_padding, dilation, groups):
    bias = None if b is None else _t(b)
    return _np(torch.nn.functional.conv_transpose2d(_t(x), _t(w), bias, stride, padding,
                                                    output_padding, groups, dilation))


@torch.no_grad()
def conv_transpose2d_backward(grad_y, x, w, stride, padding, output_padding, dilation, groups):
    grad_x, grad_w, grad_b = _aten.convolution_backward(
        _t(grad_y), _t(x), _t(w), [w.shape[1] * groups], list(stride), list(padding),
        list(dilation), True, list(output_padding), groups, [True, True, True])
    return _np(grad_x), _np(grad_w), _np(grad_b)


BACKEND = sys.modules[__name__]
