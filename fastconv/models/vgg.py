"""VGG-11 with batch norm for 28-32 px images (Simonyan & Zisserman's configuration A)."""

from __future__ import annotations

import numpy as np

from fastconv import nn
from fastconv.models.blocks import check_sizes

# Output channels of each 3x3 convolution; "M": 2x2 max pooling.
CONFIG_A = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512)


def vgg11(num_classes: int = 10, in_channels: int = 1, dtype=np.float32, seed: int = 0) -> nn.Sequential:
    """CIFAR-style VGG-11: eight 3x3 conv-BN-ReLU layers (configuration A, the
    convolutions keeping their bias as in torchvision's ``vgg11_bn``) with 2x2 max
    pooling between the stages, then a linear classifier on the 512 channels.

    The fifth pooling is `AdaptiveMaxPool2d(1)`: on 32 px input it pools the 2x2 map
    exactly as a 2x2 max pooling does, and on 28 px input (1x1 left) it passes the
    map through, where a fixed 2x2 window would fail."""
    check_sizes(num_classes=num_classes, in_channels=in_channels)
    rng = nn.as_generator(seed)
    layers: list[nn.Module] = []
    c_in = in_channels
    for item in CONFIG_A:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(c_in, item, 3, padding=1, input_grad=bool(layers), dtype=dtype, rng=rng),
                   nn.BatchNorm2d(item, dtype=dtype), nn.ReLU()]
        c_in = item
    return nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                         nn.Linear(c_in, num_classes, dtype=dtype, rng=rng))
