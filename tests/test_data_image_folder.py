"""ImageFolder: grey conversion, resizing, class order, case folding, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fastconv.data import DataError, ImageFolder, load_dataset


def save(path, value, size=(20, 30), mode="L", fmt=None):
    """A uniform image of grey level ``value`` (an RGB triple for mode 'RGB')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path, format=fmt)


def case_sensitive(tmp_path) -> bool:
    (tmp_path / "probe_a").mkdir()
    sensitive = not (tmp_path / "PROBE_A").exists()
    (tmp_path / "probe_a").rmdir()
    return sensitive


def test_grey_resized_float_images(tmp_path):
    save(tmp_path / "white" / "0.png", 255)
    save(tmp_path / "black" / "0.png", 0, size=(50, 10))
    save(tmp_path / "grey" / "rgb.jpg", (128, 128, 128), mode="RGB")
    save(tmp_path / "grey" / "l.JPEG", 64)
    folder = ImageFolder(tmp_path, image_size=16)
    assert folder.classes == ["black", "grey", "white"]
    assert folder.images.shape == (4, 1, 16, 16) and folder.images.dtype == np.float32
    assert folder.labels.dtype == np.int64
    np.testing.assert_array_equal(folder.labels, [0, 1, 1, 2])
    np.testing.assert_allclose(folder.images[0], 0.0)
    np.testing.assert_allclose(folder.images[3], 1.0)
    grey_levels = sorted(float(folder.images[i].mean()) for i in (1, 2))
    np.testing.assert_allclose(grey_levels, [64 / 255, 128 / 255], atol=3 / 255)  # JPEG is lossy
    x, y = folder[2]
    assert x.shape == (1, 16, 16) and y == 1 and len(folder) == 4


def test_resize_keeps_content_not_just_shape(tmp_path):
    image = np.zeros((64, 64), np.uint8)
    image[:, 32:] = 255  # right half white
    (tmp_path / "c").mkdir()
    Image.fromarray(image).save(tmp_path / "c" / "half.png")
    pixels = ImageFolder(tmp_path, image_size=8).images[0, 0]
    assert pixels[:, :3].max() == 0.0 and pixels[:, 5:].min() == 1.0


def test_case_folding_merges_a_and_A(tmp_path):
    if not case_sensitive(tmp_path):
        pytest.skip("file system is case-insensitive: 'a' and 'A' cannot both exist")
    for name, count in (("A", 2), ("a", 3), ("b", 1), ("Cat", 1)):
        for index in range(count):
            save(tmp_path / name / f"{index}.png", 10 * index)
    folded = ImageFolder(tmp_path, image_size=8)
    # 'a'+'A' -> 'A'; classes with one spelling keep it
    assert folded.classes == ["A", "Cat", "b"]
    np.testing.assert_array_equal(np.bincount(folded.labels), [5, 1, 1])
    unfolded = ImageFolder(tmp_path, image_size=8, fold_case=False)
    assert unfolded.classes == ["A", "Cat", "a", "b"]
    np.testing.assert_array_equal(np.bincount(unfolded.labels), [2, 1, 3, 1])


def test_declared_folder_classes_for_case_insensitive_file_systems(tmp_path):
    save(tmp_path / "A" / "0.png", 0)
    save(tmp_path / "a_lower" / "0.png", 0)
    save(tmp_path / "a_lower" / "1.png", 0)
    save(tmp_path / "B" / "0.png", 0)
    (tmp_path / "folder_classes.json").write_text(json.dumps({"a_lower": "a"}))
    folder = ImageFolder(tmp_path, image_size=8)
    assert folder.classes == ["A", "B"]
    np.testing.assert_array_equal(np.bincount(folder.labels), [3, 1])
    assert ImageFolder(tmp_path, image_size=8, fold_case=False).classes == ["A", "B", "a"]
    # an explicit mapping overrides the file
    assert ImageFolder(tmp_path, image_size=8, folder_classes={}).classes == ["A", "B", "a_lower"]


def test_other_files_and_hidden_entries_are_ignored(tmp_path):
    save(tmp_path / "x" / "0.png", 0)
    (tmp_path / "x" / "notes.txt").write_text("not an image")
    save(tmp_path / "x" / ".hidden.png", 0)
    save(tmp_path / ".cache" / "0.png", 0)
    (tmp_path / "README.md").write_text("top-level files are not classes")
    folder = ImageFolder(tmp_path, image_size=8)
    assert folder.classes == ["x"] and len(folder) == 1


@pytest.mark.parametrize("content", [b"definitely not a png", b""], ids=["garbage", "empty"])
def test_corrupt_image_names_the_file(tmp_path, content):
    save(tmp_path / "ok" / "0.png", 0)
    bad = tmp_path / "ok" / "1.png"
    bad.write_bytes(content)
    with pytest.raises(DataError, match="cannot read image .*1.png"):
        ImageFolder(tmp_path)


def test_truncated_png_names_the_file(tmp_path):
    good = tmp_path / "c" / "0.png"
    good.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(good)
    truncated = tmp_path / "c" / "1.png"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataError) as caught:
        ImageFolder(tmp_path)
    assert str(truncated) in str(caught.value)


def test_empty_roots_and_classes(tmp_path):
    with pytest.raises(FileNotFoundError):
        ImageFolder(tmp_path / "absent")
    with pytest.raises(DataError, match="no class sub-folders"):
        ImageFolder(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="'empty_class' has no images"):
        ImageFolder(tmp_path)


def test_keep_sizes_requires_uniform_sizes(tmp_path):
    save(tmp_path / "c" / "0.png", 0, size=(8, 8))
    assert ImageFolder(tmp_path, image_size=None).images.shape == (1, 1, 8, 8)
    save(tmp_path / "c" / "1.png", 0, size=(9, 8))
    with pytest.raises(DataError, match="different sizes"):
        ImageFolder(tmp_path, image_size=None)


def test_load_dataset_from_image_folder_is_stratified(tmp_path):
    for name, count in (("p", 10), ("q", 20)):
        for index in range(count):
            save(tmp_path / name / f"{index:02d}.png", index)
    data = load_dataset(tmp_path, seed=0)
    assert data.classes == ["p", "q"]
    assert data.train_x.shape[1:] == (1, 32, 32)
    np.testing.assert_array_equal(np.bincount(data.test_y), [2, 4])
    np.testing.assert_array_equal(np.bincount(data.train_y), [8, 16])
    again = load_dataset(tmp_path, seed=0)
    np.testing.assert_array_equal(again.test_x, data.test_x)
    assert not np.array_equal(load_dataset(tmp_path, seed=1).test_x, data.test_x)
