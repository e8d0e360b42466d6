"""The global seed: `manual_seed` makes every default random generator reproducible.

Whatever takes ``rng=None`` (layer initialisation, `Dropout` masks) or ``seed=None``
(`fastconv.data.batches` shuffling) draws from `default_generator`.  Without
`manual_seed` that is fresh OS entropy; after ``manual_seed(n)`` each call returns the
next child of one seeded `numpy.random.SeedSequence`, so a program that builds its
layers in the same order gets the same numbers on every run (like
``torch.manual_seed``: two layers built one after the other still differ).
``np.random.seed`` has no effect: fastconv uses `numpy.random.Generator`s only.
"""

from __future__ import annotations

import numbers

import numpy as np

_source: np.random.SeedSequence | None = None


def manual_seed(seed: int | None) -> None:
    """Seed every default generator of fastconv with the non-negative int ``seed``;
    ``None`` returns to fresh OS entropy.  An explicit ``rng=``/``seed=`` argument
    is never affected."""
    global _source
    if seed is None:
        _source = None
        return
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be a non-negative int or None, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    _source = np.random.SeedSequence(int(seed))


def default_generator() -> np.random.Generator:
    """A generator for a caller given no ``rng``: the next one of the `manual_seed`
    sequence, or fresh OS entropy when no seed was set."""
    if _source is None:
        return np.random.default_rng()
    return np.random.default_rng(_source.spawn(1)[0])
