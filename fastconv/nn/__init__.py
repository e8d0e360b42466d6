"""Layers, containers and losses with manual backprop, on whichever backend is selected.

    from fastconv import nn
    model = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2, rng=0), nn.ReLU(),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 14 * 14, 10, rng=0))
    loss_fn = nn.CrossEntropyLoss()
    model.zero_grad()
    loss = loss_fn(model(x), labels)          # x: (N, 1, 28, 28) float32, labels: (N,) int
    model.backward(loss_fn.backward())        # fills every parameter's .grad

Backprop is manual: ``forward`` caches what ``backward`` needs, ``backward`` returns
the input gradient (None from a first layer built with ``input_grad=False``) and
accumulates parameter gradients.  As in PyTorch, a Module's attributes holding a
`Parameter` or a `Module` are registered (``self.conv = nn.Conv2d(...)``).  Layers
never import a backend; convolution and pooling go through `fastconv.functional`.

The package's modules:

    module      `Parameter`, `Module` (parameters, modes, state_dict), `count_parameters`
    layers      `Conv2d`, `Conv2dReLU`, `Conv2dReLUAvgPool`, `Linear`, `ReLU`, `AvgPool2d`, `MaxPool2d`, `Dropout`, `Flatten`
    activations `Identity`, `Sigmoid`, `Tanh`, `LeakyReLU`, `ReLU6`
    adaptive_pool  `AdaptiveAvgPool2d`, `AdaptiveMaxPool2d`
    upsample    `Upsample`
    conv_transpose  `ConvTranspose2d`
    norm        `BatchNorm1d`, `BatchNorm2d`
    containers  `Sequential`, `ModuleList`, `Residual`, `Concat`, `Add`
    losses      `CrossEntropyLoss` (= `SoftmaxCrossEntropyLoss`), `EuclideanLoss`, `BCEWithLogitsLoss`
    architecture  a module tree as JSON (`describe`) and back (`build`), for `fastconv.save`
    fuse        `fuse_conv_bn`: an inference copy with batch norms folded into convolutions;
                `freeze`: an inference copy with read-only parameters (weights packed once)
    init        seeding (`as_generator`) and Kaiming initialisation
"""

from fastconv.nn.activations import Identity, LeakyReLU, ReLU6, Sigmoid, Tanh
from fastconv.nn.adaptive_pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d
from fastconv.nn.containers import Add, Concat, ModuleList, Residual, Sequential
from fastconv.nn.conv_transpose import ConvTranspose2d
from fastconv.nn.fuse import freeze, fuse_conv_bn
from fastconv.nn.init import as_generator, kaiming_normal
from fastconv.nn.layers import AvgPool2d, Conv2d, Conv2dReLU, Conv2dReLUAvgPool, Dropout, Flatten, Linear, MaxPool2d, ReLU
from fastconv.nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, EuclideanLoss, Loss, SoftmaxCrossEntropyLoss
from fastconv.nn.module import Module, Parameter, count_parameters
from fastconv.nn.norm import BatchNorm1d, BatchNorm2d
from fastconv.nn.upsample import Upsample

__all__ = [
    "Parameter", "Module", "count_parameters",
    "Conv2d", "Conv2dReLU", "Conv2dReLUAvgPool", "ConvTranspose2d", "Linear", "ReLU", "AvgPool2d", "MaxPool2d", "Dropout", "Flatten",
    "Identity", "Sigmoid", "Tanh", "LeakyReLU", "ReLU6",
    "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Upsample",
    "BatchNorm1d", "BatchNorm2d",
    "Sequential", "ModuleList", "Residual", "Concat", "Add",
    "Loss", "CrossEntropyLoss", "SoftmaxCrossEntropyLoss", "EuclideanLoss", "BCEWithLogitsLoss",
    "as_generator", "kaiming_normal", "fuse_conv_bn", "freeze",
]
