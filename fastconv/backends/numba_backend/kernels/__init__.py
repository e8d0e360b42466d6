"""The numba backend's JIT-compiled kernels, one module per family.

Everything here is ``@njit(cache=True)`` and trusts its caller: arrays C-contiguous
and writable, shapes consistent, ints in range (bounds checks are off).  They are
reached only through the planning modules one level up, which are reached only
through `fastconv.functional`, which validates every argument.
"""
