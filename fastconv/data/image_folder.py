"""A folder-per-class image dataset, like ``torchvision.datasets.ImageFolder``.

The expected layout:

    root/
      A/        001.png 002.jpg ...
      a/        ...                 (same class as A when fold_case=True)
      B/        ...
      folder_classes.json           (optional: {"a_lower": "a", ...})

Images are converted to grey ('L') and resized to ``image_size`` x ``image_size``,
as report 003's letters network expects (1 x 32 x 32).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, ImageOps

from fastconv.data.errors import DataError

__all__ = ["ImageFolder", "IMAGE_EXTENSIONS", "FOLDER_CLASSES_FILE", "load_grey_image"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

# Optional JSON file in the root mapping folder name -> class name.  It exists so
# a tree can hold classes such as 'a' and 'A' in folders whose names do not clash
# on case-insensitive file systems (macOS, Windows), e.g. 'a_lower' -> 'a'.
FOLDER_CLASSES_FILE = "folder_classes.json"


def load_grey_image(path: str | os.PathLike, image_size: int | None) -> np.ndarray:
    """One image as float32 ``(H, W)`` in [0, 1]: EXIF-rotated, grey, resized
    (bilinear) to ``image_size`` squared unless ``image_size`` is None."""
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so truncated files fail here, named
            image = ImageOps.exif_transpose(image).convert("L")
            if image_size is not None and image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return pixels / np.float32(255.0)


class ImageFolder:
    """Every image under ``root/<class folder>/``, loaded into memory.

    Parameters
    ----------
    root : folder with one sub-folder per class.
    image_size : side of the square the images are resized to (None: keep sizes,
        which must then all agree).
    fold_case : class folders whose names differ only in case ('a' and 'A') form
        one class, named upper-case ('A').  A class with a single folder keeps its
        folder's spelling.
    folder_classes : folder name -> class name, applied before case folding; by
        default read from ``root/folder_classes.json`` if that file exists.

    Attributes
    ----------
    images : float32 ``(N, 1, H, W)`` in [0, 1].
    labels : int64 ``(N,)``, indices into ``classes``.
    classes : sorted list of class names; ``class_to_idx`` the inverse.
    samples : list of ``(path, label)`` in load order (by class, then file name).

    Hidden entries (names starting with '.') and files without an image extension
    are ignored.  An unreadable image raises `DataError` naming the file.
    """

    def __init__(self, root: str | os.PathLike, image_size: int | None = 32, fold_case: bool = True,
                 folder_classes: Mapping[str, str] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        if image_size is not None and (int(image_size) != image_size or image_size < 1):
            raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
        self.image_size = image_size
        self.fold_case = fold_case
        if folder_classes is None:
            folder_classes = self._read_folder_classes()
        folders_by_class = self._group_folders(folder_classes, fold_case)
        self.classes = sorted(folders_by_class)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.samples = self._list_samples(folders_by_class)
        self.images, self.labels = self._load_all()

    def _read_folder_classes(self) -> dict[str, str]:
        mapping_path = self.root / FOLDER_CLASSES_FILE
        if not mapping_path.is_file():
            return {}
        try:
            mapping = json.loads(mapping_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read class mapping {mapping_path}: {exc}") from exc
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise DataError(f"{mapping_path} must be a JSON object of folder name -> class name")
        return mapping

    def _group_folders(self, folder_classes: Mapping[str, str], fold_case: bool) -> dict[str, list[Path]]:
        """class name -> its folders, after the declared mapping and case folding."""
        folders = sorted(entry for entry in self.root.iterdir()
                         if entry.is_dir() and not entry.name.startswith("."))
        if not folders:
            raise DataError(f"image folder {self.root} has no class sub-folders")
        by_key: dict[str, list[tuple[str, Path]]] = defaultdict(list)
        for folder in folders:
            class_name = folder_classes.get(folder.name, folder.name)
            key = class_name.casefold() if fold_case else class_name
            by_key[key].append((class_name, folder))
        grouped: dict[str, list[Path]] = {}
        for members in by_key.values():
            spellings = {class_name for class_name, _ in members}
            shown = members[0][0] if len(spellings) == 1 else members[0][0].upper()
            grouped[shown] = [folder for _, folder in members]
        return grouped

    def _list_samples(self, folders_by_class: dict[str, list[Path]]) -> list[tuple[Path, int]]:
        samples: list[tuple[Path, int]] = []
        for class_name in self.classes:
            files = sorted(
                path for folder in folders_by_class[class_name] for path in folder.rglob("*")
                if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in path.relative_to(folder).parts))
            if not files:
                names = ", ".join(str(folder) for folder in folders_by_class[class_name])
                raise DataError(f"class {class_name!r} has no images (extensions {', '.join(IMAGE_EXTENSIONS)}) "
                                f"in {names}")
            samples += [(path, self.class_to_idx[class_name]) for path in files]
        return samples

    def _load_all(self) -> tuple[np.ndarray, np.ndarray]:
        pictures = [load_grey_image(path, self.image_size) for path, _ in self.samples]
        shapes = {picture.shape for picture in pictures}
        if len(shapes) > 1:
            raise DataError(f"images under {self.root} have different sizes {sorted(shapes)}; "
                            f"pass image_size to resize them")
        images = np.stack(pictures)[:, None, :, :]
        labels = np.array([label for _, label in self.samples], dtype=np.int64)
        return images, labels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.images[index], int(self.labels[index])

    def __repr__(self) -> str:
        return (f"ImageFolder(root={str(self.root)!r}, n={len(self)}, classes={len(self.classes)}, "
                f"image_size={self.image_size})")
