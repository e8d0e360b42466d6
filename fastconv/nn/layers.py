"""Stateless and weight layers: Conv2d, Linear, ReLU, pooling, Dropout, Flatten.

Convolution and pooling go through `fastconv.functional` (so they run on whichever
backend is selected); everything elementwise or matrix-shaped is plain NumPy here.
Each ``forward`` keeps references (never copies) to what its ``backward`` needs.
"""

from __future__ import annotations

import numbers

import numpy as np

import fastconv.functional as F
from fastconv.functional import arguments, conv_params
from fastconv.nn.init import as_generator, float_dtype, kaiming_normal
from fastconv.nn.module import Module, Parameter


def _not_run(layer: Module) -> RuntimeError:
    return RuntimeError(f"{type(layer).__name__}.backward called before forward")


def _layer_input(x, param: Parameter, layer: Module) -> np.ndarray:
    """``x`` as an ndarray (tensors and array-likes via `numpy.asarray`) of the
    layer's dtype, or a TypeError naming the layer."""
    x = F.as_array(x)
    _check_dtype(x, param, layer)
    return x


def _check_dtype(x: np.ndarray, param: Parameter, layer: Module) -> None:
    """NumPy would silently promote a float32 layer to float64 (and the kernels
    reject the mix), so say so for the NumPy-only layers too."""
    if x.dtype != param.data.dtype:
        raise TypeError(
            f"{type(layer).__name__}: input has dtype {x.dtype} but the layer's parameters "
            f"are {param.data.dtype}; cast the input or build the layer with that dtype"
        )


class Conv2d(Module):
    """2-D convolution (cross-correlation), as `torch.nn.Conv2d`.

    ``weight`` is ``(out_channels, in_channels // groups, kh, kw)``, Kaiming-normal
    initialised; ``bias`` is ``(out_channels,)``, zero, or None when ``bias=False``.
    ``padding`` is an int, an (h, w) pair, ``"same"`` (stride 1) or ``"valid"``;
    ``dilation`` spreads the kernel taps, ``groups`` splits the channels into
    independent groups (``groups == in_channels``: depthwise).
    ``input_grad=False`` is for a network's first layer, whose input is data: backward
    then skips the input gradient (the costliest part) and returns None.
    """

    _kernel = "conv2d"     # the `fastconv.functional` kernel forward runs

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1,
                 padding=0, bias: bool = True, input_grad: bool = True, dtype=np.float32, rng=None,
                 dilation=1, groups: int = 1):
        super().__init__()
        dtype = float_dtype(dtype)
        self.input_grad = bool(input_grad)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        if self.in_channels < 1 or self.out_channels < 1:
            raise ValueError(f"channel counts must be positive, got {in_channels} -> {out_channels}")
        self.kernel_size = arguments.pair(kernel_size, "kernel_size", 1)
        self.stride = arguments.pair(stride, "stride", 1)
        self.dilation = arguments.pair(dilation, "dilation", 1)
        self.groups = conv_params.groups_arg(groups)
        conv_params.check_groups(self.groups, self.in_channels, self.out_channels, type(self).__name__)
        # a mode stays a string (resolved per input by F); pairs are normalised here
        symmetric, _ = conv_params.padding_arg(padding, self.kernel_size, self.stride, self.dilation,
                                               type(self).__name__)
        self.padding = padding if isinstance(padding, str) else symmetric
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        self.register_parameter("weight", Parameter(kaiming_normal(shape, as_generator(rng), dtype)))
        self.register_parameter("bias", Parameter(np.zeros(self.out_channels, dtype)) if bias else None)
        self._x = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x = _layer_input(x, self.weight, self)
        bias = self.bias.data if self.bias is not None else None
        return F.conv2d(x, self.weight.data, bias, self.stride, self.padding, self.dilation, self.groups)

    def backward(self, grad_y: np.ndarray) -> np.ndarray | None:
        if self._x is None:
            raise _not_run(self)
        args = (self._x, self.weight.data, self.stride, self.padding, self.dilation, self.groups)
        if self.input_grad:
            grad_x, grad_w, grad_b = F.conv2d_backward(grad_y, *args)
        else:
            grad_x, (grad_w, grad_b) = None, F.conv2d_backward_weights(grad_y, *args)
        self._accumulate(grad_w, grad_b)
        return grad_x

    def _accumulate(self, grad_w: np.ndarray, grad_b: np.ndarray) -> None:
        self.weight.accumulate_grad(grad_w)
        if self.bias is not None:
            self.bias.accumulate_grad(grad_b)

    def kernel_ops(self) -> frozenset:
        return frozenset({self._kernel})

    def config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "bias": self.bias is not None, "input_grad": self.input_grad,
                "dtype": self.weight.dtype.name, "dilation": self.dilation, "groups": self.groups}

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
                + ("" if self.dilation == (1, 1) else f", dilation={self.dilation}")
                + ("" if self.groups == 1 else f", groups={self.groups}")
                + ("" if self.input_grad else ", input_grad=False"))


