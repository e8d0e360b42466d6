"""Random number sources and weight initialisation for the layers.

Every layer that draws random numbers takes ``rng``: a `numpy.random.Generator`
(used as is, so several layers can share one stream), an int seed, or None: fresh
OS entropy, or the next generator of `fastconv.manual_seed`'s sequence once it was
called.  Weights are drawn in float64 and then cast, so a float32 and a float64
model built from the same seed hold the same weights up to rounding.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from fastconv.system.seeding import default_generator

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_generator(rng) -> np.random.Generator:
    """A `numpy.random.Generator` from a Generator, an int seed or None."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return default_generator()
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}"
    )


def float_dtype(dtype) -> np.dtype:
    """``dtype`` as a numpy dtype, which must be float32 or float64."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {resolved}")
    return resolved


def fan_in(shape) -> int:
    """Inputs feeding one output unit: ``in_features`` for a ``(out, in)`` matrix,
    ``C_in * kh * kw`` for a ``(C_out, C_in, kh, kw)`` kernel."""
    return int(np.prod(shape[1:]))


def kaiming_normal(shape, rng, dtype=np.float32) -> np.ndarray:
    """He/Kaiming normal weights: ``N(0, 2 / fan_in)``, suited to ReLU networks
    (``torch.nn.init.kaiming_normal_`` with its defaults)."""
    std = math.sqrt(2.0 / fan_in(shape))
    weights = as_generator(rng).standard_normal(shape) * std
    return weights.astype(float_dtype(dtype), copy=False)
