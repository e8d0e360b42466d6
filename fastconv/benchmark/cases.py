"""The layer shapes of the two reports' networks, as benchmark cases, with FLOP counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConvLayer:
    """One convolution layer of a report network (square input, square kernel)."""

    network: str
    label: str
    batch: int
    c_in: int
    c_out: int
    size: int
    kernel: int
    padding: int
    stride: int = 1

    @property
    def out_size(self) -> int:
        return (self.size + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def x_shape(self) -> tuple:
        return (self.batch, self.c_in, self.size, self.size)

    @property
    def w_shape(self) -> tuple:
        return (self.c_out, self.c_in, self.kernel, self.kernel)

    @property
    def shape_text(self) -> str:
        return (f"N{self.batch} {self.c_in}->{self.c_out} {self.size}x{self.size} "
                f"k{self.kernel} p{self.padding}" + (f" s{self.stride}" if self.stride != 1 else ""))

    @property
    def forward_flops(self) -> float:
        """Multiply-adds of the forward pass, counted as 2 FLOPs each."""
        return 2.0 * self.batch * self.c_out * self.out_size ** 2 * self.c_in * self.kernel ** 2

    @property
    def backward_flops(self) -> float:
        """grad_x and grad_w each cost one forward's worth of multiply-adds."""
        return 2.0 * self.forward_flops

    def inputs(self, dtype, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.x_shape).astype(dtype)
        w = (rng.standard_normal(self.w_shape) * 0.1).astype(dtype)
        b = rng.standard_normal(self.c_out).astype(dtype)
        grad_y = rng.standard_normal((self.batch, self.c_out, self.out_size, self.out_size)).astype(dtype)
        return x, w, b, grad_y


@dataclass(frozen=True)
class PoolLayer:
    network: str
    label: str
    kind: str            # "avg" or "max"
    shape: tuple         # input (N, C, H, W)
    kernel: int = 2

    @property
    def shape_text(self) -> str:
        n, c, h, w = self.shape
        return f"N{n} C{c} {h}x{w} k{self.kernel}"


# Report 000: conv(1->4,k5,p2)-ReLU-avgpool2-conv(4->8,k5,p2)-ReLU-avgpool2-linear, batch 50.
REPORT000_CONVS = (
    ConvLayer("report000", "conv1", 50, 1, 4, 28, 5, 2),
    ConvLayer("report000", "conv2", 50, 4, 8, 14, 5, 2),
)
REPORT000_POOLS = (
    PoolLayer("report000", "pool1", "avg", (50, 4, 28, 28)),
    PoolLayer("report000", "pool2", "avg", (50, 8, 14, 14)),
)
# Report 003 (letters, 32x32 grey, batch 64): five convs, two 2x2 max pools.
REPORT003_CONVS = (
    ConvLayer("report003", "conv1", 64, 1, 32, 32, 5, 2),
    ConvLayer("report003", "conv2", 64, 32, 64, 32, 5, 2),
    ConvLayer("report003", "conv3", 64, 64, 64, 16, 3, 1),
    ConvLayer("report003", "conv4", 64, 64, 128, 16, 3, 1),
    ConvLayer("report003", "conv5", 64, 128, 128, 8, 3, 1),
)
REPORT003_POOLS = (
    PoolLayer("report003", "pool1", "max", (64, 64, 32, 32)),
    PoolLayer("report003", "pool2", "max", (64, 128, 16, 16)),
)


@dataclass(frozen=True)
class GeneralConvLayer:
    """A grouped / dilated / transposed convolution layer (the benchmark's general-convolution rows).

    Transposed: ``size`` is the input's; ``w_shape`` is ``(c_in, c_out // groups, k, k)``.
    """

    network: str
    label: str
    batch: int
    c_in: int
    c_out: int
    size: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    transposed: bool = False

    @property
    def out_size(self) -> int:
        extent = self.dilation * (self.kernel - 1)
        if self.transposed:
            return (self.size - 1) * self.stride - 2 * self.padding + extent + 1
        return (self.size + 2 * self.padding - extent - 1) // self.stride + 1

    @property
    def x_shape(self) -> tuple:
        return (self.batch, self.c_in, self.size, self.size)

    @property
    def w_shape(self) -> tuple:
        if self.transposed:
            return (self.c_in, self.c_out // self.groups, self.kernel, self.kernel)
        return (self.c_out, self.c_in // self.groups, self.kernel, self.kernel)

    @property
    def kwargs(self) -> dict:
        """Keyword arguments of `F.conv2d` / `F.conv_transpose2d` (and their backward)."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    @property
    def shape_text(self) -> str:
        extras = [f"s{self.stride}"] * (self.stride != 1) + [f"d{self.dilation}"] * (self.dilation != 1) \
            + [f"g{self.groups}"] * (self.groups != 1)
        return (f"N{self.batch} {self.c_in}->{self.c_out} {self.size}x{self.size} k{self.kernel} "
                f"p{self.padding}" + "".join(" " + e for e in extras))

    @property
    def forward_flops(self) -> float:
        """Multiply-adds (2 FLOPs each) of the forward pass."""
        pixels = self.size ** 2 if self.transposed else self.out_size ** 2
        per_pixel = (self.c_in * self.c_out // self.groups) * self.kernel ** 2
        return 2.0 * self.batch * pixels * per_pixel

    @property
    def backward_flops(self) -> float:
        return 2.0 * self.forward_flops

    def inputs(self, dtype, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.x_shape).astype(dtype)
        w = (rng.standard_normal(self.w_shape) * 0.1).astype(dtype)
        b = rng.standard_normal(self.c_out).astype(dtype)
        grad_y = rng.standard_normal((self.batch, self.c_out, self.out_size, self.out_size)).astype(dtype)
        return x, w, b, grad_y


# The general convolutions of the full run: a MobileNet depthwise 3x3 layer, a
# DeepLab-style dilated 3x3, and a DCGAN generator's 4x4 stride-2 transposed
# convolution (16x16 -> 32x32).
GENERAL_LAYERS = (
    GeneralConvLayer("mobilenet", "dw3x3", 16, 32, 32, 56, 3, padding=1, groups=32),
    GeneralConvLayer("deeplab", "dil3x3", 16, 64, 64, 28, 3, padding=2, dilation=2),
    GeneralConvLayer("dcgan", "convT4", 16, 128, 64, 16, 4, stride=2, padding=1, transposed=True),
)


@dataclass(frozen=True)
class LossCase:
    network: str
    label: str
    batch: int
    classes: int

    @property
    def shape_text(self) -> str:
        return f"N{self.batch} K{self.classes}"


LOSSES = (LossCase("report000", "loss", 50, 10), LossCase("report003", "loss", 64, 26))

# The 2017 report: "over two hours for 30 epochs" of its NumPy code.
REPORT000_SECONDS_PER_EPOCH = 2 * 3600 / 30
MNIST_TRAIN_IMAGES = 60_000
