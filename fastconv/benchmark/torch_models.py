"""The reports' networks written natively in PyTorch: the training-step anchor a user
would otherwise pick.  Imported only when PyTorch is installed."""

from __future__ import annotations

import torch
from torch import nn


class _Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body(x) + x


def report000_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(4, 8, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(392, 10),
    )


def letters_cnn(num_classes: int = 26) -> nn.Module:
    def block(c_in, c_out, k):
        return [nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *block(1, 32, 5), *block(32, 64, 5), nn.MaxPool2d(2),
        _Residual(nn.Sequential(*block(64, 64, 3))),
        *block(64, 128, 3), nn.MaxPool2d(2),
        _Residual(nn.Sequential(*block(128, 128, 3))),
        nn.Flatten(), nn.Linear(128 * 8 * 8, 256), nn.BatchNorm1d(256), nn.ReLU(),
        nn.Linear(256, num_classes),
    )


def training_step(model: nn.Module, lr: float = 0.1, momentum: float = 1e-4, weight_decay: float = 2e-4):
    """A closure doing one SGD step on the given batch, like fastconv's trainer."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step(images, labels):
        optimizer.zero_grad(set_to_none=False)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    step.optimizer = optimizer          # for a caller's learning-rate schedule
    return step


def kaiming_init(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return model
