"""`Parameter` and the `Module` base class: manual backprop, PyTorch-like bookkeeping.

A module's ``forward(x)`` caches what its ``backward`` needs; ``backward(grad_y)``
returns the gradient w.r.t. ``x`` and *adds* the parameter gradients into each
``Parameter.grad`` (`Parameter.accumulate_grad`, as PyTorch accumulates into
``.grad``), so ``zero_grad()`` must run between steps.

As in PyTorch, assigning a `Parameter` or a `Module` to an attribute registers it
(``self.conv = nn.Conv2d(...)``); `register_parameter`, `register_buffer` and
`register_module` do the same explicitly (buffers always need them).  Any other
attribute write (the arrays ``forward`` caches) costs one type check and one set
lookup more than a plain write.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def check_state_keys(state: Mapping, expected: list[str], owner: str) -> None:
    """A `ValueError` naming every missing and unexpected key of a state dict."""
    keys = set(state.keys())
    missing = [key for key in expected if key not in keys]
    if missing:
        raise ValueError(f"{owner} state_dict is missing key(s): {', '.join(missing)}")
    unexpected = sorted(keys - set(expected))
    if unexpected:
        raise ValueError(f"{owner} state_dict has unexpected key(s): {', '.join(map(str, unexpected))}")


def _model_entries(state: Mapping) -> Mapping:
    """A fastconv checkpoint opened with ``np.load`` keys the model's arrays as
    ``model/<name>`` beside ``meta`` and the optimiser's: take those alone."""
    keys = list(state.keys())
    if "meta" in keys and any(str(key).startswith("model/") for key in keys):
        return {key[len("model/"):]: state[key] for key in keys if str(key).startswith("model/")}
    return state


