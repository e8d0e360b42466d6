"""Synthetic letters: deterministic for a seed, 26 folded classes, cached atomically."""

from __future__ import annotations

import json
import string

import numpy as np
import pytest

from fastconv.data import DataError, ImageFolder, generate_letters, load_dataset, load_letters
from fastconv.data import letters

PER_CLASS = 3  # 156 images: enough to test, fast to make


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASTCONV_CACHE", raising=False)
    return tmp_path


def pixels(root, **kwargs) -> np.ndarray:
    return ImageFolder(root, fold_case=False, **kwargs).images


def test_same_seed_same_images_other_seed_other_images(tmp_path):
    first = generate_letters(tmp_path / "one", per_class=PER_CLASS, seed=0)
    second = generate_letters(tmp_path / "two", per_class=PER_CLASS, seed=0)
    third = generate_letters(tmp_path / "three", per_class=PER_CLASS, seed=1)
    np.testing.assert_array_equal(pixels(first), pixels(second))
    assert not np.array_equal(pixels(first), pixels(third))


def test_tree_layout_and_classes(tmp_path):
    root = generate_letters(tmp_path / "letters", per_class=PER_CLASS, seed=0, image_size=24)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    # no two folder names differ only in case: safe on case-insensitive file systems
    assert len({name.casefold() for name in folders}) == 52
    folded = ImageFolder(root, image_size=24)
    assert folded.classes == list(string.ascii_uppercase)
    assert folded.images.shape == (52 * PER_CLASS, 1, 24, 24)
    np.testing.assert_array_equal(np.bincount(folded.labels), [2 * PER_CLASS] * 26)
    unfolded = ImageFolder(root, image_size=24, fold_case=False)
    assert unfolded.classes == list(string.ascii_uppercase + string.ascii_lowercase)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["per_class"] == PER_CLASS and manifest["image_size"] == 24 and manifest["fonts"]


def test_images_hold_a_glyph(tmp_path):
    images = pixels(generate_letters(tmp_path / "l", per_class=PER_CLASS, seed=0))
    assert images.dtype == np.float32 and images.min() >= 0.0 and images.max() <= 1.0
    ink = (images > 0.5).mean(axis=(1, 2, 3))
    assert ink.min() > 0.01 and ink.max() < 0.6  # never blank, never a solid block
    # upper and lower case of a letter look different on average (e.g. 'A' vs 'a')
    assert not np.allclose(images[:PER_CLASS].mean(0), images[26 * PER_CLASS:27 * PER_CLASS].mean(0), atol=0.05)


def test_reuse_when_manifest_matches_regenerate_when_not(tmp_path):
    root = generate_letters(tmp_path / "l", per_class=PER_CLASS, seed=0)
    manifest = root / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    first_image = root / "A" / "00000.png"
    first_image.write_bytes(first_image.read_bytes())  # marker: would vanish on regeneration
    marker_stamp = first_image.stat().st_mtime_ns
    generate_letters(root, per_class=PER_CLASS, seed=0)
    assert manifest.stat().st_mtime_ns == stamp and first_image.stat().st_mtime_ns == marker_stamp
    generate_letters(root, per_class=PER_CLASS + 1, seed=0)
    assert len(ImageFolder(root)) == 52 * (PER_CLASS + 1)
    # no temp or stale folders left beside the tree
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l"]


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a letters dataset"):
        generate_letters(tmp_path / "mine", per_class=1)
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep me"


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(letters, "_render_letter", explode)
    with pytest.raises(RuntimeError):
        generate_letters(tmp_path / "l", per_class=1)
    assert list(tmp_path.iterdir()) == []


def test_load_letters_split(tmp_path):
    data = load_letters(tmp_path / "l", per_class=5, seed=0, test_fraction=0.2)
    assert data.classes == list(string.ascii_uppercase)
    # 10 images per folded class: 2 test, 8 train each
    np.testing.assert_array_equal(np.bincount(data.test_y), [2] * 26)
    np.testing.assert_array_equal(np.bincount(data.train_y), [8] * 26)
    assert data.train_x.shape == (208, 1, 32, 32) and data.train_x.dtype == np.float32
    assert "synthetic" in data.notes[0]


def test_load_dataset_letters_reuses_tree_at_root(tmp_path):
    root = generate_letters(tmp_path / "l", per_class=PER_CLASS, seed=5)
    data = load_dataset("letters", root=root)  # no regeneration to the default size
    assert len(data.train_y) + len(data.test_y) == 52 * PER_CLASS
    assert json.loads((root / "manifest.json").read_text())["per_class"] == PER_CLASS


def test_default_root_is_in_the_cache(isolated, monkeypatch):
    assert letters.letters_cache_dir(7, 2, 32).parent == isolated / "home" / ".cache" / "fastconv"
    monkeypatch.setenv("FASTCONV_CACHE", str(isolated / "c"))
    data = load_letters(per_class=1, seed=0)
    assert data.source == str(isolated / "c" / "letters-32px-1per-seed0")
    assert len(data.train_y) == 26 and len(data.test_y) == 26


def test_docstrings_say_synthetic():
    for item in (letters, generate_letters, load_letters):
        assert "SYNTHETIC" in item.__doc__
