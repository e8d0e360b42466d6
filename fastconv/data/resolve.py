"""From what a user passed (a name, a path or a loaded `Dataset`) to a `Dataset`, and
back to a string a checkpoint can store to load it again (`fastconv viz`, ``--resume``)."""

from __future__ import annotations

import os
from pathlib import Path

from fastconv.data.catalog import DATASET_NAMES, load_dataset
from fastconv.data.dataset import Dataset

__all__ = ["resolve_dataset", "dataset_spec", "is_reference"]


def is_reference(dataset) -> bool:
    """True for a name or a path (loadable again later), False for a `Dataset` object."""
    return isinstance(dataset, (str, os.PathLike))


def resolve_dataset(dataset, data_root=None, download: bool = False, seed: int = 0,
                    limit: int | None = None) -> Dataset:
    """A loaded `Dataset` as is, or a name / path loaded with `load_dataset`."""
    if isinstance(dataset, Dataset):
        return dataset
    return load_dataset(str(dataset), root=data_root, download=download, seed=seed, limit=limit)


def dataset_spec(dataset, data: Dataset) -> str:
    """How to load the data set again: the name it was asked for, or the absolute
    form of a path (a known name wins over a folder of the same name, as in
    `load_dataset`); for a `Dataset` object only its name."""
    if is_reference(dataset):
        text = str(dataset)
        return text if text in DATASET_NAMES else str(Path(text).expanduser().resolve())
    return data.name
