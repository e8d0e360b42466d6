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

The kernels live in one module per family, each parsing its arguments once:
`conv` (the convolution entry points, which send a call to `plain_conv` or, with
dilation, groups or a string padding, to `general_conv`; `compose` builds the
general cases for a backend without their kernels; `conv_params` checks their
parameters), `unfold`, `pool`, `loss`, `norm`, `dense`, `elementwise` (ReLU,
clamp, sums) and `update` (the optimizer's step); `arguments` holds the checks they share.
"""

from __future__ import annotations

import numpy as np  # noqa: F401

from fastconv.backends import get_backend  # noqa: F401
from fastconv.functional.arguments import FLOAT_DTYPES, MAX_AXIS, as_array  # noqa: F401
from fastconv.functional.conv import (
    conv2d, conv2d_backward, conv2d_backward_weights, conv2d_relu, conv2d_relu_avgpool2,
    conv2d_relu_avgpool2_backward, conv2d_relu_backward, conv_output_size, conv_transpose2d,
    conv_transpose2d_backward)
from fastconv.functional.dense import linear, linear_backward
from fastconv.functional.elementwise import add, channel_affine, clamp, clamp_backward, relu, relu_backward
from fastconv.functional.loss import softmax_cross_entropy
from fastconv.functional.norm import batch_norm, batch_norm_backward
from fastconv.functional.pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward
from fastconv.functional.unfold import col2im, im2col
from fastconv.functional.update import sgd_step

__all__ = [
    "conv_output_size",
    "im2col", "col2im",
    "conv2d", "conv2d_backward", "conv2d_backward_weights",
    "conv2d_relu", "conv2d_relu_backward", "conv2d_relu_avgpool2", "conv2d_relu_avgpool2_backward",
    "conv_transpose2d", "conv_transpose2d_backward",
    "avg_pool2d", "avg_pool2d_backward", "max_pool2d", "max_pool2d_backward",
    "batch_norm", "batch_norm_backward",
    "linear", "linear_backward",
    "softmax_cross_entropy",
    "relu", "relu_backward", "clamp", "clamp_backward", "add", "channel_affine",
    "sgd_step",
]
