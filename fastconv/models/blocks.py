"""Building blocks shared by the zoo's builders."""

from __future__ import annotations

import numpy as np

from fastconv import nn


def conv_bn(c_in: int, c_out: int, kernel_size: int, rng, dtype, stride: int = 1, groups: int = 1,
            input_grad: bool = True) -> list[nn.Module]:
    """A bias-free convolution (padding ``kernel_size // 2``) and its batch norm: the
    pair every modern CNN block is made of (the norm's shift makes a bias redundant)."""
    return [nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False,
                      groups=groups, input_grad=input_grad, dtype=dtype, rng=rng),
            nn.BatchNorm2d(c_out, dtype=dtype)]


def classifier_head(features: int, num_classes: int, rng, dtype) -> list[nn.Module]:
    """Global average pooling, then one linear layer to the class logits."""
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, num_classes, dtype=dtype, rng=rng)]


def check_sizes(**sizes) -> None:
    """A ValueError naming the first size argument that is not a positive int."""
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
