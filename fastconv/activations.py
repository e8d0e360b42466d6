"""Intermediate activations of a `Sequential` model, without touching `fastconv.nn`.

The model is run layer by layer (nested `Sequential` containers are flattened, a
`Residual` block is one step) and three things are recorded:

* **conv blocks** -- the output of each convolution block: the first ReLU after a
  `Conv2d`, or the ReLU map of a fused `Conv2dReLU` / `Conv2dReLUAvgPool` (report
  000's "ReLU outputs"), or the output of a `Residual` whose body
  holds a convolution (report 003's ``x3 = conv3(p1) + p1``).  For report 003's
  network these are the five maps ``x1 .. x5`` whose entropies the report lists;
* **features** -- the input of the last `Linear` layer (the "features before the last
  linear layer" that report 003 embeds with t-SNE);
* **logits** -- the model's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _nn():
    # Imported lazily: this module is imported by viz/cli, which must load even if
    # only part of the package is needed.
    from fastconv import nn

    return nn


def flatten_layers(model) -> list:
    """The model's layers in execution order, nested `Sequential` containers expanded
    (a `Residual` stays one layer: its output is ``body(x) + x``)."""
    nn = _nn()
    if isinstance(model, nn.Sequential):
        layers = []
        for layer in model.layers:
            layers.extend(flatten_layers(layer))
        return layers
    return [model]


def _contains_conv(module) -> bool:
    nn = _nn()
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def conv_block_ends(layers: list) -> list[int]:
    """Indices in ``layers`` whose output closes a convolution block (see module doc)."""
    nn = _nn()
    ends, after_conv = [], False
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.Residual) and _contains_conv(layer):
            ends.append(index)
            after_conv = False
        elif isinstance(layer, nn.Conv2dReLU):
            ends.append(index)
            after_conv = False
        elif isinstance(layer, nn.Conv2d):
            after_conv = True
        elif isinstance(layer, nn.ReLU) and after_conv:
            ends.append(index)
            after_conv = False
    return ends


def conv_layers(model) -> list:
    """Every `Conv2d` of the model in definition order (residual bodies included)."""
    nn = _nn()
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


@dataclass
class Activations:
    """What `collect_activations` recorded for a batch of images."""

    blocks: list[np.ndarray] = field(default_factory=list)  # each (N, C, H, W)
    block_names: list[str] = field(default_factory=list)
    features: np.ndarray | None = None  # (N, F): input of the last Linear
    logits: np.ndarray | None = None  # (N, K)


def collect_activations(model, images: np.ndarray, keep_blocks: bool = True) -> Activations:
    """Forward ``images`` layer by layer, recording conv-block outputs, penultimate
    features and logits.  The caller chooses the mode (call ``model.eval()`` first for
    inference statistics); nothing in the model is changed."""
    nn = _nn()
    layers = flatten_layers(model)
    block_ends = set(conv_block_ends(layers))
    linear_indices = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Linear)]
    last_linear = linear_indices[-1] if linear_indices else None

    result = Activations()
    x = images
    for index, layer in enumerate(layers):
        if index == last_linear:
            # A copy: later layers may reuse or modify their input buffers.
            result.features = np.array(x, copy=True).reshape(len(x), -1)
        x = layer.forward(x)
        if keep_blocks and index in block_ends:
            # A fused conv-ReLU-pool layer returns the pooled map; the block is its ReLU map.
            block = layer.relu_output if isinstance(layer, nn.Conv2dReLUAvgPool) else x
            result.blocks.append(np.array(block, copy=True))
            result.block_names.append(f"block{len(result.blocks)}")
    result.logits = np.array(x, copy=True)
    return result


def iterate_activations(model, images: np.ndarray, batch_size: int = 256, keep_blocks: bool = True):
    """`collect_activations` over ``images`` in batches (yields ``(start, Activations)``)."""
    for start in range(0, len(images), batch_size):
        yield start, collect_activations(model, images[start : start + batch_size], keep_blocks)
