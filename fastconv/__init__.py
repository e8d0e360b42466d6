"""fastconv: JIT-compiled convolution-network kernels behind a switchable backend.

>>> import fastconv
>>> fastconv.set_backend("numpy")            # or FASTCONV_BACKEND=numpy before import
>>> with fastconv.use_backend("numba"): ...  # temporarily
"""

from fastconv.backends import (
    available_backends,
    get_backend,
    register_backend,
    set_backend,
    use_backend,
)
from fastconv.backends import _select_default

__version__ = "0.1.0"
__all__ = [
    "available_backends",
    "get_backend",
    "register_backend",
    "set_backend",
    "use_backend",
    "save",
    "load",
    "__version__",
]


# Checkpoints (imported on first call: `import fastconv` stays light).
def save(model, path):
    """Save a model built by `fastconv.models.build_model` to ``path`` (npz, atomic,
    no pickle); see `fastconv.checkpoint.save`."""
    from fastconv.checkpoint import save as save_model

    return save_model(model, path)


def load(path):
    """The model in ``path`` (from `save` or ``fastconv train``), rebuilt from its
    stored name and config; see `fastconv.checkpoint.load`."""
    from fastconv.checkpoint import load as load_model

    return load_model(path)

# DESIGN.md: FASTCONV_BACKEND is read when fastconv is imported.
_select_default()
del _select_default
