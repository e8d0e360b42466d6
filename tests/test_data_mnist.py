"""`load_mnist` on the real files, the 8,000/2,000 fallback split, and `load_dataset`."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastconv.data import (
    Dataset,
    load_dataset,
    load_mnist,
    sources,
    train_test_from_test_split,
    write_idx,
)
from fastconv.data.errors import DataError
from tests.conftest import shared_data_dir

SHARED_DATA = shared_data_dir()

# per-class counts of the real test sets, as published
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def need_real(name: str):
    if SHARED_DATA is None or not (SHARED_DATA / name).is_dir():
        pytest.skip(f"real {name} files not available (set FASTCONV_DATA to the shared data folder)")
    return SHARED_DATA


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.delenv("FASTCONV_CACHE", raising=False)
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIRS", [tmp_path / "system"])
    monkeypatch.setattr(sources, "MIRRORS", {name: [] for name in sources.DATASETS})
    return tmp_path


def test_real_mnist_test_split():
    root = need_real("mnist")
    images, labels = load_mnist("mnist", "test", root=root / "mnist", download=False)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels), MNIST_TEST_COUNTS)


def test_real_mnist_via_fastconv_data(isolated, monkeypatch):
    root = need_real("mnist")
    monkeypatch.setenv("FASTCONV_DATA", str(root))
    images, _ = load_mnist("mnist", "test", download=False)  # found as $FASTCONV_DATA/mnist
    assert len(images) == 10000


def test_real_fashion_mnist_both_splits():
    root = need_real("fashion-mnist")
    train_x, train_y = load_mnist("fashion-mnist", "train", root=root, download=False)
    test_x, test_y = load_mnist("fashion-mnist", "test", root=root, download=False)
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(train_y), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(test_y), [1000] * 10)
    # the first test image of Fashion-MNIST is an ankle boot (class 9)
    assert test_y[0] == 9


def test_split_of_the_test_set():
    images = np.arange(10000 * 4, dtype=np.uint8).reshape(10000, 2, 2)
    labels = np.arange(10000, dtype=np.int64)
    train_x, train_y, test_x, test_y = train_test_from_test_split(images, labels, seed=0)
    assert len(train_y) == 8000 and len(test_y) == 2000
    assert not set(train_y) & set(test_y)
    assert sorted(np.concatenate([train_y, test_y])) == list(range(10000))
    assert np.all(np.diff(train_y) > 0)  # original order kept
    np.testing.assert_array_equal(train_x, images[train_y])
    again = train_test_from_test_split(images, labels, seed=0)
    np.testing.assert_array_equal(again[1], train_y)
    other = train_test_from_test_split(images, labels, seed=1)
    assert not np.array_equal(other[1], train_y)
    with pytest.raises(ValueError, match="n_train"):
        train_test_from_test_split(images, labels, n_train=10000)


def test_load_dataset_mnist_falls_back_to_test_split_with_warning():
    root = need_real("mnist")
    with pytest.warns(UserWarning, match="only the test split"):
        data = load_dataset("mnist", root=root)
    assert isinstance(data, Dataset) and data.name == "mnist"
    assert data.train_x.shape == (8000, 1, 28, 28) and data.test_x.shape == (2000, 1, 28, 28)
    assert data.train_x.dtype == np.float32 and 0.0 <= data.train_x.min() and data.train_x.max() == 1.0
    assert data.train_y.dtype == np.int64 and data.classes == [str(d) for d in range(10)]
    assert any("only the test split" in note for note in data.notes)
    # every class present on both sides of a random split
    assert len(np.unique(data.train_y)) == 10 and len(np.unique(data.test_y)) == 10


def test_load_dataset_fashion_limit():
    root = need_real("fashion-mnist")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both splits present: no fallback warning
        data = load_dataset("fashion-mnist", root=root, limit=500, seed=3)
    assert len(data.train_y) == 500 and len(data.test_y) == 500
    assert data.classes[9] == "Ankle boot"
    again = load_dataset("fashion-mnist", root=root, limit=500, seed=3)
    np.testing.assert_array_equal(again.train_x, data.train_x)


def test_load_dataset_idx_folder_path(isolated):
    folder = isolated / "my-idx"
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 10)):
        images_stem, labels_stem = sources.SPLIT_FILES[split]
        write_idx(folder / images_stem, rng.integers(0, 256, (n, 12, 12), dtype=np.uint8))
        write_idx(folder / f"{labels_stem}.gz", (np.arange(n) % 4).astype(np.uint8))
    data = load_dataset(str(folder))
    assert data.name == "my-idx" and data.classes == ["0", "1", "2", "3"]
    assert data.train_x.shape == (30, 1, 12, 12) and data.test_x.shape == (10, 1, 12, 12)
    # only the test pair: split 80/20 with a warning
    for stem in sources.SPLIT_FILES["train"]:
        (folder / stem).unlink(missing_ok=True)
        (folder / f"{stem}.gz").unlink(missing_ok=True)
    with pytest.warns(UserWarning, match="only the test split"):
        data = load_dataset(folder)
    assert len(data.train_y) == 8 and len(data.test_y) == 2


def test_load_dataset_missing_mnist_is_clear(isolated):
    with pytest.raises(FileNotFoundError, match="Searched, in order"):
        load_dataset("mnist")


def test_load_dataset_unknown_name(isolated):
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'.*mnist, fashion-mnist, digits, letters"):
        load_dataset("cifar10")


def _idx_folder(folder, test_labels, train_labels=None):
    for split, labels in (("test", test_labels), ("train", train_labels)):
        if labels is None:
            continue
        images_stem, labels_stem = sources.SPLIT_FILES[split]
        write_idx(folder / images_stem, np.zeros((len(labels), 4, 4), np.uint8))
        write_idx(folder / f"{labels_stem}.gz", np.asarray(labels, np.int32))
    return folder


def test_idx_folder_label_beyond_the_class_count_is_an_error(isolated):
    """A label of 2e9 in 20 images is not 2e9 classes."""
    folder = _idx_folder(isolated / "odd", [0, 1, 2, 2_000_000_000] * 3, [0, 1, 2, 3] * 2)
    with pytest.raises(DataError, match=r"largest label, 2,000,000,000, would make 2,000,000,001 classes "
                                        r"for 20 labelled images"):
        load_dataset(folder)
    # a folder named like a known set has that set's classes: label 10 of mnist is out of range
    folder = _idx_folder(isolated / "mnist", [0, 1, 10, 3], [0, 1, 2, 3])
    with pytest.raises(DataError, match="label 10 out of range for 10 classes"):
        load_dataset(folder)
