"""The model zoo: the reports' networks and mainstream CNNs as `nn.Sequential`
builders, plus a registry to rebuild them.

``MODELS`` maps the names ``fastconv train --model`` takes to builders;
``build_model(name, **config)`` rebuilds the same architecture (and, for the same
``seed``, the same initial weights), and ``default_loss(name)`` gives the loss it is
trained with.  The DCGAN pair (`dcgan_generator`, `dcgan_discriminator`) is not a
classifier, so it is built directly (see ``examples/dcgan_fashion.py``).

Modules: `reports` (cnn, mlp1, mlp2, letters-cnn), `resnet` (resnet20), `vgg`
(vgg11), `mobilenet` (mobilenetv2), `dcgan`.
"""

from __future__ import annotations

import numpy as np

from fastconv import nn
from fastconv.models.dcgan import dcgan_discriminator, dcgan_generator
from fastconv.models.mobilenet import mobilenetv2
from fastconv.models.reports import letters_cnn, mlp1, mlp2, report000_cnn
from fastconv.models.resnet import resnet20
from fastconv.models.vgg import vgg11

__all__ = ["MODELS", "build_model", "default_loss", "report000_cnn", "mlp1", "mlp2", "letters_cnn",
           "resnet20", "vgg11", "mobilenetv2", "dcgan_generator", "dcgan_discriminator"]

MODELS = {
    "cnn": report000_cnn,
    "mlp1": mlp1,
    "mlp2": mlp2,
    "letters-cnn": letters_cnn,
    "resnet20": resnet20,
    "vgg11": vgg11,
    "mobilenetv2": mobilenetv2,
}

# Report 000 trains MLP-2 with the Euclidean loss; everything else uses softmax CE.
_LOSSES = {"mlp2": nn.EuclideanLoss}


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models are: {', '.join(MODELS)}")


def _json_config(config: dict) -> dict:
    """Builder arguments as JSON values (a dtype by its name), or a TypeError."""
    stored = {}
    for key, value in config.items():
        if key == "dtype":
            value = np.dtype(value).name
        elif isinstance(value, np.generic):
            value = value.item()
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise TypeError(f"build_model: {key}={value!r} cannot be stored in a checkpoint")
        stored[key] = value
    return stored


def build_model(name: str, **config) -> nn.Sequential:
    """``MODELS[name](**config)``, e.g. ``build_model("letters-cnn", dropout=0.3, seed=1)``.

    The model remembers ``name`` and ``config`` (``model.build_config``), which
    `fastconv.save` stores beside the architecture."""
    _check_name(name)
    model = MODELS[name](**config)
    try:
        model.build_config = {"model": name, "model_config": _json_config(config)}
    except TypeError:  # e.g. a Generator as seed: the model works, the file just lacks its name
        model.build_config = None
    return model


def default_loss(name: str) -> nn.Loss:
    """A fresh instance of the loss model ``name`` is trained with."""
    _check_name(name)
    return _LOSSES.get(name, nn.SoftmaxCrossEntropyLoss)()
