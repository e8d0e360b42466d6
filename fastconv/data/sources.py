"""Where IDX datasets live on disk, and how they get there.

Lookup order for a dataset ``name`` (first folder holding the split's two files wins):

1. an explicit ``root`` (the folder itself, then ``root/<name>``);
2. ``$FASTCONV_DATA/<name>``, then ``$FASTCONV_DATA`` itself;
3. the cache, ``$FASTCONV_CACHE/<name>`` (default ``~/.cache/fastconv/<name>``);
4. the system folders in `SYSTEM_DATA_DIRS` (``/usr/share/datasets/<name>``, where
   Debian's ``dataset-fashion-mnist`` package installs).

Each file may be gzip-compressed (``*.gz``) or raw.  Downloads go to the cache
folder, file by file: streamed into a temp file in that folder, checked against the
published MD5 in `DATASETS`, then renamed into place, so an interrupted or corrupt
download never leaves a file that looks complete.  Mirrors are tried in order.

Tests point `MIRRORS` (or the ``mirrors=`` argument) at a local HTTP server; nothing
here talks to the network unless a download is asked for.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from fastconv.data.errors import ChecksumError, DatasetNotFoundError, DownloadError

__all__ = [
    "DATASETS", "MIRRORS", "SYSTEM_DATA_DIRS", "SPLIT_FILES", "IdxDataset",
    "split_stems", "not_found_error", "cache_root", "candidate_dirs", "find_split_file", "find_dataset_dir",
    "download_file", "download_dataset", "file_md5", "verify_dataset_files",
]

# split -> (images file, labels file), without the optional .gz
SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Overridable, so tests never see what happens to be installed on the machine.
SYSTEM_DATA_DIRS: list[Path] = [Path("/usr/share/datasets")]

DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class IdxDataset:
    """A dataset published as the four standard IDX files.

    ``gz_md5`` is the MD5 of each ``.gz`` file as published (what a download is
    checked against).  ``payload_md5`` is the MD5 of the decompressed bytes: it
    identifies the data however it was compressed -- Debian's Fashion-MNIST files
    are re-gzipped, so their ``.gz`` checksums differ while the content is the same.
    """

    name: str
    classes: tuple[str, ...]
    mirrors: tuple[str, ...]
    gz_md5: Mapping[str, str]
    payload_md5: Mapping[str, str] = field(default_factory=dict)


DATASETS: dict[str, IdxDataset] = {
    "mnist": IdxDataset(
        name="mnist",
        classes=tuple(str(digit) for digit in range(10)),
        # yann.lecun.com is no longer reliable; these two are what torchvision uses
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        gz_md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        payload_md5={
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
    ),
    "fashion-mnist": IdxDataset(
        name="fashion-mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        gz_md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        payload_md5={
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
    ),
}

# name -> base URLs tried in order; a module attribute so tests (and users behind
# an internal mirror) can replace it without touching `DATASETS`.
MIRRORS: dict[str, list[str]] = {name: list(spec.mirrors) for name, spec in DATASETS.items()}


def _dataset(name: str) -> IdxDataset:
    if name not in DATASETS:
        raise ValueError(f"unknown IDX dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def split_stems(split: str) -> tuple[str, str]:
    """The (images, labels) file names of ``split``, without ``.gz``."""
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}, got {split!r}")
    return SPLIT_FILES[split]


def cache_root() -> Path:
    """``$FASTCONV_CACHE``, else ``~/.cache/fastconv`` (not created here)."""
    override = os.environ.get("FASTCONV_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "fastconv"


def candidate_dirs(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Every folder searched for dataset ``name``, in lookup order (existing or not)."""
    dirs: list[Path] = []
    if root is not None:
        root = Path(root).expanduser()
        dirs += [root, root / name]
    data_env = os.environ.get("FASTCONV_DATA")
    if data_env:
        data_dir = Path(data_env).expanduser()
        dirs += [data_dir / name, data_dir]
    dirs.append(cache_root() / name)
    dirs += [Path(system_dir) / name for system_dir in SYSTEM_DATA_DIRS]
    unique: list[Path] = []
    for directory in dirs:
        if directory not in unique:
            unique.append(directory)
    return unique


