"""MNIST and Fashion-MNIST: 28x28 grey images with 10 classes, stored as IDX files.

`load_mnist` finds the files (see `fastconv.data.sources` for the lookup order),
downloads them if allowed, and checks that images and labels agree.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fastconv.data import sources
from fastconv.data.errors import DataError
from fastconv.data.idx import read_idx

__all__ = ["load_mnist", "read_idx_split", "train_test_from_test_split", "TEST_SPLIT_TRAIN_FRACTION"]

# When only MNIST's 10k test set is on disk (as in this project's shared data), the
# project trains on 8,000 of those digits and holds out 2,000.
TEST_SPLIT_TRAIN_FRACTION = 0.8


def read_idx_split(directory: str | os.PathLike, split: str,
                   num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 ``(N, H, W)``) and labels (int64 ``(N,)``) of ``split`` from
    the standard IDX files in ``directory`` (``.gz`` or raw), checked to agree."""
    directory = Path(directory)
    paths = [sources.find_split_file(directory, stem) for stem in sources.split_stems(split)]
    if None in paths:
        names = " and ".join(f"{stem}[.gz]" for stem in sources.split_stems(split))
        raise FileNotFoundError(f"{directory} does not hold {names}")
    images_path, labels_path = paths
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.dtype != np.uint8:
        raise DataError(f"{images_path} holds {images.dtype} data; images must be uint8")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{labels_path} holds {labels.dtype} data; labels must be integers")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if labels.size and labels.min() < 0:
        raise DataError(f"{labels_path}: negative label {labels.min()}")
    if num_classes is not None and labels.size and labels.max() >= num_classes:
        raise DataError(f"{labels_path}: label {labels.max()} out of range for {num_classes} classes")
    return images, labels.astype(np.int64)


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
        (``$FASTCONV_CACHE/<name>`` or ``~/.cache/fastconv/<name>``), checksum-verified.
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
    sources.split_stems(split)  # validates split before any lookup
    directory = sources.find_dataset_dir(name, split, root)
    if directory is None:
        if not download:
            raise sources.not_found_error(name, split, root)
        directory = sources.download_dataset(name, splits=(split,), mirrors=mirrors)
    return read_idx_split(directory, split, num_classes=len(sources.DATASETS[name].classes))


def train_test_from_test_split(images: np.ndarray, labels: np.ndarray, n_train: int | None = None,
                               seed: int = 0):
    """Split one labelled set into a train part and a held-out part.

    A seeded permutation: ``n_train`` samples (default 80%: 8,000 of MNIST's
    10,000 test digits) for training, the rest held out; both parts keep the
    original order.  Random rather than contiguous because the MNIST test set is
    ordered by writer population (its first 5,000 digits are the cleaner ones).
    Accuracies measured this way are not comparable with the official protocol.

    Returns ``(train_images, train_labels, test_images, test_labels)``.
    """
    n_samples = len(images)
    if len(labels) != n_samples:
        raise ValueError(f"{n_samples} images but {len(labels)} labels")
    if n_train is None:
        n_train = int(round(TEST_SPLIT_TRAIN_FRACTION * n_samples))
    if not 0 < n_train < n_samples:
        raise ValueError(f"n_train must be between 1 and {n_samples - 1}, got {n_train}")
    order = np.random.default_rng(seed).permutation(n_samples)
    train_idx, test_idx = np.sort(order[:n_train]), np.sort(order[n_train:])
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]
