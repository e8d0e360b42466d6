"""Weights that cannot change, and what is computed from them once.

An array is *frozen* when neither it nor any array it views is writeable
(`fastconv.nn.freeze` makes a model's parameters so; ``w.flags.writeable = False``
does it for a functional call).  For a frozen array:

* `writable` is the one C-contiguous writeable copy the kernels take (they are
  compiled for writeable arrays, and `runtime.kernel_array` would copy a read-only
  one on every call);
* `panels` are its GEMM panels (`kernels/gemm_packed.py`), packed on first use.

Both are kept while the array lives (a weak reference drops them with it): about
two more copies of a frozen model's convolution weights.  A writeable array is never
cached -- it may change between calls, and nothing here could tell.  (Nor could it
tell an array made writeable again, changed, and made read-only again: freezing is a
promise that the weights stay as they are.)
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import gemm_packed as _packed
from fastconv.backends.numba_backend.kernels import simd

_lock = threading.Lock()
_entries: dict = {}      # id(array) -> [weak reference, writable copy, panels or None]


def frozen(a: np.ndarray) -> bool:
    """Whether ``a`` and every array it views are read-only."""
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        a = a.base
    return True


def _entry(a: np.ndarray) -> list:
    key = id(a)
    entry = _entries.get(key)
    if entry is not None and entry[0]() is a:
        return entry
    with _lock:
        copy = np.array(a, order="C", copy=True)
        entry = [weakref.ref(a, lambda _, key=key: _entries.pop(key, None)), copy, None]
        _entries[key] = entry
    return entry


def writable(a: np.ndarray) -> np.ndarray:
    """The cached writeable copy of the frozen ``a``."""
    return _entry(a)[1]


def weight_array(a: np.ndarray) -> np.ndarray:
    """`runtime.kernel_array` for weights and biases: a frozen one's cached copy
    instead of a fresh copy on every call."""
    return writable(a) if frozen(a) else rt.kernel_array(a)


def panels(a: np.ndarray) -> np.ndarray:
    """The cached GEMM panels of the frozen 4-D weights ``a`` (``C_out`` rows of
    ``C_in*kh*kw``)."""
    entry = _entry(a)
    if entry[2] is None:
        w2 = entry[1].reshape(a.shape[0], -1)
        lanes = simd.lanes(a.dtype)
        packed = np.empty(-(-w2.shape[0] // lanes) * lanes * w2.shape[1], dtype=a.dtype)
        _packed.pack_panels(w2, packed)
        entry[2] = packed
    return entry[2]


def cached_arrays() -> int:
    """How many frozen arrays have copies here (tests)."""
    return len(_entries)
