"""Mini-batches for the training loop, and the uint8 -> float conversion behind them."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from fastconv.system.seeding import default_generator

__all__ = ["to_float", "batches", "num_batches"]


def to_float(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Images as float ``(N, 1, H, W)`` in [0, 1].

    uint8 input is divided by 255; float input is taken as already in [0, 1] and
    only cast.  A missing channel axis (``(N, H, W)``) is added.
    """
    images = np.asarray(images)
    dtype = np.dtype(dtype)
    if images.ndim == 3:
        images = images[:, None, :, :]
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got shape {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(dtype) / dtype.type(255.0)
    if np.issubdtype(images.dtype, np.floating):
        return images.astype(dtype, copy=False)
    raise TypeError(f"images must be uint8 or float, got {images.dtype}")


def num_batches(n_samples: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches `batches` yields for ``n_samples``."""
    return n_samples // batch_size if drop_last else -(-n_samples // batch_size)


def batches(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool = True,
            seed: int | np.random.Generator | None = None,
            drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x, y)`` mini-batches: x float32 ``(B, 1, H, W)`` in [0, 1], y int64 ``(B,)``.

    Every sample appears exactly once per pass; the last batch is smaller when
    ``batch_size`` does not divide N (left out if ``drop_last``).  ``shuffle``
    permutes the order with ``seed`` (an int gives the same order every time; pass
    one Generator for a fresh order each epoch that is still reproducible; None is
    unseeded, or seeded by `fastconv.manual_seed`).  Conversion to float happens per batch, so uint8 data sets stay
    uint8 in memory.
    """
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    batch_size = int(batch_size)
    n_samples = len(images)
    if len(labels) != n_samples:
        raise ValueError(f"{n_samples} images but {len(labels)} labels")
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} shape {labels.shape}")
    rng = default_generator() if seed is None else np.random.default_rng(seed)
    order = rng.permutation(n_samples) if shuffle else np.arange(n_samples)
    stop = n_samples - n_samples % batch_size if drop_last else n_samples
    for start in range(0, stop, batch_size):
        chosen = order[start:start + batch_size]
        yield to_float(images[chosen]), labels[chosen].astype(np.int64)
