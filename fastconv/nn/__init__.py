"""Layers, containers and losses with manual backprop, on whichever backend is selected.

    from fastconv import nn
    model = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2, rng=0), nn.ReLU(),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 14 * 14, 10, rng=0))
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    model.zero_grad()
    loss = loss_fn(model(x), labels)          # x: (N, 1, 28, 28) float32, labels: (N,) int
    model.backward(loss_fn.backward())        # fills every parameter's .grad

Backprop is manual: ``forward`` caches what ``backward`` needs, ``backward`` returns
the input gradient (None from a first layer built with ``input_grad=False``) and
accumulates parameter gradients.  Layers never import a
backend; convolution and pooling go through `fastconv.functional`.

The package's modules:

    module      `Parameter`, `Module` (parameters, modes, state_dict), `count_parameters`
    layers      `Conv2d`, `Conv2dReLU`, `Conv2dReLUAvgPool`, `Linear`, `ReLU`, `AvgPool2d`, `MaxPool2d`, `Dropout`, `Flatten`
    conv_transpose  `ConvTranspose2d`
    norm        `BatchNorm1d`, `BatchNorm2d`
    containers  `Sequential`, `Residual`
    losses      `SoftmaxCrossEntropyLoss`, `EuclideanLoss`
    init        seeding (`as_generator`) and Kaiming initialisation
"""

from fastconv.nn.containers import Residual, Sequential
from fastconv.nn.conv_transpose import ConvTranspose2d
from fastconv.nn.init import as_generator, kaiming_normal
from fastconv.nn.layers import AvgPool2d, Conv2d, Conv2dReLU, Conv2dReLUAvgPool, Dropout, Flatten, Linear, MaxPool2d, ReLU
from fastconv.nn.losses import EuclideanLoss, Loss, SoftmaxCrossEntropyLoss
from fastconv.nn.module import Module, Parameter, count_parameters
from fastconv.nn.norm import BatchNorm1d, BatchNorm2d

__all__ = [
    "Parameter", "Module", "count_parameters",
    "Conv2d", "Conv2dReLU", "Conv2dReLUAvgPool", "ConvTranspose2d", "Linear", "ReLU", "AvgPool2d", "MaxPool2d", "Dropout", "Flatten",
    "BatchNorm1d", "BatchNorm2d",
    "Sequential", "Residual",
    "Loss", "SoftmaxCrossEntropyLoss", "EuclideanLoss",
    "as_generator", "kaiming_normal",
]
