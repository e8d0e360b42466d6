"""scikit-learn's bundled handwritten digits (UCI optdigits test part, 1,797 images),
upscaled from 8x8 to MNIST's 28x28 so report 000's network runs on them unchanged.

Real handwriting and no download: the data ships inside scikit-learn.  The 8x8
originals hold 0..16 counts of ink pixels; they are scaled to 0..255 uint8 and
resized with Pillow's bilinear filter.  There is no border as in MNIST (whose
digits sit in a 20x20 box inside 28x28): the digit fills the image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["load_digits", "DIGITS_TEST_FRACTION"]

DIGITS_TEST_FRACTION = 0.2
_SOURCE_MAX = 16.0  # sklearn digits intensities are counts in 0..16


def _upscale(images_8x8: np.ndarray, image_size: int) -> np.ndarray:
    as_uint8 = np.rint(images_8x8 * (255.0 / _SOURCE_MAX)).astype(np.uint8)
    if image_size == as_uint8.shape[-1]:
        return as_uint8
    resized = [np.asarray(Image.fromarray(image).resize((image_size, image_size), Image.Resampling.BILINEAR))
               for image in as_uint8]
    return np.stack(resized)


def load_digits(split: str = "train", image_size: int = 28,
                test_fraction: float = DIGITS_TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """One split of the scikit-learn digits: uint8 ``(N, image_size, image_size)``
    images and int64 ``(N,)`` labels 0-9.

    The split is deterministic: the last ``test_fraction`` of the samples (in
    scikit-learn's order, 359 of 1,797 by default) is the test set; the classes
    are interleaved in that order, so both parts are balanced.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits as sklearn_load_digits  # slow import: only when used

    bunch = sklearn_load_digits()
    images = _upscale(bunch.images, image_size)
    labels = bunch.target.astype(np.int64)
    n_train = len(labels) - int(round(test_fraction * len(labels)))
    part = slice(None, n_train) if split == "train" else slice(n_train, None)
    return images[part], labels[part]