class Parameter:
    """A trainable array: ``data``, its gradient ``grad`` (same shape and dtype,
    zero-initialised) and a ``name`` (the attribute name in its module).

    `zero_grad` only marks the gradient as zero: the next `accumulate_grad` then
    writes instead of adding (one pass over the array instead of a fill and an add),
    and reading ``grad`` before that fills it with zeros.  An array taken from
    ``grad`` before `zero_grad` keeps its values, as a tensor does in PyTorch."""

    __slots__ = ("data", "_grad", "_grad_is_zero", "name")

    def __init__(self, data: np.ndarray, name: str = ""):
        self.data = np.ascontiguousarray(data)
        self._grad = np.zeros_like(self.data)
        self._grad_is_zero = False
        self.name = name

    @property
    def grad(self) -> np.ndarray:
        if self._grad_is_zero:
            self._grad.fill(0)
            self._grad_is_zero = False
        return self._grad

    @grad.setter
    def grad(self, value: np.ndarray) -> None:
        self._grad = value
        self._grad_is_zero = False

    def accumulate_grad(self, grad) -> None:
        """``self.grad += grad`` (NumPy's broadcasting and casting rules)."""
        if self._grad_is_zero:
            np.copyto(self._grad, grad, casting="same_kind")
            self._grad_is_zero = False
        else:
            self._grad += grad

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def zero_grad(self) -> None:
        self._grad_is_zero = True

    def __repr__(self) -> str:
        return f"Parameter(name={self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer and container.

    Subclasses call ``super().__init__()``, assign their layers and parameters as
    attributes (or use `register_parameter` / `register_module`; buffers such as BN's
    running statistics need `register_buffer`), and implement ``forward(x)`` and
    ``backward(grad_y)``.
    """

    # Read by __setattr__ before __init__ has run (a subclass setting plain attributes
    # before calling super().__init__()).
    _registered_names: frozenset = frozenset()

    def __init__(self):
        # object.__setattr__: the bookkeeping must exist before __setattr__ consults it.
        set_plain = object.__setattr__
        set_plain(self, "training", True)
        set_plain(self, "_parameter_names", [])
        set_plain(self, "_buffer_names", [])
        set_plain(self, "_module_names", [])
        set_plain(self, "_registered_names", set())   # parameter and module names

    # ------------------------------------------------------------ registration
    def __setattr__(self, name: str, value) -> None:
        # The common case, a cached array or a flag, is one isinstance and one set lookup.
        if isinstance(value, (Parameter, Module)) or name in self._registered_names:
            self._assign_registered(name, value)
        else:
            object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        if name in self._registered_names or name in self.__dict__.get("_buffer_names", ()):
            self._forget(name)

    def _assign_registered(self, name: str, value) -> None:
        """``self.name = value`` where value is a Parameter/Module or name holds one."""
        if "_parameter_names" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning "
                                 f"{type(value).__name__} {name!r}")
        if isinstance(value, Parameter):
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self.register_module(name, value)
        elif value is None:          # an absent parameter or sub-module, as in PyTorch
            object.__setattr__(self, name, None)
        else:
            expected = "Parameter" if name in self._parameter_names else "Module"
            raise TypeError(f"cannot assign a {type(value).__name__} to {type(self).__name__}.{name}, "
                            f"which holds a {expected} (a {expected} or None expected)")

    def _forget(self, name: str) -> None:
        """Drop ``name`` from every registry (it is being deleted or changes kind)."""
        for names in (self._parameter_names, self._buffer_names, self._module_names):
            if name in names:
                names.remove(name)
        self._registered_names.discard(name)

    def _check_name(self, name, kind: str) -> None:
        if "_parameter_names" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before registering "
                                 f"{kind} {name!r}")
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"{kind} name must be a non-empty string without '.', got {name!r}")

    def register_parameter(self, name: str, param: Parameter | None) -> Parameter | None:
        """Store ``param`` as attribute ``name`` (None is allowed: an absent bias)."""
        self._check_name(name, "parameter")
        if param is not None:
            if not isinstance(param, Parameter):
                raise TypeError(f"{name} must be a Parameter or None, got {type(param).__name__}")
            param.name = name
        if name not in self._parameter_names:
            self._forget(name)
            self._parameter_names.append(name)
            self._registered_names.add(name)
        object.__setattr__(self, name, param)
        return param

    def register_buffer(self, name: str, array: np.ndarray) -> np.ndarray:
        """Store non-trainable state (BN running statistics) that `state_dict` saves.
        Buffers must be updated in place so `load_state_dict` and callers holding the
        array stay in sync."""
        self._check_name(name, "buffer")
        if name not in self._buffer_names:
            self._forget(name)
            self._buffer_names.append(name)
        object.__setattr__(self, name, array)
        return array

    def register_module(self, name: str, module: "Module | None") -> "Module | None":
        """Store ``module`` as attribute ``name`` (None: an absent sub-module)."""
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{name} must be a Module, got {type(module).__name__}")
        if name not in self._module_names:
            self._forget(name)
            self._module_names.append(name)
            self._registered_names.add(name)
        object.__setattr__(self, name, module)
        return module

    # ------------------------------------------------------------ computation
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward(x)")

    def backward(self, grad):
        raise NotImplementedError(
            f"{type(self).__name__} does not implement backward(grad_y): fastconv's backprop is "
            f"manual, so a Module that defines forward must also define backward, returning the "
            f"gradient w.r.t. its input (call each child's backward in the reverse order of forward)")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def kernel_ops(self) -> frozenset | None:
        """Names of the `fastconv.functional` kernels this module itself (not its
        children) runs in forward and backward, each named by its forward function
        (``"conv2d"`` stands for `conv2d` and its backward functions); None: unknown
        (a user's own Module)."""
        return None

    # ------------------------------------------------------------ architecture
    def config(self) -> dict | None:
        """The constructor arguments that rebuild this module (weights aside), as JSON
        values and child Modules; None: not known (a user's own Module), so
        `fastconv.save` stores weights only.  See `fastconv.nn.architecture`."""
        return None

    @classmethod
    def from_config(cls, config: dict) -> "Module":
        """The module `config` describes (fresh weights)."""
        return cls(**config)

    # ------------------------------------------------------------ traversal
    def named_children(self) -> list[tuple[str, "Module"]]:
        """Direct sub-modules with their names (containers override this); a name
        set to None (an absent sub-module) is left out."""
        children = [(name, getattr(self, name)) for name in self._module_names]
        return [(name, child) for name, child in children if child is not None]

    def children(self) -> list["Module"]:
        return [module for _, module in self.named_children()]

    def named_modules(self, prefix: str = "") -> list[tuple[str, "Module"]]:
        """This module (named ``prefix``, "" at the root) and every descendant."""
        found = [(prefix, self)]
        for name, child in self.named_children():
            found.extend(child.named_modules(f"{prefix}.{name}" if prefix else name))
        return found

    def modules(self) -> list["Module"]:
        return [module for _, module in self.named_modules()]

    def _named_arrays(self, prefix: str = ""):
        """(dotted name, Parameter or buffer ndarray) for this subtree, in order:
        own parameters, own buffers, then each child's (PyTorch's order)."""
        for name in self._parameter_names:
            param = getattr(self, name)
            if param is not None:
                yield prefix + name, param
        for name in self._buffer_names:
            yield prefix + name, getattr(self, name)
        for name, child in self.named_children():
            yield from child._named_arrays(f"{prefix}{name}.")

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """(dotted name, Parameter) in a deterministic order; a parameter shared by
        two modules is listed once (so an optimiser updates it once)."""
        seen = set()
        named = []
        for name, item in self._named_arrays():
            if isinstance(item, Parameter) and id(item) not in seen:
                seen.add(id(item))
                named.append((name, item))
        return named

    def parameters(self) -> list[Parameter]:
        return [param for _, param in self.named_parameters()]

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        return [(name, item) for name, item in self._named_arrays() if not isinstance(item, Parameter)]

    def num_parameters(self) -> int:
        """Number of trainable scalars (buffers excluded)."""
        return sum(param.data.size for param in self.parameters())

    # ------------------------------------------------------------ modes, grads
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (batch statistics, dropout on) here and in every descendant."""
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode: running statistics, dropout off."""
        return self.train(False)

    def zero_grad(self) -> None:
        for param in self.parameters():
            param.zero_grad()

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed by dotted name (``layers.0.weight``,
        ``layers.1.running_mean``): ready for ``np.savez``."""
        return {
            name: (item.data if isinstance(item, Parameter) else item).copy()
            for name, item in self._named_arrays()
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Copy ``state`` into the parameters and buffers, cast to their dtype.

        Strict: a missing key, an unexpected key or a shape mismatch raises
        `ValueError` naming the key, and nothing is modified unless every entry fits.
        ``state`` may be any mapping, e.g. the `numpy.lib.npyio.NpzFile` of ``np.load``;
        for a fastconv checkpoint (``np.load("runs/x/model.npz")``) its ``model/``
        entries are used.
        """
        state = _model_entries(state)
        targets = {
            name: (item.data if isinstance(item, Parameter) else item)
            for name, item in self._named_arrays()
        }
        check_state_keys(state, list(targets), type(self).__name__)
        values = {}
        for name, target in targets.items():
            value = np.asarray(state[name])
            if value.dtype.kind not in "fiub":
                raise TypeError(f"state_dict[{name!r}] must be numeric, got dtype {value.dtype}")
            if value.shape != target.shape:
                raise ValueError(
                    f"state_dict[{name!r}] has shape {value.shape}, expected {target.shape}"
                )
            values[name] = value
        for name, target in targets.items():
            # In place: optimisers and callers keep referring to the same arrays.
            np.copyto(target, values[name], casting="unsafe")

    # ------------------------------------------------------------ display
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = self.named_children()
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        lines.append(")")
        return "\n".join(lines)


def count_parameters(module: Module) -> int:
    """Number of trainable scalars in ``module``."""
    return module.num_parameters()
