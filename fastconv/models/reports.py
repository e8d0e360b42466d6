"""The reports' networks: report 000's CNN and MLPs, report 003's letters CNN."""

from __future__ import annotations

import numpy as np

from fastconv import nn


def report000_cnn(dtype=np.float32, seed: int = 0) -> nn.Sequential:
    """Report 000's MNIST CNN (28x28 input, 4,842 parameters):
    conv(1->4, k5, pad2)-ReLU-avgpool2-conv(4->8, k5, pad2)-ReLU-avgpool2-linear(392->10).

    Each conv-ReLU-avgpool block is one fused `Conv2dReLUAvgPool` layer; the first
    skips the gradient with respect to the images."""
    rng = nn.as_generator(seed)
    return nn.Sequential(
        nn.Conv2dReLUAvgPool(1, 4, 5, padding=2, input_grad=False, dtype=dtype, rng=rng),
        nn.Conv2dReLUAvgPool(4, 8, 5, padding=2, dtype=dtype, rng=rng),
        nn.Flatten(),
        nn.Linear(8 * 7 * 7, 10, dtype=dtype, rng=rng),
    )


def _mlp(widths, dtype, seed) -> nn.Sequential:
    """Flatten, then Linear-ReLU pairs through ``widths``, with no ReLU on the output."""
    rng = nn.as_generator(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for index, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(n_in, n_out, dtype=dtype, rng=rng))
        if index < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def mlp1(dtype=np.float32, seed: int = 0) -> nn.Sequential:
    """Report 000's MLP-1: 784-392-10 with ReLU (311,650 parameters), softmax CE."""
    return _mlp((784, 392, 10), dtype, seed)


def mlp2(dtype=np.float32, seed: int = 0) -> nn.Sequential:
    """Report 000's MLP-2: 784-392-196-10 with ReLU (386,718 parameters), Euclidean loss."""
    return _mlp((784, 392, 196, 10), dtype, seed)


def letters_cnn(num_classes: int = 26, batch_norm: bool = True, dropout: float = 0.0,
                dtype=np.float32, seed: int = 0) -> nn.Sequential:
    """Report 003's letters CNN on 32x32 grey images.

    conv5x5(1->32)-BN-ReLU, conv5x5(32->64)-BN-ReLU, maxpool2,
    Residual(conv3x3(64->64)-BN-ReLU), conv3x3(64->128)-BN-ReLU, maxpool2,
    Residual(conv3x3(128->128)-BN-ReLU-Dropout), flatten,
    linear(8192->256)-BN1d-ReLU-Dropout-linear(256->num_classes).

    As in the report's code every conv/linear keeps its bias; ``batch_norm=False``
    drops the BN layers (each conv-ReLU pair then becomes a fused `Conv2dReLU`) and
    ``dropout=0`` drops the Dropout layers (both identities).  The first conv skips
    the gradient with respect to the images (``input_grad=False``).
    """
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout must lie in [0, 1], got {dropout!r}")
    rng = nn.as_generator(seed)

    def conv_block(c_in, c_out, k, with_dropout=False) -> list[nn.Module]:
        # The first conv sees the images, whose gradient nobody needs.
        options = dict(padding=k // 2, input_grad=c_in > 1, dtype=dtype, rng=rng)
        if batch_norm:
            block = [nn.Conv2d(c_in, c_out, k, **options), nn.BatchNorm2d(c_out, dtype=dtype), nn.ReLU()]
        else:
            block = [nn.Conv2dReLU(c_in, c_out, k, **options)]
        if with_dropout and dropout > 0:
            block.append(nn.Dropout(dropout, rng=rng))
        return block

    head: list[nn.Module] = [nn.Linear(128 * 8 * 8, 256, dtype=dtype, rng=rng)]
    if batch_norm:
        head.append(nn.BatchNorm1d(256, dtype=dtype))
    head.append(nn.ReLU())
    if dropout > 0:
        head.append(nn.Dropout(dropout, rng=rng))
    head.append(nn.Linear(256, num_classes, dtype=dtype, rng=rng))

    return nn.Sequential(
        *conv_block(1, 32, 5),
        *conv_block(32, 64, 5),
        nn.MaxPool2d(2),
        nn.Residual(nn.Sequential(*conv_block(64, 64, 3))),
        *conv_block(64, 128, 3),
        nn.MaxPool2d(2),
        nn.Residual(nn.Sequential(*conv_block(128, 128, 3, with_dropout=True))),
        nn.Flatten(),
        *head,
    )
