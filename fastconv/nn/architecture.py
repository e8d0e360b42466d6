"""A module tree's architecture as JSON values, and the tree rebuilt from them.

Each built-in module says how to rebuild itself: ``config()`` gives its constructor
arguments (child modules included) and ``from_config(config)`` calls the
constructor.  `describe` turns a tree into nested ``{"class": name, "config": {...}}``
dicts; `build` rebuilds it (fresh weights: `fastconv.load` then loads the saved
ones).  Only the classes of `built_in_classes` are ever constructed from a file, so
a file cannot name arbitrary code; a tree holding any other Module class (a user's
own) cannot be described, and `CannotDescribe` says which module is the reason.
"""

from __future__ import annotations

import numbers

import numpy as np

from fastconv.nn.module import Module

# JSON nesting deeper than this is refused rather than risking Python's recursion limit.
MAX_DEPTH = 200


class CannotDescribe(TypeError):
    """The tree holds a module `build` could not recreate: a class that is not built
    in (a user's own), or one module in two places (weight sharing)."""


def built_in_classes() -> dict[str, type]:
    """Name -> class of every module `build` may construct."""
    from fastconv import nn   # here, not at import: fastconv.nn imports this module

    classes = (nn.Conv2d, nn.Conv2dReLU, nn.Conv2dReLUAvgPool, nn.ConvTranspose2d, nn.Linear,
               nn.ReLU, nn.AvgPool2d, nn.MaxPool2d, nn.Dropout, nn.Flatten, nn.BatchNorm1d,
               nn.BatchNorm2d, nn.Sequential, nn.ModuleList, nn.Residual, nn.Concat, nn.Add,
               nn.Identity, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ReLU6, nn.AdaptiveAvgPool2d,
               nn.AdaptiveMaxPool2d, nn.Upsample)
    return {cls.__name__: cls for cls in classes}


def describe(module: Module) -> dict:
    """``module``'s architecture as JSON values, or `CannotDescribe`."""
    return _describe(module, "(root)", built_in_classes(), {})


def _describe(module, path: str, classes: dict, seen: dict) -> dict:
    name = type(module).__name__
    if classes.get(name) is not type(module):
        raise CannotDescribe(f"{path} is a {type(module).__module__}.{type(module).__qualname__}, "
                             f"not a built-in fastconv.nn module")
    if id(module) in seen:
        raise CannotDescribe(f"{path} is the same module as {seen[id(module)]} (shared modules "
                             "are not described)")
    seen[id(module)] = path
    config = module.config()
    return {"class": name, "config": {key: _encode(value, f"{path}.{key}", classes, seen)
                                      for key, value in config.items()}}


def _encode(value, path: str, classes: dict, seen: dict):
    if isinstance(value, Module):
        return _describe(value, path, classes, seen)
    if isinstance(value, (list, tuple)):
        return [_encode(item, f"{path}[{index}]", classes, seen) for index, item in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, numbers.Integral, numbers.Real, str)):
        return value
    raise TypeError(f"{path}: {type(value).__name__} is not a JSON value")


def build(spec) -> Module:
    """The module tree ``spec`` (from `describe`) describes, with fresh weights.
    A spec naming an unknown class or arguments its constructor refuses is a
    `ValueError` saying which."""
    return _build(spec, "(root)", built_in_classes(), 0)


def _build(spec, path: str, classes: dict, depth: int) -> Module:
    if depth > MAX_DEPTH:
        raise ValueError(f"architecture nested deeper than {MAX_DEPTH} levels")
    if not isinstance(spec, dict) or set(spec) != {"class", "config"} or not isinstance(spec["config"], dict):
        raise ValueError(f"architecture at {path}: expected {{'class': ..., 'config': {{...}}}}, "
                         f"got {str(spec):.60}")
    cls = classes.get(spec["class"]) if isinstance(spec["class"], str) else None
    if cls is None:
        raise ValueError(f"architecture at {path}: unknown module class {spec['class']!r}")
    config = {key: _decode(value, f"{path}.{key}", classes, depth + 1)
              for key, value in spec["config"].items()}
    try:
        return cls.from_config(config)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"architecture at {path}: {cls.__name__} cannot be built from its "
                         f"config: {exc}") from None


def _decode(value, path: str, classes: dict, depth: int):
    if isinstance(value, dict):                # configs hold no other dicts than modules
        return _build(value, path, classes, depth)
    if isinstance(value, list):
        return [_decode(item, f"{path}[{index}]", classes, depth + 1) for index, item in enumerate(value)]
    return value
