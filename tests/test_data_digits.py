"""scikit-learn's digits, upscaled to MNIST's 28x28."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fastconv.data import load_dataset, load_digits


def test_shapes_types_and_range():
    train_x, train_y = load_digits("train")
    test_x, test_y = load_digits("test")
    assert train_x.shape == (1438, 28, 28) and test_x.shape == (359, 28, 28)
    assert train_x.dtype == np.uint8 and train_y.dtype == np.int64
    assert train_x.min() == 0 and train_x.max() == 255
    assert set(np.unique(train_y)) == set(range(10)) == set(np.unique(test_y))


def test_split_is_the_last_fifth_and_deterministic():
    from sklearn.datasets import load_digits as sklearn_load_digits

    target = sklearn_load_digits().target
    np.testing.assert_array_equal(load_digits("test")[1], target[-359:])
    np.testing.assert_array_equal(load_digits("train")[0], load_digits("train")[0])


def test_upscaled_images_keep_the_digit():
    from sklearn.datasets import load_digits as sklearn_load_digits

    originals = sklearn_load_digits().images[:50] * (255 / 16)
    upscaled = load_digits("train")[0][:50]
    back = np.stack([np.asarray(Image.fromarray(im).resize((8, 8), Image.Resampling.BOX), float)
                     for im in upscaled])
    correlation = np.corrcoef(back.ravel(), originals.ravel())[0, 1]
    assert correlation > 0.95


def test_other_sizes_and_bad_arguments():
    assert load_digits("test", image_size=8)[0].shape == (359, 8, 8)
    with pytest.raises(ValueError, match="split"):
        load_digits("validation")


def test_load_dataset_digits():
    data = load_dataset("digits")
    assert data.train_x.shape == (1438, 1, 28, 28) and data.test_x.shape == (359, 1, 28, 28)
    assert data.train_x.dtype == np.float32 and data.train_x.max() == 1.0
    assert data.classes == [str(d) for d in range(10)]
    small = load_dataset("digits", limit=100)
    assert len(small.train_y) == 100 and len(small.test_y) == 100
