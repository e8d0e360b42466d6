"""The network zoo's layers: each network as a list of (convolution layer, how many times
it occurs), at CIFAR (32x32) or reduced ImageNet (112x112) input sizes.

Plain, depthwise / grouped, dilated and transposed layers all appear; `Conv` describes
one of them (square input and kernel) in PyTorch's conventions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Conv:
    """One convolution layer.  ``size`` is the input's height = width.

    Transposed layers (``transposed=True``) are `conv_transpose2d` with weights
    ``(c_in, c_out // groups, k, k)``; the others `conv2d` with weights
    ``(c_out, c_in // groups, k, k)``.
    """

    c_in: int
    c_out: int
    size: int
    k: int
    stride: int = 1
    padding: int = -1  # -1: "same"-style dilation * (k // 2)
    dilation: int = 1
    groups: int = 1
    transposed: bool = False

    @property
    def pad(self) -> int:
        return self.dilation * (self.k // 2) if self.padding < 0 else self.padding

    @property
    def out(self) -> int:
        extent = self.dilation * (self.k - 1)
        if self.transposed:
            return (self.size - 1) * self.stride - 2 * self.pad + extent + 1
        return (self.size + 2 * self.pad - extent - 1) // self.stride + 1

    @property
    def general(self) -> bool:
        """Grouped, dilated or transposed: fastconv's general-convolution path."""
        return self.groups != 1 or self.dilation != 1 or self.transposed

    @property
    def w_shape(self) -> tuple:
        if self.transposed:
            return (self.c_in, self.c_out // self.groups, self.k, self.k)
        return (self.c_out, self.c_in // self.groups, self.k, self.k)

    def flops(self, batch: int) -> float:
        """Multiply-adds (2 FLOPs each) of the forward pass, as a direct convolution."""
        pixels = self.size ** 2 if self.transposed else self.out ** 2
        return 2.0 * batch * pixels * self.c_in * (self.c_out // self.groups) * self.k ** 2

    def label(self) -> str:
        kind = "dw" if self.groups == self.c_in and self.groups > 1 else ""
        text = f"{self.c_in}->{self.c_out} {kind}{self.k}x{self.k}/{self.stride} @{self.size}"
        extras = [f"g{self.groups}"] * (self.groups > 1 and not kind) \
            + [f"d{self.dilation}"] * (self.dilation != 1) + ["T"] * self.transposed
        return " ".join([text, *extras])


def _resnet_cifar(blocks: int) -> list:
    layers = [(Conv(3, 16, 32, 3), 1), (Conv(16, 16, 32, 3), 2 * blocks)]
    for c_in, c_out, size in ((16, 32, 32), (32, 64, 16)):
        layers += [(Conv(c_in, c_out, size, 3, 2), 1), (Conv(c_out, c_out, size // 2, 3), 2 * blocks - 1)]
    return layers


def _vgg(config) -> list:
    layers, c_in, size = [], 3, 32
    for item in config:
        if item == "M":
            size //= 2
        else:
            layers.append((Conv(c_in, item, size, 3), 1))
            c_in = item
    return layers


def _pointwise(c_in, c_out, size, stride=1) -> Conv:
    return Conv(c_in, c_out, size, 1, stride, 0)


def _depthwise(channels, size, stride=1) -> Conv:
    return Conv(channels, channels, size, 3, stride, groups=channels)


RESNET18_112 = [
    (Conv(3, 64, 112, 7, 2, 3), 1),
    (Conv(64, 64, 28, 3), 4),
    (Conv(64, 128, 28, 3, 2), 1), (Conv(128, 128, 14, 3), 3), (Conv(64, 128, 28, 1, 2, 0), 1),
    (Conv(128, 256, 14, 3, 2), 1), (Conv(256, 256, 7, 3), 3), (Conv(128, 256, 14, 1, 2, 0), 1),
    (Conv(256, 512, 7, 3, 2), 1), (Conv(512, 512, 4, 3), 3), (Conv(256, 512, 7, 1, 2, 0), 1),
]

# MobileNetV2's stem and first three inverted residuals (expansion 1, then 6):
# 1x1 expand, depthwise 3x3 (stride 1 and 2), 1x1 project.
MOBILENETV2_112 = [
    (Conv(3, 32, 112, 3, 2), 1),
    (_depthwise(32, 56), 1), (_pointwise(32, 16, 56), 1),
    (_pointwise(16, 96, 56), 1), (_depthwise(96, 56, 2), 1), (_pointwise(96, 24, 28), 1),
    (_pointwise(24, 144, 28), 1), (_depthwise(144, 28), 1), (_pointwise(144, 24, 28), 1),
]

# DenseNet-BC dense block, growth rate 32: each layer a 1x1 bottleneck to 4 * 32 channels
# and a 3x3 to 32, its input all earlier layers' outputs concatenated.
DENSENET_BLOCK_32 = [(_pointwise(64 + 32 * i, 128, 32), 1) for i in range(4)] + [(Conv(128, 32, 32, 3), 4)]

# SqueezeNet 1.1: the stem and fire modules 2-3 (1x1 squeeze, then 1x1 and 3x3 expand).
SQUEEZENET_112 = [
    (Conv(3, 64, 112, 3, 2, 0), 1),
    (_pointwise(64, 16, 27), 1), (_pointwise(128, 16, 27), 1),
    (_pointwise(16, 64, 27), 2), (Conv(16, 64, 27, 3), 2),
]

# ResNet-50 bottlenecks of stage 2 (3 blocks at 28x28) and the first, stride-2 block of
# stage 3 (the stride in its 3x3, and a 1x1 stride-2 projection shortcut).
RESNET50_112 = [
    (_pointwise(64, 64, 28), 1), (Conv(64, 64, 28, 3), 3), (_pointwise(64, 256, 28), 4),
    (_pointwise(256, 64, 28), 2),
    (_pointwise(256, 128, 28), 1), (Conv(128, 128, 28, 3, 2), 1), (_pointwise(128, 512, 14), 1),
    (_pointwise(256, 512, 28, 2), 1),
]

# The last two decoder levels of a U-Net with 32 base channels on 64x64 images: a
# transposed 2x2 stride-2 up-convolution, then two 3x3 on the concatenation with the skip.
UNET_DECODER_64 = [
    (Conv(128, 64, 16, 2, 2, 0, transposed=True), 1), (Conv(128, 64, 32, 3), 1), (Conv(64, 64, 32, 3), 1),
    (Conv(64, 32, 32, 2, 2, 0, transposed=True), 1), (Conv(64, 32, 64, 3), 1), (Conv(32, 32, 64, 3), 1),
]

# AlexNet's five convolutions: the 11x11 stride-4 stem, then 5x5 and 3x3 after max pools.
ALEXNET_112 = [
    (Conv(3, 64, 112, 11, 4, 2), 1), (Conv(64, 192, 13, 5), 1),
    (Conv(192, 384, 6, 3), 1), (Conv(384, 256, 6, 3), 1), (Conv(256, 256, 6, 3), 1),
]

# DeepLabV3's ResNet-50 backbone at output stride 8: the 3x3 of stage 3 dilated by 2
# (6 blocks) and of stage 4 by 4 (3 blocks), at 14x14 for a 112x112 input.
DEEPLAB_DILATED_112 = [(Conv(256, 256, 14, 3, dilation=2), 6), (Conv(512, 512, 14, 3, dilation=4), 3)]

NETWORKS = {
    "LeNet-5 (32x32)": [(Conv(1, 6, 32, 5, 1, 0), 1), (Conv(6, 16, 14, 5, 1, 0), 1)],
    "ResNet-20 (CIFAR)": _resnet_cifar(3),
    "ResNet-56 (CIFAR)": _resnet_cifar(9),
    "VGG-11 (32x32)": _vgg([64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512]),
    "VGG-16 (32x32)": _vgg([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]),
    "ResNet-18 (112x112)": RESNET18_112,
    "1x1 bottlenecks (MobileNet-style)": [
        (Conv(32, 64, 56, 1, 1, 0), 1), (Conv(64, 128, 28, 1, 1, 0), 1), (Conv(128, 128, 28, 1, 1, 0), 1),
        (Conv(128, 256, 14, 1, 1, 0), 1), (Conv(256, 256, 14, 1, 1, 0), 1), (Conv(256, 64, 28, 1, 1, 0), 1),
    ],
    "strided stems": [(Conv(3, 64, 112, 7, 2, 3), 1), (Conv(3, 32, 112, 3, 2), 1), (Conv(64, 128, 28, 3, 2), 1)],
    "MobileNetV2 blocks 1-3 (112x112)": MOBILENETV2_112,
    "DenseNet-BC block, k=32 (32x32)": DENSENET_BLOCK_32,
    "SqueezeNet 1.1 fire 2-3 (112x112)": SQUEEZENET_112,
    "ResNet-50 bottlenecks (112x112)": RESNET50_112,
    "U-Net decoder (64x64)": UNET_DECODER_64,
    "AlexNet (112x112)": ALEXNET_112,
    "DeepLabV3 dilated (112x112)": DEEPLAB_DILATED_112,
}
# Training batch per network: CIFAR-sized (32x32) nets at 32, the larger ones at 8.
TRAIN_BATCH = {name: (32 if "32x32" in name or "CIFAR" in name else 8) for name in NETWORKS}
QUICK = ("LeNet-5 (32x32)", "ResNet-20 (CIFAR)", "VGG-11 (32x32)", "1x1 bottlenecks (MobileNet-style)")
