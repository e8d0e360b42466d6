"""MNIST and Fashion-MNIST: 28x28 grey images with 10 classes, stored as IDX files.

`load_mnist` finds the files (see `fastconv.data.sources` for the lookup order),
downloads them if allowed, and checks that images and labels agree.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from fastconv.data import sources
from fastconv.data.errors import DataError
from fastconv.data.idx import read_idx

__all__ = ["load_mnist", "train_test_from_test_split", "MNIST_TEST_SPLIT_TRAIN_SIZE"]

# The project's MNIST targets train on 8,000 of the 10,000 test digits and hold out
# 2,000, because only the test set is available offline.
MNIST_TEST_SPLIT_TRAIN_SIZE = 8000


def load_mnist(name: str = "mnist", split: str = "train", root: str | os.PathLike | None = None,
               download: bool = True, mirrors=None) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of MNIST or Fashion-MNIST.

    Parameters
    ----------
    name : ``"mnist"`` or ``"fashion-mnist"``.
    split : ``"train"`` (60,000 images) or ``"test"`` (10,000).
    root : a folder to look in first (it, then ``root/<name>``); see
        `fastconv.data.sources` for the rest of the lookup order.
    download : if the files are nowhere on disk, fetch them into the cache
        (``$FASTCONV_CACHE`` or ``~/.cache/fastconv``), checksum-verified.
    mirrors : base URLs to download from instead of ``sources.MIRRORS[name]``.

    Returns
    -------
    images : uint8 ``(N, 28, 28)``; labels : int64 ``(N,)``.

    Raises
    ------
    `DatasetNotFoundError` (listing the folders searched) if absent and
    ``download`` is False; `DownloadError` if every mirror failed;
    `DataError` if a file is corrupt or images and labels disagree.
    """
    if name not in sources.DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(sources.DATASETS)}")
    images_stem, labels_stem = sources.split_stems(split)
    directory = sources.find_dataset_dir(name, split, root)
    if directory is None:
        if not download:
            raise sources.not_found_error(name, split, root)
        directory = sources.download_dataset(name, splits=(split,), mirrors=mirrors)
    images_path = sources.find_split_file(directory, images_stem)
    labels_path = sources.find_split_file(directory, labels_stem)
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DataError(f"{name} files in {directory} should hold uint8 data, found "
                        f"{images.dtype} images and {labels.dtype} labels")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    num_classes = len(sources.DATASETS[name].classes)
    if labels.size and labels.max() >= num_classes:
        raise DataError(f"{labels_path}: label {labels.max()} out of range for {num_classes} classes")
    return images, labels.astype(np.int64)


def train_test_from_test_split(images: np.ndarray, labels: np.ndarray,
                               n_train: int = MNIST_TEST_SPLIT_TRAIN_SIZE, seed: int = 0, warn: bool = True):
    """Split one labelled set into train and held-out parts: a seeded permutation,
    the first ``n_train`` samples for training and the rest held out.

    Used when only MNIST's 10k test set is on disk: 8,000 train / 2,000 held out.
    A random (not contiguous) split because the MNIST test set is ordered by writer
    population -- its first 5,000 digits are cleaner than its last 5,000.

    Returns ``(train_images, train_labels, test_images, test_labels)``.
    """
    n_samples = len(images)
    if len(labels) != n_samples:
        raise ValueError(f"{n_samples} images but {len(labels)} labels")
    if not 0 < n_train < n_samples:
        raise ValueError(f"n_train must be between 1 and {n_samples - 1}, got {n_train}")
    if warn:
        warnings.warn(
            f"training on {n_train} samples of the test split and holding out the other "
            f"{n_samples - n_train} (seed {seed}); accuracies are not comparable with the official "
            f"train/test protocol", stacklevel=2)
    order = np.random.default_rng(seed).permutation(n_samples)
    train_idx, test_idx = np.sort(order[:n_train]), np.sort(order[n_train:])
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]
