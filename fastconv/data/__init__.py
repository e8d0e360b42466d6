"""Data for fastconv: IDX files, image folders, bundled and synthetic sets, batches.

Quick start:

    from fastconv.data import load_dataset, batches
    data = load_dataset("mnist", limit=2000)       # or "fashion-mnist", "digits", "letters", a path
    for x, y in batches(data.train_x, data.train_y, batch_size=50, seed=0):
        ...                                         # x float32 (B, 1, 28, 28) in [0, 1], y int64

Modules, one concern each:

* `idx` -- read/write the IDX format (``read_idx``, ``write_idx``);
* `sources` -- where MNIST-format files are looked up, and checksum-verified downloads;
* `mnist` -- ``load_mnist`` and the 8,000/2,000 split of a test-only set;
* `image_folder` -- ``ImageFolder`` (folder per class, grey, resized, case folding);
* `letters` -- SYNTHETIC A-Z letters rendered from matplotlib's fonts;
* `digits` -- scikit-learn's 8x8 digits upscaled to 28x28;
* `batching` -- ``to_float``, ``batches``;
* `dataset` / `catalog` -- the ``Dataset`` record and ``load_dataset``.

Environment: ``FASTCONV_DATA`` (a folder searched for datasets), ``FASTCONV_CACHE``
(downloads and generated sets; default ``~/.cache/fastconv``).
"""

from fastconv.data.batching import batches, num_batches, to_float
from fastconv.data.catalog import DATASET_NAMES, load_dataset
from fastconv.data.dataset import Dataset, stratified_split, take_subset
from fastconv.data.digits import load_digits
from fastconv.data.errors import ChecksumError, DataError, DatasetNotFoundError, DownloadError
from fastconv.data.idx import read_idx, write_idx
from fastconv.data.image_folder import ImageFolder
from fastconv.data.letters import generate_letters, load_letters
from fastconv.data.mnist import load_mnist, read_idx_split, train_test_from_test_split
from fastconv.data.sources import (
    DATASETS,
    MIRRORS,
    cache_root,
    candidate_dirs,
    download_dataset,
    download_file,
    find_dataset_dir,
    verify_dataset_files,
)

__all__ = [
    "batches", "num_batches", "to_float",
    "DATASET_NAMES", "load_dataset",
    "Dataset", "stratified_split", "take_subset",
    "load_digits",
    "ChecksumError", "DataError", "DatasetNotFoundError", "DownloadError",
    "read_idx", "write_idx",
    "ImageFolder",
    "generate_letters", "load_letters",
    "load_mnist", "read_idx_split", "train_test_from_test_split",
    "DATASETS", "MIRRORS", "cache_root", "candidate_dirs", "download_dataset", "download_file",
    "find_dataset_dir", "verify_dataset_files",
]