class Conv2dReLU(Conv2d):
    """`Conv2d` followed by ReLU as one layer (like PyTorch's fused ``ConvReLU2d``):
    the backend applies the ReLU in the convolution's write-out and folds its mask
    into the backward, saving a pass over the activations each way."""

    _kernel = "conv2d_relu"

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x = _layer_input(x, self.weight, self)
        bias = self.bias.data if self.bias is not None else None
        self._y = F.conv2d_relu(x, self.weight.data, bias, self.stride, self.padding,
                                dilation=self.dilation, groups=self.groups)
        return self._y

    def backward(self, grad_y: np.ndarray) -> np.ndarray | None:
        if self._x is None:
            raise _not_run(self)
        grad_x, grad_w, grad_b = F.conv2d_relu_backward(
            grad_y, self._y, self._x, self.weight.data, self.stride, self.padding, self.input_grad,
            dilation=self.dilation, groups=self.groups)
        self._accumulate(grad_w, grad_b)
        return grad_x


class Conv2dReLUAvgPool(Conv2dReLU):
    """`Conv2dReLU` followed by 2x2 average pooling (stride 2), report 000's block, as
    one layer: the backend pools each output row while it is in cache and spreads the
    pooled gradient back inside the convolution's backward.  ``relu_output`` holds the
    last forward's un-pooled ReLU map (the "feature map" of the reports' figures)."""

    _kernel = "conv2d_relu_avgpool2"

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x = _layer_input(x, self.weight, self)
        bias = self.bias.data if self.bias is not None else None
        pooled, self._y = F.conv2d_relu_avgpool2(x, self.weight.data, bias, self.stride, self.padding,
                                                 dilation=self.dilation, groups=self.groups)
        return pooled

    @property
    def relu_output(self) -> np.ndarray | None:
        return self._y

    def backward(self, grad_y: np.ndarray) -> np.ndarray | None:
        if self._x is None:
            raise _not_run(self)
        grad_x, grad_w, grad_b = F.conv2d_relu_avgpool2_backward(
            grad_y, self._y, self._x, self.weight.data, self.stride, self.padding, self.input_grad,
            dilation=self.dilation, groups=self.groups)
        self._accumulate(grad_w, grad_b)
        return grad_x

    def extra_repr(self) -> str:
        return super().extra_repr() + ", pool=avg 2x2"


