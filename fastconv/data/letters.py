"""Synthetic English letters for report 003's network: A-Z and a-z rendered from fonts.

SYNTHETIC DATA.  Report 003 trained on a folder of real letter images that is not
available; this module makes a stand-in with the same layout (an image folder,
32x32 grey, 'a' and 'A' one class, 26 classes).  Accuracies on it say how well a
network reads printed glyphs with some distortion, not handwriting, and are not
comparable with the report's numbers.

Each sample is one character drawn with Pillow from a TrueType font that ships with
matplotlib (DejaVu Sans/Serif/Mono and their bold/oblique variants, STIX General,
Computer Modern), then randomly scaled, squeezed, rotated, shifted, thickened and
noised.  White glyph on a dark background, like MNIST.

Tree written by `generate_letters` (folder names that cannot clash on
case-insensitive file systems):

    root/
      A/ ... Z/                 upper case, 00000.png ...
      a_lower/ ... z_lower/     lower case
      folder_classes.json       {"a_lower": "a", ...}: read by ImageFolder
      manifest.json             the parameters; a matching manifest means "reuse"

`ImageFolder(root)` with ``fold_case=True`` (the default) folds 'a' into 'A'.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFont

from fastconv.data.dataset import Dataset, stratified_split
from fastconv.data.errors import DataError
from fastconv.data.image_folder import FOLDER_CLASSES_FILE, ImageFolder
from fastconv.data.sources import cache_root

__all__ = ["generate_letters", "load_letters", "letter_fonts", "letters_cache_dir", "LETTER_FONT_FILES"]

DEFAULT_PER_CLASS = 100  # images per character: 5,200 in all, 200 per case-folded class
GENERATOR_VERSION = 1  # bump when the rendering changes, so old caches are redone
MANIFEST_FILE = "manifest.json"

# Fonts bundled with matplotlib that have ordinary Latin letters at their code points
# (the *Display, STIXNonUni/Siz*, cmsy and cmex files hold symbols or nothing).
LETTER_FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
)

# Glyphs are drawn on a canvas SUPERSAMPLE times the output size, then box-reduced:
# cheap anti-aliasing that keeps thin serifs visible at 32x32.
SUPERSAMPLE = 4

# Ranges of the random distortions (uniform draws).
GLYPH_HEIGHT_FRACTION = (0.5, 0.8)     # capital height / image side, before rotation
ASPECT_JITTER = (0.8, 1.2)             # width squeeze or stretch
ROTATION_DEGREES = (-15.0, 15.0)
SHIFT_FRACTION = 0.12                  # max centre offset / image side
STROKE_WIDTHS = (0, 1, 2, 3)           # extra outline, in supersampled pixels
FOREGROUND = (0.7, 1.0)
BACKGROUND = (0.0, 0.15)
NOISE_SIGMA = (0.0, 0.08)


def _folder_name(char: str) -> str:
    return char if char.isupper() else f"{char}_lower"


def letter_fonts(font_files: Sequence[str] = LETTER_FONT_FILES) -> list[Path]:
    """The font files found in matplotlib's data folder (absolute paths also
    accepted), in the given order.  Missing files are skipped, so a matplotlib
    without some of them still works (its caches get a different manifest)."""
    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found = [Path(name) if Path(name).is_absolute() else font_dir / name for name in font_files]
    found = [path for path in found if path.is_file()]
    if not found:
        raise DataError(f"none of the letter fonts {list(font_files)} exist in {font_dir}")
    return found


@lru_cache(maxsize=64)
def _load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@lru_cache(maxsize=256)
def _cap_height(font: ImageFont.FreeTypeFont, stroke: int) -> int:
    """Ink height of 'H' in this font: the yardstick that keeps lower-case letters
    smaller than capitals, as in real text."""
    left, top, right, bottom = font.getbbox("H", stroke_width=stroke)
    return max(1, bottom - top)


def _render_letter(char: str, font: ImageFont.FreeTypeFont, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """One distorted glyph as uint8 ``(image_size, image_size)``."""
    canvas_side = image_size * SUPERSAMPLE
    stroke = int(rng.choice(STROKE_WIDTHS))
    # draw at the font's size on a canvas just big enough, crop to the ink
    left, top, right, bottom = font.getbbox(char, stroke_width=stroke)
    margin = 2 + stroke
    glyph = Image.new("L", (right - left + 2 * margin, bottom - top + 2 * margin), 0)
    ImageDraw.Draw(glyph).text((margin - left, margin - top), char, font=font, fill=255,
                               stroke_width=stroke, stroke_fill=255)
    bbox = glyph.getbbox()
    if bbox is None:
        raise DataError(f"font {font.path} drew nothing for {char!r}")
    glyph = glyph.crop(bbox)
    # scale so that a capital would be GLYPH_HEIGHT_FRACTION of the image
    scale = rng.uniform(*GLYPH_HEIGHT_FRACTION) * canvas_side / _cap_height(font, stroke)
    width = glyph.width * scale * rng.uniform(*ASPECT_JITTER)
    height = glyph.height * scale
    glyph = glyph.resize((max(1, round(width)), max(1, round(height))), Image.Resampling.BILINEAR)
    glyph = glyph.rotate(rng.uniform(*ROTATION_DEGREES), resample=Image.Resampling.BILINEAR, expand=True)
    if max(glyph.size) > canvas_side:  # a tall or wide letter rotated may not fit: shrink it
        glyph.thumbnail((canvas_side, canvas_side), Image.Resampling.BILINEAR)
    # centre plus a random shift, kept inside the canvas
    max_shift = SHIFT_FRACTION * canvas_side
    left = (canvas_side - glyph.width) / 2 + rng.uniform(-max_shift, max_shift)
    top = (canvas_side - glyph.height) / 2 + rng.uniform(-max_shift, max_shift)
    left = int(np.clip(round(left), 0, canvas_side - glyph.width))
    top = int(np.clip(round(top), 0, canvas_side - glyph.height))
    canvas = Image.new("L", (canvas_side, canvas_side), 0)
    canvas.paste(glyph, (left, top))
    ink = np.asarray(canvas.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0
    foreground, background = rng.uniform(*FOREGROUND), rng.uniform(*BACKGROUND)
    pixels = background + (foreground - background) * ink
    pixels += rng.normal(0.0, rng.uniform(*NOISE_SIGMA), size=pixels.shape)
    return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)


def _manifest(per_class: int, seed: int, image_size: int, fonts: list[Path]) -> dict:
    # Pillow's rasteriser decides the pixels, so its version is part of the identity
    return {"generator": "fastconv.data.letters", "version": GENERATOR_VERSION,
            "per_class": per_class, "seed": seed, "image_size": image_size,
            "fonts": [font.name for font in fonts], "pillow": PIL.__version__}


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_tree(tmp_root: Path, per_class: int, seed: int, image_size: int, fonts: list[Path]) -> None:
    font_size = int(image_size * SUPERSAMPLE * 0.9)
    loaded = [_load_font(str(path), font_size) for path in fonts]
    characters = string.ascii_uppercase + string.ascii_lowercase
    for char_index, char in enumerate(characters):
        folder = tmp_root / _folder_name(char)
        folder.mkdir(parents=True)
        # one generator per character: its images do not depend on the others
        rng = np.random.default_rng([seed, char_index])
        for sample in range(per_class):
            font = loaded[int(rng.integers(len(loaded)))]
            glyph = Image.fromarray(_render_letter(char, font, image_size, rng))
            glyph.save(folder / f"{sample:05d}.png", compress_level=1)  # fast; files are tiny anyway
    folder_classes = {_folder_name(char): char for char in characters}
    (tmp_root / FOLDER_CLASSES_FILE).write_text(json.dumps(folder_classes, indent=1), encoding="utf-8")


def generate_letters(root: str | os.PathLike, per_class: int = DEFAULT_PER_CLASS, seed: int = 0,
                     image_size: int = 32, font_files: Sequence[str] = LETTER_FONT_FILES) -> Path:
    """Render a synthetic letters image folder at ``root`` (or reuse it) and return ``root``.

    SYNTHETIC: printed glyphs from fonts, randomly distorted -- see the module
    docstring for what this data is and is not.

    ``per_class`` images are made for each of the 52 characters, so each of the 26
    case-folded classes has ``2 * per_class``.  The same arguments (and Pillow
    version) give byte-identical images.  If ``root`` already holds a tree with the
    same manifest it is reused as is; a tree made with other parameters is
    replaced; any other non-empty folder is left alone and raises `DataError`.
    The tree is built in a temp folder beside ``root`` and renamed into place, so
    an interrupted run never leaves a half-written dataset.
    """
    if int(per_class) != per_class or per_class < 1:
        raise ValueError(f"per_class must be a positive int, got {per_class!r}")
    if int(image_size) != image_size or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    root = Path(root).expanduser()
    fonts = letter_fonts(font_files)
    manifest = _manifest(int(per_class), int(seed), int(image_size), fonts)
    existing = _read_manifest(root) if root.exists() else None
    if existing == manifest:
        return root
    if root.exists() and existing is None and any(root.iterdir()):
        raise DataError(f"{root} exists and is not a letters dataset (no {MANIFEST_FILE}); "
                        f"choose another root or empty it")

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp_root = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex}"
    try:
        _write_tree(tmp_root, int(per_class), int(seed), int(image_size), fonts)
        # the manifest goes last: its presence means the tree is complete
        (tmp_root / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        _move_into_place(tmp_root, root, manifest)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return root


def _move_into_place(tmp_root: Path, root: Path, manifest: dict) -> None:
    """Rename the finished tree to ``root``, replacing an outdated tree of ours."""
    if root.exists():
        if _read_manifest(root) == manifest:  # another process just made the same tree
            return
        if not any(root.iterdir()):
            root.rmdir()
        else:  # an outdated letters tree (checked by the caller): swap it out
            stale = root.parent / f".{root.name}.old-{uuid.uuid4().hex}"
            os.rename(root, stale)
            shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(tmp_root, root)
    except OSError:
        if _read_manifest(root) != manifest:  # lost a race to a different tree
            raise


def letters_cache_dir(per_class: int = DEFAULT_PER_CLASS, seed: int = 0, image_size: int = 32) -> Path:
    """Default folder for a generated letters set: ``<cache>/letters-<params>``."""
    return cache_root() / f"letters-{image_size}px-{per_class}per-seed{seed}"


def load_letters(root: str | os.PathLike | None = None, per_class: int | None = None, seed: int = 0,
                 test_fraction: float = 0.2, image_size: int = 32, fold_case: bool = True) -> Dataset:
    """SYNTHETIC letters (see module docstring) as a train/test `Dataset`.

    With ``per_class=None`` an existing letters tree at ``root`` is used as it is
    (whatever parameters made it; ``seed`` then only drives the split), and
    otherwise one with `DEFAULT_PER_CLASS` images per character is generated.
    With an explicit ``per_class`` the tree at ``root`` must match (or is remade).
    ``root`` defaults to `letters_cache_dir`.  The tree is loaded with
    `ImageFolder` (26 classes 'A'-'Z' with ``fold_case=True``, 52 otherwise) and
    split per class, seeded by ``seed``.
    """
    existing = _read_manifest(Path(root)) if root is not None and per_class is None else None
    if existing is not None and existing.get("generator") == "fastconv.data.letters":
        image_size = int(existing["image_size"])
    else:
        per_class = DEFAULT_PER_CLASS if per_class is None else per_class
        if root is None:
            root = letters_cache_dir(per_class, seed, image_size)
        generate_letters(root, per_class=per_class, seed=seed, image_size=image_size)
    folder = ImageFolder(root, image_size=image_size, fold_case=fold_case)
    train_idx, test_idx = stratified_split(folder.labels, test_fraction, seed)
    return Dataset(
        name="letters", train_x=folder.images[train_idx], train_y=folder.labels[train_idx],
        test_x=folder.images[test_idx], test_y=folder.labels[test_idx], classes=list(folder.classes),
        source=str(root), notes=["synthetic: glyphs rendered from matplotlib's fonts, randomly distorted"])
