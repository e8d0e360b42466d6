"""Containers: `Sequential` (a chain), `ModuleList` (modules a custom Module calls
itself), `Residual` (``y = body(x) + shortcut(x)``), `Concat` and `Add` (parallel
branches joined by channel concatenation or by a sum)."""

from __future__ import annotations

import numpy as np

import fastconv.functional as F
from fastconv.nn.module import Module

_NO_KERNELS = frozenset()
_SUM = frozenset({"add"})          # `fastconv.functional.add`


def _check_modules(items, owner: str) -> list[Module]:
    items = list(items)
    for index, item in enumerate(items):
        if not isinstance(item, Module):
            raise TypeError(f"{owner} item {index} is a {type(item).__name__}, not a Module")
    return items


def _sum_arrays(arrays) -> np.ndarray | None:
    """A fresh array holding the sum of the branches' outputs or input gradients.
    A None (the input gradient of a first layer built with ``input_grad=False``)
    adds nothing; None when all are None."""
    present = [array for array in arrays if array is not None]
    if not present:
        return None
    total = F.add(present[0], present[1]) if len(present) > 1 else present[0].copy()
    for array in present[2:]:
        total += array
    return total


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
        self.layers: list[Module] = _check_modules(layers, "Sequential")

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

    def kernel_ops(self) -> frozenset:
        return _NO_KERNELS

    def config(self) -> dict:
        return {"layers": list(self.layers)}

    @classmethod
    def from_config(cls, config: dict) -> "Sequential":
        return cls(*config["layers"])


class ModuleList(Module):
    """A list of modules whose parameters belong to the Module holding it, as
    `torch.nn.ModuleList`: ``self.blocks = nn.ModuleList([...])`` names their state
    ``blocks.<index>.<name>``.  It has no forward or backward of its own: the holding
    Module calls its items (forward in order, backward in reverse)."""

    def __init__(self, modules=None):
        super().__init__()
        self._items: list[Module] = []
        if modules is not None:
            self.extend(modules)

    def append(self, module: Module) -> "ModuleList":
        self._items.extend(_check_modules([module], "ModuleList"))
        return self

    def extend(self, modules) -> "ModuleList":
        try:
            items = list(modules)
        except TypeError:
            raise TypeError(f"ModuleList.extend takes an iterable of Modules, got "
                            f"{type(modules).__name__}") from None
        self._items.extend(_check_modules(items, "ModuleList"))
        return self

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(self._items[index])
        return self._items[index]

    def __setitem__(self, index: int, module: Module) -> None:
        self._items[index] = _check_modules([module], "ModuleList")[0]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self._items)

    def named_children(self) -> list[tuple[str, Module]]:
        return [(str(index), module) for index, module in enumerate(self._items)]

    def forward(self, x):
        raise NotImplementedError("ModuleList has no forward: call its modules in the forward of "
                                  "the Module that holds it")

    def backward(self, grad):
        raise NotImplementedError("ModuleList has no backward: call its modules' backward (in "
                                  "reverse order) in the backward of the Module that holds it")

    def kernel_ops(self) -> frozenset:
        return _NO_KERNELS

    def config(self) -> dict:
        return {"modules": list(self._items)}


