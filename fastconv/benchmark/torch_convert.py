"""The same network in `torch.nn`: a fastconv module tree rebuilt from `torch.nn`
modules with the same weights and buffers, so a benchmark compares one architecture
on two frameworks (and a test can check that both compute the same outputs).
Imported only when PyTorch is installed."""

from __future__ import annotations

import torch
from torch import nn as tnn

from fastconv import nn


class _Residual(tnn.Module):
    def __init__(self, body, shortcut):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class _Concat(tnn.Module):
    def __init__(self, branches):
        super().__init__()
        self.branches = tnn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class _Add(tnn.Module):
    def __init__(self, branches):
        super().__init__()
        self.branches = tnn.ModuleList(branches)

    def forward(self, x):
        total = self.branches[0](x)
        for branch in self.branches[1:]:
            total = total + branch(x)
        return total


def _conv(layer: nn.Conv2d) -> tnn.Conv2d:
    return tnn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                      layer.dilation, layer.groups, bias=layer.bias is not None)


def _pool(cls, layer):
    return cls(layer.kernel_size, layer.stride, layer.padding)


_LEAVES = {
    nn.Conv2d: _conv,
    nn.Conv2dReLU: lambda layer: tnn.Sequential(_conv(layer), tnn.ReLU()),
    nn.Conv2dReLUAvgPool: lambda layer: tnn.Sequential(_conv(layer), tnn.ReLU(), tnn.AvgPool2d(2)),
    nn.ConvTranspose2d: lambda layer: tnn.ConvTranspose2d(
        layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
        layer.output_padding, layer.groups, layer.bias is not None, layer.dilation),
    nn.Linear: lambda layer: tnn.Linear(layer.in_features, layer.out_features, layer.bias is not None),
    nn.BatchNorm1d: lambda layer: tnn.BatchNorm1d(layer.num_features, layer.eps, layer.momentum),
    nn.BatchNorm2d: lambda layer: tnn.BatchNorm2d(layer.num_features, layer.eps, layer.momentum),
    nn.AvgPool2d: lambda layer: _pool(tnn.AvgPool2d, layer),
    nn.MaxPool2d: lambda layer: _pool(tnn.MaxPool2d, layer),
    nn.AdaptiveAvgPool2d: lambda layer: tnn.AdaptiveAvgPool2d(layer.output_size),
    nn.AdaptiveMaxPool2d: lambda layer: tnn.AdaptiveMaxPool2d(layer.output_size),
    nn.Upsample: lambda layer: tnn.Upsample(scale_factor=layer.scale_factor, mode=layer.mode),
    nn.Dropout: lambda layer: tnn.Dropout(layer.p),
    nn.LeakyReLU: lambda layer: tnn.LeakyReLU(layer.negative_slope),
    nn.ReLU: lambda layer: tnn.ReLU(), nn.ReLU6: lambda layer: tnn.ReLU6(), nn.Sigmoid: lambda layer: tnn.Sigmoid(),
    nn.Tanh: lambda layer: tnn.Tanh(), nn.Identity: lambda layer: tnn.Identity(),
    nn.Flatten: lambda layer: tnn.Flatten(),
}


def _convert(module: nn.Module) -> tnn.Module:
    if type(module) is nn.Sequential:
        return tnn.Sequential(*map(_convert, module.layers))
    if type(module) is nn.Residual:
        return _Residual(_convert(module.body), None if module.shortcut is None else _convert(module.shortcut))
    if type(module) is nn.Concat:
        return _Concat([_convert(branch) for branch in module.branches])
    if type(module) is nn.Add:
        return _Add([_convert(branch) for branch in module.branches])
    build = _LEAVES.get(type(module))
    if build is None:
        raise TypeError(f"no torch.nn counterpart for {type(module).__name__}")
    return build(module)


def to_torch(model: nn.Module) -> tnn.Module:
    """``model`` as `torch.nn` modules, its dtype, weights and buffers copied (the
    state dicts list the same tensors in the same order, batch counters aside)."""
    dtype = {"float32": torch.float32, "float64": torch.float64}[model.parameters()[0].dtype.name]
    converted = _convert(model).to(dtype)
    targets = [tensor for key, tensor in converted.state_dict().items() if not key.endswith("num_batches_tracked")]
    sources = list(model.state_dict().values())
    if [tuple(t.shape) for t in targets] != [s.shape for s in sources]:
        raise ValueError("the torch.nn copy's state does not line up with the model's")
    with torch.no_grad():
        for target, source in zip(targets, sources):
            target.copy_(torch.from_numpy(source))
    return converted
