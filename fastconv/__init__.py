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
    "__version__",
]

# DESIGN.md: FASTCONV_BACKEND is read when fastconv is imported.
_select_default()
del _select_default