class Residual(Module):
    """``y = body(x) + shortcut(x)``, the shortcut being the identity when ``shortcut``
    is None (then ``body`` must preserve the shape) or a projection module (a strided
    1x1 convolution and batch norm, say) whose output shape matches the body's.

    Backward sums the gradient through the body and through the shortcut (``grad_y``
    itself for the identity).  State is named ``body.*`` and ``shortcut.*``.
    """

    def __init__(self, body: Module, shortcut: Module | None = None):
        super().__init__()
        if not isinstance(body, Module):
            raise TypeError(f"body must be a Module, got {type(body).__name__}")
        self.register_module("body", body)
        self.register_module("shortcut", shortcut)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = F.as_array(x)
        y = self.body.forward(x)
        if self.shortcut is None:
            if y.shape != x.shape:
                raise ValueError(f"Residual body changed the shape from {x.shape} to {y.shape}; "
                                 "the identity shortcut needs them equal (or give a shortcut module)")
            # Not in place: the body's last layer may still hold y (ReLU keeps its output).
            return F.add(y, x)
        shortcut = self.shortcut.forward(x)
        if y.shape != shortcut.shape:
            raise ValueError(f"Residual body gives shape {y.shape} but the shortcut gives "
                             f"{shortcut.shape}; they must be equal")
        return F.add(y, shortcut)

    def backward(self, grad_y: np.ndarray) -> np.ndarray | None:
        grad_body = self.body.backward(grad_y)
        grad_shortcut = grad_y if self.shortcut is None else self.shortcut.backward(grad_y)
        return _sum_arrays((grad_body, grad_shortcut))

    def kernel_ops(self) -> frozenset:
        return _SUM

    def config(self) -> dict:
        return {"body": self.body, "shortcut": self.shortcut}


class _Branches(Module):
    """Modules applied to the same input, their outputs joined by `_join`."""

    def __init__(self, *branches: Module):
        super().__init__()
        if len(branches) == 1 and isinstance(branches[0], (list, tuple)):
            branches = tuple(branches[0])
        if not branches:
            raise ValueError(f"{type(self).__name__} needs at least one branch, got none")
        self.branches = ModuleList(_check_modules(branches, type(self).__name__))

    def kernel_ops(self) -> frozenset:
        return _SUM                    # `_sum_arrays` of the branches' outputs or gradients

    def config(self) -> dict:
        return {"branches": list(self.branches)}

    @classmethod
    def from_config(cls, config: dict) -> "_Branches":
        return cls(*config["branches"])


class Concat(_Branches):
    """Parallel branches concatenated along the channels (axis 1), as an Inception
    block: ``y = cat([branch(x) for branch in branches], dim=1)``.  Every branch's
    output must agree in all other axes.  State is named ``branches.<index>.*``."""

    def __init__(self, *branches: Module):
        super().__init__(*branches)
        self._sizes = None     # channels of each branch in the last forward

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = F.as_array(x)
        outputs = [branch.forward(x) for branch in self.branches]
        first = outputs[0]
        for index, output in enumerate(outputs[1:], 1):
            if output.ndim < 2 or output.shape[:1] + output.shape[2:] != first.shape[:1] + first.shape[2:]:
                raise ValueError(f"Concat branch {index} gives shape {output.shape}, branch 0 gives "
                                 f"{first.shape}: they may differ in axis 1 (channels) only")
        self._sizes = [output.shape[1] for output in outputs]
        return np.concatenate(outputs, axis=1)

    def backward(self, grad_y: np.ndarray) -> np.ndarray | None:
        if self._sizes is None:
            raise RuntimeError("Concat.backward called before forward")
        bounds = np.cumsum([0] + self._sizes)
        return _sum_arrays(branch.backward(grad_y[:, start:stop])
                              for branch, start, stop in zip(self.branches, bounds[:-1], bounds[1:]))


class Add(_Branches):
    """The sum of parallel branches: ``y = sum(branch(x) for branch in branches)``
    (every branch's output of one shape).  State is named ``branches.<index>.*``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = F.as_array(x)
        outputs = [branch.forward(x) for branch in self.branches]
        for index, output in enumerate(outputs[1:], 1):
            if output.shape != outputs[0].shape:
                raise ValueError(f"Add branch {index} gives shape {output.shape}, branch 0 gives "
                                 f"{outputs[0].shape}: they must be equal")
        # a fresh array: a branch's last layer may still hold its output
        return _sum_arrays(outputs)

    def backward(self, grad_y: np.ndarray) -> np.ndarray | None:
        return _sum_arrays(branch.backward(grad_y) for branch in self.branches)
