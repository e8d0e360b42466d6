"""fastconv: JIT-compiled convolution-network kernels behind a switchable backend.

>>> import fastconv
>>> fastconv.set_backend("numpy")            # or FASTCONV_BACKEND=numpy
>>> with fastconv.use_backend("numba"): ...  # temporarily
>>> fastconv.manual_seed(0)                  # every default generator reproducible
>>> fastconv.functional.conv2d(x, w)         # sub-modules load on first access

Importing is cheap and cannot fail on a bad environment variable: the backend (and
numba) is loaded on first use, where ``FASTCONV_BACKEND`` is read.
"""

import importlib
import sys

from fastconv.backends import (
    available_backends,
    get_backend,
    register_backend,
    set_backend,
    use_backend,
)
from fastconv.system import env as _env
from fastconv.system.seeding import manual_seed

# ``fastconv.env`` stays an import path (``from fastconv.env import
# EnvironmentVariableError``); the module lives with the other system modules.
sys.modules[f"{__name__}.env"] = _env

__version__ = "0.1.0"
__all__ = [
    "available_backends",
    "get_backend",
    "manual_seed",
    "register_backend",
    "set_backend",
    "use_backend",
    "save",
    "load",
    "load_state",
    "__version__",
]


# Checkpoints (imported on first call: `import fastconv` stays light).
def save(model, path):
    """Save ``model`` (any `fastconv.nn.Module`) to ``path``: weights, and the
    architecture when it is made of built-in modules (npz, atomic, no pickle); see
    `fastconv.checkpoint.save`."""
    from fastconv.checkpoint import save as save_model

    return save_model(model, path)


def load(path, model=None):
    """The model in ``path`` (from `save` or ``fastconv train``), rebuilt from the
    file, or loaded into ``model`` (needed for your own Module classes); see
    `fastconv.checkpoint.load`."""
    from fastconv.checkpoint import load as load_model

    return load_model(path, model)


def load_state(path):
    """The weights and buffers saved in ``path``, for ``model.load_state_dict``."""
    from fastconv.checkpoint import load_state as load_model_state

    return load_model_state(path)


# PEP 562: ``fastconv.nn`` and the rest without importing them (and numba) up front.
_SUBMODULES = frozenset({
    "activations", "backends", "benchmark", "checkpoint", "cli", "compare", "data",
    "distributed", "entropy", "env", "functional", "models", "nn", "optim", "system",
    "train", "training", "viz",
})


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBMODULES)
