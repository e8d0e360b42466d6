"""A small CIFAR-style MobileNetV2 (Sandler et al. 2018) for 28-32 px images."""

from __future__ import annotations

import numpy as np

from fastconv import nn
from fastconv.models.blocks import check_sizes, classifier_head, conv_bn

STEM_WIDTH = 32
# (expansion t, output channels c, blocks n, first block's stride s), as the paper's table 2
BOTTLENECKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 2, 2), (6, 96, 1, 1))
HEAD_WIDTH = 320


def inverted_residual(c_in: int, c_out: int, stride: int, expansion: int, rng, dtype) -> nn.Module:
    """1x1 expansion to ``expansion * c_in`` channels (none when the factor is 1),
    3x3 depthwise convolution (``groups`` = channels) carrying the stride, linear
    1x1 projection; each followed by batch norm, the first two by ReLU6.  The
    identity shortcut joins only where input and output shapes match."""
    hidden = c_in * expansion
    layers: list[nn.Module] = []
    if expansion != 1:
        layers += [*conv_bn(c_in, hidden, 1, rng, dtype), nn.ReLU6()]
    layers += [*conv_bn(hidden, hidden, 3, rng, dtype, stride=stride, groups=hidden), nn.ReLU6(),
               *conv_bn(hidden, c_out, 1, rng, dtype)]
    body = nn.Sequential(*layers)
    return nn.Residual(body) if stride == 1 and c_in == c_out else body


def mobilenetv2(num_classes: int = 10, in_channels: int = 1, dtype=np.float32, seed: int = 0) -> nn.Sequential:
    """MobileNetV2 cut down for small images: a stride-1 3x3 stem (32 channels), the
    bottlenecks of `BOTTLENECKS` (expansion 6 except the first, as in the paper;
    three stride-2 stages: 32 px -> 4 px), a 1x1 conv to 320 channels, global
    average pooling and a linear classifier.  ReLU6 throughout."""
    check_sizes(num_classes=num_classes, in_channels=in_channels)
    rng = nn.as_generator(seed)
    layers: list[nn.Module] = [*conv_bn(in_channels, STEM_WIDTH, 3, rng, dtype, input_grad=False),
                               nn.ReLU6()]
    c_in = STEM_WIDTH
    for expansion, c_out, blocks, first_stride in BOTTLENECKS:
        for block in range(blocks):
            layers.append(inverted_residual(c_in, c_out, first_stride if block == 0 else 1, expansion, rng, dtype))
            c_in = c_out
    layers += [*conv_bn(c_in, HEAD_WIDTH, 1, rng, dtype), nn.ReLU6()]
    return nn.Sequential(*layers, *classifier_head(HEAD_WIDTH, num_classes, rng, dtype))
