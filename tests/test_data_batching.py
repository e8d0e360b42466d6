"""Mini-batches: every sample once per pass, seeded order, float conversion."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv.data import batches, num_batches, to_float


def dataset(n, side=3):
    """uint8 images whose first pixel is the sample index (mod 256), labels = index."""
    images = np.zeros((n, side, side), np.uint8)
    images[:, 0, 0] = np.arange(n) % 256
    return images, np.arange(n, dtype=np.int64)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 300), batch_size=st.integers(1, 64), shuffle=st.booleans(), seed=st.integers(0, 5))
def test_every_sample_exactly_once(n, batch_size, shuffle, seed):
    images, labels = dataset(n)
    produced = list(batches(images, labels, batch_size, shuffle=shuffle, seed=seed))
    assert len(produced) == num_batches(n, batch_size)
    seen = np.concatenate([y for _, y in produced]) if produced else np.empty(0, np.int64)
    assert sorted(seen) == list(range(n))
    sizes = [len(y) for _, y in produced]
    assert all(size == batch_size for size in sizes[:-1])
    if produced:
        assert sizes[-1] == n - batch_size * (len(sizes) - 1)  # the partial batch is kept
    if not shuffle:
        assert list(seen) == list(range(n))
    for x, y in produced:  # images travel with their labels
        np.testing.assert_allclose(x[:, 0, 0, 0] * 255, y % 256, atol=1e-4)


def test_types_and_scaling():
    images, labels = dataset(10)
    images[:, 1, 1] = 255
    x, y = next(batches(images, labels.astype(np.uint8), 4))
    assert x.dtype == np.float32 and x.shape == (4, 1, 3, 3)
    assert y.dtype == np.int64
    assert x[:, 0, 1, 1].tolist() == [1.0] * 4 and x.min() == 0.0


def test_seeded_shuffle_is_reproducible():
    images, labels = dataset(100)
    order = lambda **kw: np.concatenate([y for _, y in batches(images, labels, 7, **kw)])  # noqa: E731
    np.testing.assert_array_equal(order(seed=3), order(seed=3))
    assert not np.array_equal(order(seed=3), order(seed=4))
    assert not np.array_equal(order(seed=3), np.arange(100))
    # one Generator across epochs: a new order each epoch, the same sequence every run
    epochs = lambda: [order(seed=gen) for gen in [np.random.default_rng(0)] for _ in range(2)]  # noqa: E731
    first, second = epochs()
    assert not np.array_equal(first, second)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(order(seed=rng), first)
    np.testing.assert_array_equal(order(seed=rng), second)


def test_drop_last():
    images, labels = dataset(10)
    sizes = [len(y) for _, y in batches(images, labels, 4, drop_last=True)]
    assert sizes == [4, 4] and num_batches(10, 4, drop_last=True) == 2


def test_bad_arguments():
    images, labels = dataset(5)
    for bad_size in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            list(batches(images, labels, bad_size))
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        list(batches(images, labels[:4], 2))
    with pytest.raises(ValueError, match="1-D integer"):
        list(batches(images, labels.astype(float), 2))


def test_to_float():
    images = np.array([[[0, 255], [51, 102]]], np.uint8)
    x = to_float(images)
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], [[0, 1], [0.2, 0.4]], rtol=1e-6)
    assert to_float(images[:, None]).shape == (1, 1, 2, 2)
    already = np.full((2, 1, 3, 3), 0.5, np.float32)
    assert to_float(already) is already  # floats are assumed scaled: no copy
    assert to_float(images, dtype=np.float64).dtype == np.float64
    with pytest.raises(TypeError, match="uint8 or float"):
        to_float(images.astype(np.int32))
    with pytest.raises(ValueError, match="shape"):
        to_float(np.zeros((2, 2), np.uint8))
