"""The numba backend's JIT-compiled kernels, one module per family.

Everything here is ``@njit(cache=True)`` and trusts its caller: arrays C-contiguous
and writable, shapes consistent, ints in range (bounds checks are off).  They are
reached only through the planning modules one level up, which are reached only
through `fastconv.functional`, which validates every argument.
"""

from fastconv.backends.numba_backend import jit_cache as _jit_cache
from fastconv.backends.numba_backend import lean_codegen as _lean_codegen

_jit_cache.install()   # before any kernel is decorated: a bad or unwritable cache cannot break a run
_lean_codegen.install()   # no machine code or optimisation numba throws away
