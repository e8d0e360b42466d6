"""ResNet-20 for 28-32 px images (He et al. 2016, section 4.2; CIFAR-10's 0.27 M-parameter net)."""

from __future__ import annotations

import numpy as np

from fastconv import nn
from fastconv.models.blocks import check_sizes, classifier_head, conv_bn

STAGE_WIDTHS = (16, 32, 64)
BLOCKS_PER_STAGE = 3


def basic_block(c_in: int, c_out: int, stride: int, rng, dtype) -> nn.Sequential:
    """``relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))``; the shortcut is the
    identity, or a strided 1x1 convolution + batch norm where the shape changes
    (the paper's option B)."""
    body = nn.Sequential(*conv_bn(c_in, c_out, 3, rng, dtype, stride=stride), nn.ReLU(),
                         *conv_bn(c_out, c_out, 3, rng, dtype))
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = nn.Sequential(*conv_bn(c_in, c_out, 1, rng, dtype, stride=stride))
    return nn.Sequential(nn.Residual(body, shortcut), nn.ReLU())


def resnet20(num_classes: int = 10, in_channels: int = 1, dtype=np.float32, seed: int = 0) -> nn.Sequential:
    """CIFAR-style ResNet-20: a 3x3 stem conv to 16 channels, three stages of three
    basic blocks (16, 32, 64 channels; the second and third stages start with a
    stride-2 block and a projection shortcut), global average pooling and a linear
    classifier.  ``in_channels`` defaults to 1, fastconv's data sets being grey."""
    check_sizes(num_classes=num_classes, in_channels=in_channels)
    rng = nn.as_generator(seed)
    layers: list[nn.Module] = [*conv_bn(in_channels, STAGE_WIDTHS[0], 3, rng, dtype, input_grad=False),
                               nn.ReLU()]
    c_in = STAGE_WIDTHS[0]
    for stage, width in enumerate(STAGE_WIDTHS):
        for block in range(BLOCKS_PER_STAGE):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(basic_block(c_in, width, stride, rng, dtype))
            c_in = width
    return nn.Sequential(*layers, *classifier_head(c_in, num_classes, rng, dtype))
