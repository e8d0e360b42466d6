"""`load_dataset`: one entry point from a name or a path to a ready `Dataset`."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from fastconv.data import sources
from fastconv.data.batching import to_float
from fastconv.data.dataset import Dataset, stratified_split, take_subset
from fastconv.data.digits import load_digits
from fastconv.data.errors import DataError, DatasetNotFoundError
from fastconv.data.image_folder import ImageFolder
from fastconv.data.letters import load_letters
from fastconv.data.mnist import load_mnist, read_idx_split, train_test_from_test_split

__all__ = ["load_dataset", "DATASET_NAMES", "IMAGE_FOLDER_TEST_FRACTION"]

DATASET_NAMES = ("mnist", "fashion-mnist", "digits", "letters")
IMAGE_FOLDER_TEST_FRACTION = 0.2


def load_dataset(name: str | os.PathLike, root: str | os.PathLike | None = None, download: bool = False,
                 seed: int = 0, limit: int | None = None) -> Dataset:
    """Load a dataset by name or path as float32 ``(N, 1, H, W)`` arrays in [0, 1].

    ``name`` is one of

    * ``"mnist"``, ``"fashion-mnist"``: the IDX files, found as `load_mnist` does
      (``root`` searched first; ``download`` allowed to fetch them).  If only the
      test split is on disk (this project's shared MNIST), it is split 8,000 train
      / 2,000 held out with a warning, and the `Dataset` notes say so.
    * ``"digits"``: scikit-learn's 8x8 digits upscaled to 28x28 (no download).
    * ``"letters"``: SYNTHETIC A-Z rendered from fonts, 32x32, generated into
      ``root`` (default: the cache) on first use.
    * a path to a folder of IDX files (the standard four names, or only the test
      pair, split as above), or to an image folder (one sub-folder per class,
      case folded, 32x32 grey), split 80/20 per class.

    A known name wins over a folder of the same name; write ``./mnist`` for the folder.
    ``seed`` fixes every random split; ``limit`` caps the train and the test size
    (a seeded random subset, for quick runs).
    """
    key = str(name)
    if key in sources.DATASETS:
        dataset = _load_idx_dataset(key, root, download, seed)
    elif key == "digits":
        train_x, train_y = load_digits("train")
        test_x, test_y = load_digits("test")
        dataset = Dataset("digits", train_x, train_y, test_x, test_y,
                          classes=[str(digit) for digit in range(10)], source="sklearn.datasets.load_digits",
                          notes=["8x8 digits upscaled to 28x28; last 20% held out"])
    elif key == "letters":
        dataset = load_letters(root=root, seed=seed)
    else:
        path = Path(key).expanduser()
        if not path.is_dir():
            raise ValueError(f"unknown dataset {key!r}: not one of {', '.join(DATASET_NAMES)} "
                             f"and not an existing folder")
        if any(sources.find_split_file(path, stem) for stems in sources.SPLIT_FILES.values() for stem in stems):
            dataset = _load_idx_folder(path, seed)
        else:
            dataset = _load_image_folder(path, seed)
    # the loaders may hand over uint8 (N, H, W): subset first, then convert (cheaper)
    train_x, dataset.train_y = take_subset(dataset.train_x, dataset.train_y, limit, seed)
    test_x, dataset.test_y = take_subset(dataset.test_x, dataset.test_y, limit, seed + 1)
    dataset.train_x, dataset.test_x = to_float(train_x), to_float(test_x)
    if limit is not None:
        dataset.notes.append(f"limited to {limit} samples per split (seeded subset)")
    return dataset


def _warn_test_only(name: str, directory, n_train: int, n_test: int) -> str:
    message = (f"{name}: only the test split was found ({directory}); training on {n_train} of its "
               f"samples and holding out {n_test}. Accuracies are not comparable with the official "
               f"train/test protocol.")
    # stacklevel 4: the user's call of load_dataset
    warnings.warn(message, stacklevel=4)
    return message


def _load_idx_dataset(name: str, root, download: bool, seed: int) -> Dataset:
    classes = list(sources.DATASETS[name].classes)
    test_x, test_y = load_mnist(name, "test", root=root, download=download)
    test_dir = sources.find_dataset_dir(name, "test", root)
    try:
        train_x, train_y = load_mnist(name, "train", root=root, download=download)
    except DatasetNotFoundError:
        # only reachable with download=False; a failed download raises DownloadError
        train_x, train_y, test_x, test_y = train_test_from_test_split(test_x, test_y, seed=seed)
        note = _warn_test_only(name, test_dir, len(train_y), len(test_y))
        return Dataset(name, train_x, train_y, test_x, test_y, classes,
                       source=str(test_dir), notes=[note])
    train_dir = sources.find_dataset_dir(name, "train", root)
    source = str(test_dir) if train_dir == test_dir else f"train: {train_dir}; test: {test_dir}"
    return Dataset(name, train_x, train_y, test_x, test_y, classes, source=source)


def _load_idx_folder(path: Path, seed: int) -> Dataset:
    """A folder of IDX files of unknown origin: class names are the label numbers."""
    has_split = {split: all(sources.find_split_file(path, stem) for stem in stems)
                 for split, stems in sources.SPLIT_FILES.items()}
    if not has_split["test"]:
        raise FileNotFoundError(f"{path} holds IDX files but not the test pair "
                                f"{' and '.join(sources.SPLIT_FILES['test'])}[.gz]")
    known = [spec for spec in sources.DATASETS.values() if spec.name == path.name]
    num_classes = len(known[0].classes) if known else None   # labels checked against it
    test_x, test_y = read_idx_split(path, "test", num_classes)
    notes = []
    if has_split["train"]:
        train_x, train_y = read_idx_split(path, "train", num_classes)
    else:
        train_x, train_y, test_x, test_y = train_test_from_test_split(test_x, test_y, seed=seed)
        notes.append(_warn_test_only(path.name, path, len(train_y), len(test_y)))
    classes = list(known[0].classes) if known else _label_names(path, train_y, test_y)
    return Dataset(path.name, train_x, train_y, test_x, test_y, classes,
                   source=str(path), notes=notes)


def _label_names(path: Path, *labels) -> list[str]:
    """Class names "0", "1", ... of an IDX folder of unknown origin, whose labels must
    be class indices: more classes than labelled images (a label of 2e9, say) is an
    error, not billions of class names."""
    count = int(max(split.max(initial=0) for split in labels)) + 1
    images = sum(len(split) for split in labels)
    if count > images:
        raise DataError(f"{path}: the largest label, {count - 1:,}, would make {count:,} classes for "
                        f"{images:,} labelled images; IDX labels must be class indices 0..K-1")
    return [str(label) for label in range(count)]


def _load_image_folder(path: Path, seed: int) -> Dataset:
    folder = ImageFolder(path)
    train_idx, test_idx = stratified_split(folder.labels, IMAGE_FOLDER_TEST_FRACTION, seed)
    return Dataset(path.name, folder.images[train_idx], folder.labels[train_idx],
                   folder.images[test_idx], folder.labels[test_idx], list(folder.classes), source=str(path),
                   notes=[f"split per class: {1 - IMAGE_FOLDER_TEST_FRACTION:.0%} train, "
                          f"{IMAGE_FOLDER_TEST_FRACTION:.0%} test (seed {seed})"])
