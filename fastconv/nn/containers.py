"""Containers: `Sequential` (a chain) and `Residual` (``y = body(x) + x``)."""

from __future__ import annotations

import numpy as np

import fastconv.functional as F
from fastconv.nn.module import Module


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse.

    Indexable (``model[0]``, a slice gives a `Sequential` sharing the same layers),
    iterable and sized.  The layers live in ``.layers``; their state is named
    ``layers.<index>.<name>`` (``layers.0.weight``).
    """

    def __init__(self, *layers: Module):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for index, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential item {index} is a {type(layer).__name__}, not a Module")
        self.layers: list[Module] = list(layers)

    def named_children(self) -> list[tuple[str, Module]]:
        return [(f"layers.{index}", layer) for index, layer in enumerate(self.layers)]

    def append(self, layer: Module) -> "Sequential":
        if not isinstance(layer, Module):
            raise TypeError(f"can only append a Module, got {type(layer).__name__}")
        self.layers.append(layer)
        return self

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        for position, layer in enumerate(reversed(self.layers)):
            if grad is None and position:
                raise RuntimeError(
                    f"{type(self.layers[-position]).__name__} returned no input gradient "
                    "(input_grad=False) but is not the first layer")
            grad = layer.backward(grad)
        return grad

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)


class Residual(Module):
    """Identity shortcut around ``body``: ``y = body(x) + x``.

    ``body`` must preserve the shape.  Backward sums the gradient through the body
    and the gradient through the shortcut (which is ``grad_y`` itself).
    """

    def __init__(self, body: Module):
        super().__init__()
        self.register_module("body", body)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = F.as_array(x)
        y = self.body.forward(x)
        if y.shape != x.shape:
            raise ValueError(
                f"Residual body changed the shape from {x.shape} to {y.shape}; "
                "the shortcut needs them equal"
            )
        # Not in place: the body's last layer may still hold y (ReLU keeps its output).
        return y + x

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        return self.body.backward(grad_y) + grad_y