def find_split_file(directory: Path, stem: str) -> Path | None:
    """``directory/stem.gz`` or ``directory/stem``, whichever exists (gzip first)."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def find_dataset_dir(name: str, split: str, root: str | os.PathLike | None = None) -> Path | None:
    """The first folder in lookup order holding both files of ``split``, or None."""
    stems = split_stems(split)
    for directory in candidate_dirs(name, root):
        if all(find_split_file(directory, stem) for stem in stems):
            return directory
    return None


def not_found_error(name: str, split: str, root=None, reason: str = "") -> DatasetNotFoundError:
    """A `DatasetNotFoundError` listing where we looked and how to get the data."""
    images, labels = split_stems(split)
    searched = "\n".join(f"  - {directory}" for directory in candidate_dirs(name, root))
    message = (
        f"{name} ({split} split) not found: no folder holds {images}[.gz] and {labels}[.gz].\n"
        f"Searched, in order:\n{searched}\n"
        f"To get it: add --download (download=True in Python; saves to {cache_root() / name}), or put the files in "
        f"one of those folders, or set FASTCONV_DATA to a folder containing '{name}/'."
    )
    if name == "fashion-mnist":
        message += " On Debian/Ubuntu: apt install dataset-fashion-mnist."
    if reason:
        message += f"\n{reason}"
    return DatasetNotFoundError(message)


def file_md5(path: str | os.PathLike, decompress: bool = False) -> str:
    """Hex MD5 of a file's bytes (of its decompressed bytes if ``decompress``)."""
    digest = hashlib.md5(usedforsecurity=False)
    opener = gzip.open if decompress else open
    with opener(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(urls: Iterable[str], dest: str | os.PathLike, md5: str | None,
                  timeout: float = DOWNLOAD_TIMEOUT_S, progress: bool = True) -> Path:
    """Fetch one file to ``dest``, trying each URL in order until one verifies.

    The bytes stream into a temp file beside ``dest`` while being hashed; only a
    file whose MD5 equals ``md5`` is renamed to ``dest`` (``md5=None`` skips the
    check -- only for files without a published checksum).  A failed attempt
    (HTTP error, timeout, body cut short, checksum mismatch) deletes its temp file and moves on to
    the next URL; if all fail, `DownloadError` lists what each one did.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in urls:
        try:
            _download_verified(url, dest, md5, timeout, progress)
            return dest
        except ChecksumError as exc:
            failures.append(f"{url}: {exc}")
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            # HTTPError is a URLError; timeouts and resets are OSErrors; a body cut
            # short is http.client.IncompleteRead
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
    tried = "\n".join(f"  - {failure}" for failure in failures) or "  (no mirror configured)"
    raise DownloadError(f"could not download {dest.name} to {dest.parent}:\n{tried}")


def _download_verified(url: str, dest: Path, md5: str | None, timeout: float, progress: bool) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "fastconv-data/1"})
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            received = 0
            with _progress_bar(total, dest.name, progress) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
        # http.client returns a body cut short by a dropped connection without error
        if total is not None and received != total:
            raise DownloadError(f"incomplete download of {dest.name}: {received} of {total} bytes")
        if md5 is not None and digest.hexdigest() != md5.lower():
            raise ChecksumError(f"checksum mismatch for {dest.name}: md5 {digest.hexdigest()}, expected {md5}")
        os.replace(tmp_name, dest)
    finally:
        # after a successful os.replace the temp name is gone; otherwise clean up
        Path(tmp_name).unlink(missing_ok=True)


def _progress_bar(total: int | None, label: str, enabled: bool):
    from tqdm.auto import tqdm

    # disable=None lets tqdm switch itself off when stderr is not a terminal
    return tqdm(total=total, desc=label, unit="B", unit_scale=True, leave=False,
                disable=None if enabled else True)


def download_dataset(name: str, splits: Sequence[str] = ("train", "test"),
                     dest: str | os.PathLike | None = None, mirrors: Sequence[str] | None = None,
                     checksums: Mapping[str, str] | None = None, progress: bool = True) -> Path:
    """Download the ``.gz`` files of ``splits`` of dataset ``name``; return the folder.

    ``dest`` defaults to the cache folder (`cache_root()`/name); ``mirrors`` to
    ``MIRRORS[name]``; ``checksums`` (file name -> md5) to the published table.
    Files already present (``.gz`` or raw) are kept.
    """
    spec = _dataset(name)
    dest = Path(dest) if dest is not None else cache_root() / name
    mirrors = list(MIRRORS.get(name, spec.mirrors) if mirrors is None else mirrors)
    checksums = dict(spec.gz_md5 if checksums is None else checksums)
    # Folders this call creates, deepest first: removed again if nothing lands in them.
    created = [folder for folder in (dest, *dest.parents) if not folder.exists()]
    try:
        for split in splits:
            for stem in split_stems(split):
                if find_split_file(dest, stem):
                    continue
                file_name = f"{stem}.gz"
                urls = [base.rstrip("/") + "/" + file_name for base in mirrors]
                download_file(urls, dest / file_name, checksums.get(file_name), progress=progress)
    except BaseException:
        _remove_if_empty(created)
        raise
    return dest


def _remove_if_empty(folders: Sequence[Path]) -> None:
    """rmdir each folder in order until one is not empty (or already gone)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def verify_dataset_files(name: str, directory: str | os.PathLike) -> dict[str, bool]:
    """Check every standard file present in ``directory`` against the published
    payload MD5 (of the decompressed bytes, so re-compressed copies still match).

    Returns ``{file path: matches}``; files not present are left out.
    """
    spec = _dataset(name)
    results: dict[str, bool] = {}
    for stems in SPLIT_FILES.values():
        for stem in stems:
            path = find_split_file(Path(directory), stem)
            if path is None or stem not in spec.payload_md5:
                continue
            with open(path, "rb") as handle:
                is_gzip = handle.read(2) == b"\x1f\x8b"
            results[str(path)] = file_md5(path, decompress=is_gzip) == spec.payload_md5[stem]
    return results
