"""A DCGAN pair (Radford et al. 2016) for 28x28 images such as Fashion-MNIST."""

from __future__ import annotations

import numpy as np

from fastconv import nn
from fastconv.models.blocks import check_sizes

# DCGAN's initialisation: convolution weights N(0, 0.02), batch-norm scales N(1, 0.02).
INIT_STD = 0.02


def _dcgan_init(model: nn.Module, rng) -> nn.Module:
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.weight.data[...] = rng.normal(0.0, INIT_STD, module.weight.shape)
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.data[...] = rng.normal(1.0, INIT_STD, module.weight.shape)
    return model


def dcgan_generator(latent_dim: int = 100, channels: int = 1, width: int = 64, dtype=np.float32,
                    seed: int = 0) -> nn.Sequential:
    """Noise ``(N, latent_dim, 1, 1)`` -> images ``(N, channels, 28, 28)`` in (-1, 1):
    transposed convolutions 1 -> 7 -> 14 -> 28 px (``2 * width``, ``width``, then
    ``channels`` maps), batch norm and ReLU between them, Tanh at the end."""
    check_sizes(latent_dim=latent_dim, channels=channels, width=width)
    rng = nn.as_generator(seed)
    kw = dict(bias=False, dtype=dtype, rng=rng)
    model = nn.Sequential(
        nn.ConvTranspose2d(latent_dim, 2 * width, 7, **kw), nn.BatchNorm2d(2 * width, dtype=dtype), nn.ReLU(),
        nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, **kw), nn.BatchNorm2d(width, dtype=dtype),
        nn.ReLU(),
        nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1, **kw), nn.Tanh(),
    )
    return _dcgan_init(model, rng)


def dcgan_discriminator(channels: int = 1, width: int = 64, dtype=np.float32, seed: int = 0) -> nn.Sequential:
    """Images ``(N, channels, 28, 28)`` -> one logit each, ``(N, 1)`` (train it with
    `nn.BCEWithLogitsLoss`): strided convolutions 28 -> 14 -> 7 px (``width``,
    ``2 * width`` maps) with LeakyReLU(0.2), batch norm on the second, and a 7x7
    convolution to the logit."""
    check_sizes(channels=channels, width=width)
    rng = nn.as_generator(seed)
    kw = dict(bias=False, dtype=dtype, rng=rng)
    model = nn.Sequential(
        nn.Conv2d(channels, width, 4, stride=2, padding=1, **kw), nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, **kw), nn.BatchNorm2d(2 * width, dtype=dtype),
        nn.LeakyReLU(0.2),
        nn.Conv2d(2 * width, 1, 7, **kw), nn.Flatten(),
    )
    return _dcgan_init(model, rng)