class Linear(Module):
    """Fully connected layer ``y = x @ weight.T + bias`` on ``(N, in_features)`` input.

    ``weight`` is ``(out_features, in_features)`` as in `torch.nn.Linear`,
    Kaiming-normal initialised; ``bias`` is zero, or None when ``bias=False``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype=np.float32, rng=None):
        super().__init__()
        dtype = float_dtype(dtype)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        if self.in_features < 1 or self.out_features < 1:
            raise ValueError(f"feature counts must be positive, got {in_features} -> {out_features}")
        shape = (self.out_features, self.in_features)
        self.register_parameter("weight", Parameter(kaiming_normal(shape, as_generator(rng), dtype)))
        self.register_parameter("bias", Parameter(np.zeros(self.out_features, dtype)) if bias else None)
        self._x = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _layer_input(x, self.weight, self)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"Linear expects input of shape (N, {self.in_features}), got {x.shape}")
        self._x = x
        return F.linear(x, self.weight.data, self.bias.data if self.bias is not None else None)

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._x is None:
            raise _not_run(self)
        grad_x, grad_w, grad_b = F.linear_backward(grad_y, self._x, self.weight.data)
        self.weight.accumulate_grad(grad_w)
        if self.bias is not None:
            self.bias.accumulate_grad(grad_b)
        return grad_x

    def kernel_ops(self) -> frozenset:
        return frozenset({"linear"})

    def config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "dtype": self.weight.dtype.name}

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    """``max(x, 0)``; the gradient at exactly 0 is 0, as in PyTorch."""

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = F.relu(x)
        return self._y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._y is None:
            raise _not_run(self)
        # the output is positive exactly where the input was
        return F.relu_backward(grad_y, self._y)

    def kernel_ops(self) -> frozenset:
        return frozenset({"relu"})

    def config(self) -> dict:
        return {}


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = arguments.pool_params(kernel_size, stride, padding)
        self._x_shape = None

    def kernel_ops(self) -> frozenset:
        return frozenset({self._kernel})

    def config(self) -> dict:
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding}

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(_Pool2d):
    """Average pooling (zero padding counted, floor mode); ``stride`` defaults to the kernel."""

    _kernel = "avg_pool2d"

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = F.as_array(x)
        self._x_shape = x.shape
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._x_shape is None:
            raise _not_run(self)
        return F.avg_pool2d_backward(grad_y, self._x_shape, self.kernel_size, self.stride, self.padding)


class MaxPool2d(_Pool2d):
    """Max pooling (padding never selected); ``stride`` defaults to the kernel.
    The gradient goes to the first maximum of each window."""

    _kernel = "max_pool2d"

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)
        self._indices = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = F.as_array(x)
        self._x_shape = x.shape
        y, self._indices = F.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        return y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._indices is None:
            raise _not_run(self)
        return F.max_pool2d_backward(grad_y, self._indices, self._x_shape,
                                     self.kernel_size, self.stride, self.padding)


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale
    the survivors by ``1 / (1 - p)``; the identity in eval mode (and when ``p == 0``).

    The mask of the last forward is ``self.mask`` (None when nothing was dropped);
    ``rng`` (Generator, seed or None) makes the masks reproducible.
    """

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability p must lie in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = as_generator(rng)
        self.mask = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = F.as_array(x)
        if not self.training or self.p == 0.0:
            self.mask = None
            return x
        keep = self.rng.random(x.shape, dtype=x.dtype) >= self.p
        mask = keep.astype(x.dtype)
        # p == 1 drops everything (PyTorch returns zeros rather than 0 * inf).
        mask *= 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        self.mask = mask
        return x * mask

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        return grad_y if self.mask is None else grad_y * self.mask

    def kernel_ops(self) -> frozenset:
        return frozenset()

    def config(self) -> dict:
        return {"p": self.p}

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Flatten(Module):
    """``(N, d1, d2, ...) -> (N, d1*d2*...)``, a view when the input is contiguous."""

    def __init__(self):
        super().__init__()
        self._x_shape = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = F.as_array(x)
        self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._x_shape is None:
            raise _not_run(self)
        return grad_y.reshape(self._x_shape)

    def kernel_ops(self) -> frozenset:
        return frozenset()

    def config(self) -> dict:
        return {}
