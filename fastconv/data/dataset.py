"""The `Dataset` every loader returns, and the deterministic splits behind it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Dataset", "stratified_split", "take_subset"]


@dataclass
class Dataset:
    """Train and test arrays ready for the network.

    ``train_x``/``test_x`` are float32 ``(N, 1, H, W)`` in [0, 1]; ``train_y``/
    ``test_y`` int64 class indices into ``classes``.  ``source`` says where the data
    came from (a folder, or how it was made); ``notes`` any caveat, e.g. that the
    train set was carved out of the official test set.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one sample."""
        return tuple(self.train_x.shape[1:])

    def __repr__(self) -> str:
        # the default dataclass repr would print every pixel
        return (f"Dataset(name={self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
                f"image_shape={self.image_shape}, classes={self.num_classes}, source={self.source!r})")


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` putting ``round(test_fraction * n_c)`` samples of
    each class ``c`` in the test part, chosen by a seeded permutation.

    Both index arrays come back sorted, so the data keeps its original order.
    A class with at least two samples always keeps one on each side.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(test_fraction * len(members)))
        if len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(test_parts))


def take_subset(x: np.ndarray, y: np.ndarray, limit: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` samples, a seeded random choice kept in original order
    (a random choice, not the first ``limit``, because some sets are sorted by class)."""
    if limit is None or limit >= len(y):
        return x, y
    if limit < 1:
        raise ValueError(f"limit must be a positive int or None, got {limit}")
    chosen = np.sort(np.random.default_rng(seed).choice(len(y), size=limit, replace=False))
    return x[chosen], y[chosen]
