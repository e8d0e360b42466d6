"""Inference copies of trained models: batch norms folded into the convolutions
before them, as ``torch.ao.quantization.fuse_modules`` does for a PyTorch model
(`fuse_conv_bn`), and parameters made read-only (`freeze`), as ONNX Runtime holds a
model's weights constant: the numba backend then packs each convolution's weights
once instead of on every call.

In eval mode ``BatchNorm2d(Conv2d(x))`` is a convolution too: per output channel
``k`` the norm multiplies by ``s_k = gamma_k / sqrt(var_k + eps)`` and adds
``beta_k - mean_k * s_k``, so the weights ``w_k * s_k`` and the bias
``(b_k - mean_k) * s_k + beta_k`` give the same outputs in one pass (no second
pass over the activations, no per-call scale computation).  A ReLU right after
becomes the convolution's fused ReLU (`Conv2dReLU`), applied as the outputs are
written.  Fused-away layers become `Identity`, so the container's indices -- and
the state_dict names of every other layer -- stay what they were.
"""

from __future__ import annotations

import copy

import numpy as np

from fastconv.nn.activations import Identity
from fastconv.nn.containers import Sequential
from fastconv.nn.layers import Conv2d, Conv2dReLU, ReLU
from fastconv.nn.module import Module
from fastconv.nn.norm import BatchNorm2d


def fuse_conv_bn(model: Module) -> Module:
    """A copy of eval-mode ``model`` with every ``Conv2d, BatchNorm2d[, ReLU]`` run of
    a `Sequential` (at any depth: residual bodies, branches) folded into one
    convolution.  ``model`` itself is left as it is.  For inference: training the copy
    would train a network without its batch norms."""
    if not isinstance(model, Module):
        raise TypeError(f"fuse_conv_bn expects a fastconv Module, got {type(model).__name__}")
    if any(module.training for module in model.modules()):
        raise ValueError("fuse_conv_bn folds the running statistics of eval mode; "
                         "call model.eval() first")
    fused = copy.deepcopy(model)
    for module in fused.modules():
        if isinstance(module, Sequential):
            _fuse_runs(module.layers)
    return fused.eval()          # the Identity layers put in are new modules


def _fuse_runs(layers: list) -> None:
    for i in range(len(layers) - 1):
        conv, norm = layers[i], layers[i + 1]
        if type(conv) is not Conv2d or type(norm) is not BatchNorm2d \
                or norm.num_features != conv.out_channels:
            continue
        relu = i + 2 < len(layers) and type(layers[i + 2]) is ReLU
        layers[i] = _folded(conv, norm, relu)
        layers[i + 1] = Identity()
        if relu:
            layers[i + 2] = Identity()


def _folded(conv: Conv2d, norm: BatchNorm2d, relu: bool) -> Conv2d:
    """``conv`` with ``norm`` (eval mode) folded in, as a `Conv2dReLU` if ``relu``."""
    scale = norm.weight.data.astype(np.float64) / np.sqrt(norm.running_var.astype(np.float64) + norm.eps)
    bias = conv.bias.data.astype(np.float64) if conv.bias is not None else 0.0
    layer = (Conv2dReLU if relu else Conv2d)(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        bias=True, input_grad=conv.input_grad, dtype=conv.weight.data.dtype, rng=0,
        dilation=conv.dilation, groups=conv.groups)
    layer.weight.data[...] = conv.weight.data * scale[:, None, None, None]
    layer.bias.data[...] = (bias - norm.running_mean) * scale + norm.bias.data
    return layer.eval()


def freeze(model: Module) -> Module:
    """A copy of eval-mode ``model`` whose parameters are read-only arrays, for
    inference.  The numba backend keeps what it derives from a read-only weight (a
    writeable copy for its kernels, the GEMM panels of `kernels/gemm_packed`) while
    the array lives, instead of redoing it on every call: up to two more copies of
    the convolution weights in memory.  ``model`` itself is left as it is; the copy
    cannot be trained (an optimizer's update of a read-only array raises)."""
    if not isinstance(model, Module):
        raise TypeError(f"freeze expects a fastconv Module, got {type(model).__name__}")
    if any(module.training for module in model.modules()):
        raise ValueError("freeze makes an inference copy; call model.eval() first")
    frozen = copy.deepcopy(model)
    for parameter in frozen.parameters():      # each deep-copied array owns its data
        parameter.data.flags.writeable = False
    return frozen
