"""`ConvTranspose2d`: the upsampling layer of DCGAN generators, U-Nets and
convolutional autoencoders (`torch.nn.ConvTranspose2d`)."""

from __future__ import annotations

import numpy as np

import fastconv.functional as F
from fastconv.functional import arguments, conv_params
from fastconv.nn.init import as_generator, float_dtype, kaiming_normal
from fastconv.nn.module import Module, Parameter


class ConvTranspose2d(Module):
    """Transposed convolution, as `torch.nn.ConvTranspose2d` (same argument order).

    ``weight`` is ``(in_channels, out_channels // groups, kh, kw)``, Kaiming-normal
    with PyTorch's fan-in for it (``out_channels // groups * kh * kw``); ``bias`` is
    ``(out_channels,)``, zero, or None when ``bias=False``.  An ``(H, W)`` input
    becomes ``H_out = (H - 1)*stride - 2*padding + dilation*(kh - 1) + output_padding + 1``
    (and likewise for the width): ``kernel_size=4, stride=2, padding=1`` doubles it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 dtype=np.float32, rng=None):
        super().__init__()
        dtype = float_dtype(dtype)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        if self.in_channels < 1 or self.out_channels < 1:
            raise ValueError(f"channel counts must be positive, got {in_channels} -> {out_channels}")
        self.kernel_size = arguments.pair(kernel_size, "kernel_size", 1)
        self.stride = arguments.pair(stride, "stride", 1)
        self.padding = arguments.pair(padding, "padding", 0)
        self.output_padding = arguments.pair(output_padding, "output_padding", 0)
        self.dilation = arguments.pair(dilation, "dilation", 1)
        self.groups = conv_params.groups_arg(groups)
        conv_params.check_groups(self.groups, self.in_channels, self.out_channels, "ConvTranspose2d")
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= max(s, d):
                raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} must be smaller "
                                 f"than stride {self.stride} or dilation {self.dilation}")
        shape = (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        self.register_parameter("weight", Parameter(kaiming_normal(shape, as_generator(rng), dtype)))
        self.register_parameter("bias", Parameter(np.zeros(self.out_channels, dtype)) if bias else None)
        self._x = None

    def _args(self):
        return (self.stride, self.padding, self.output_padding, self.dilation, self.groups)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        bias = self.bias.data if self.bias is not None else None
        return F.conv_transpose2d(x, self.weight.data, bias, *self._args())

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        if self._x is None:
            raise RuntimeError("ConvTranspose2d.backward called before forward")
        grad_x, grad_w, grad_b = F.conv_transpose2d_backward(grad_y, self._x, self.weight.data, *self._args())
        self.weight.accumulate_grad(grad_w)
        if self.bias is not None:
            self.bias.accumulate_grad(grad_b)
        return grad_x

    def kernel_ops(self) -> frozenset:
        return frozenset({"conv_transpose2d"})

    def config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "output_padding": self.output_padding, "groups": self.groups,
                "bias": self.bias is not None, "dilation": self.dilation, "dtype": self.weight.dtype.name}

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")
        for name, default in (("output_padding", (0, 0)), ("dilation", (1, 1)), ("groups", 1)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text + f", bias={self.bias is not None}"
