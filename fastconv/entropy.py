"""Shannon entropies of report 003 (section 4.3): image, feature maps, prediction,
random guess and label distribution.

Every entropy here is in **bits** by default (``base=2``); pass ``base=math.e`` for
nats.  Report 003 printed "random guess = 3.26" for 26 classes, which is ln 26 (nats),
so its numbers are not directly comparable with ours.

How the histograms are binned (the report does not say; this is our choice):

* **input image** -- grey levels: the float image in ``[0, 1]`` is quantised to the
  256 levels of an 8-bit image (``round(x * 255)``) and the entropy of that 256-bin
  histogram is taken.  A constant image gives 0 bits, an image using all 256 levels
  equally often gives 8 bits (the maximum).
* **feature maps** -- activations are unbounded, so each conv block's output for one
  image (all channels together, ``C x H x W`` values) is min-max scaled to ``[0, 1]``
  by its own range and then quantised to 256 levels like an image.  A constant block
  (e.g. all ReLU outputs zero) gives 0 bits.  This is the entropy of the block's
  activation *distribution*, comparable across blocks because all use 256 bins.
* **prediction** -- the entropy of the softmax distribution over the K classes.
* **random guess** -- the uniform distribution over K classes: ``log2 K``.
* **label distribution** -- the entropy of the class frequencies of the labels.
"""

from __future__ import annotations

import math

import numpy as np

GREY_LEVELS = 256


def shannon_entropy(probabilities, base: float = 2.0, axis: int = -1) -> np.ndarray | float:
    """``-sum p log p`` along ``axis`` (0 log 0 taken as 0).  ``probabilities`` need not
    be normalised: it is divided by its sum first (so counts work too)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if np.any(p < 0):
        raise ValueError("probabilities must be non-negative")
    total = p.sum(axis=axis, keepdims=True)
    if np.any(total <= 0):
        raise ValueError("probabilities must not sum to zero")
    p = p / total
    # where=p>0 leaves log(0) terms out instead of producing nan from 0 * -inf
    logs = np.log(p, out=np.zeros_like(p), where=p > 0)
    entropy = -(p * logs).sum(axis=axis) / math.log(base)
    # A distribution with one certain outcome is exactly 0, not -0.0
    entropy = np.abs(entropy) if np.ndim(entropy) else abs(float(entropy))
    return entropy


def quantise(values: np.ndarray, low: float, high: float, levels: int = GREY_LEVELS) -> np.ndarray:
    """Integer level in ``[0, levels)`` of each value, linear between ``low`` and
    ``high`` (values outside are clipped).  ``low == high`` maps everything to 0."""
    values = np.asarray(values, dtype=np.float64)
    if high <= low:
        return np.zeros(values.shape, dtype=np.int64)
    scaled = (values - low) / (high - low) * (levels - 1)
    return np.clip(np.rint(scaled), 0, levels - 1).astype(np.int64)


def histogram_entropy(levels: np.ndarray, num_levels: int = GREY_LEVELS, base: float = 2.0) -> float:
    """Entropy of the histogram of integer ``levels`` in ``[0, num_levels)``."""
    counts = np.bincount(np.asarray(levels).ravel(), minlength=num_levels)
    return float(shannon_entropy(counts, base=base))


def image_entropy(image: np.ndarray, base: float = 2.0) -> float:
    """Grey-level entropy of one image with values in ``[0, 1]`` (any shape), using
    the 256 levels of an 8-bit image.  0 for a constant image, at most 8 bits."""
    return histogram_entropy(quantise(image, 0.0, 1.0), base=base)


def feature_entropy(feature_map: np.ndarray, base: float = 2.0) -> float:
    """Entropy of one image's feature maps (any shape, typically ``(C, H, W)``),
    min-max scaled by their own range and quantised to 256 levels."""
    values = np.asarray(feature_map, dtype=np.float64)
    return histogram_entropy(quantise(values, float(values.min()), float(values.max())), base=base)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so ``exp`` cannot overflow."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def prediction_entropy(logits: np.ndarray, base: float = 2.0) -> np.ndarray:
    """Entropy of the softmax prediction of each row of ``logits`` ``(N, K)``."""
    return shannon_entropy(softmax(logits), base=base, axis=-1)


def random_guess_entropy(num_classes: int, base: float = 2.0) -> float:
    """Entropy of guessing uniformly among ``num_classes``: ``log K``."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    return math.log(num_classes) / math.log(base)


def label_entropy(labels: np.ndarray, num_classes: int | None = None, base: float = 2.0) -> float:
    """Entropy of the empirical class distribution of integer ``labels``."""
    labels = np.asarray(labels).ravel()
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes or 0)
    return float(shannon_entropy(counts, base=base))


# ------------------------------------------------------------------ batched versions
def _histogram_entropies(levels: np.ndarray, num_levels: int, base: float) -> np.ndarray:
    """Entropy of each row's histogram; ``levels`` is ``(N, M)`` ints in ``[0, num_levels)``.
    One `bincount` for the whole batch (row ``i`` offset by ``i * num_levels``)."""
    rows = levels.shape[0]
    offsets = (np.arange(rows, dtype=np.int64) * num_levels)[:, None]
    counts = np.bincount((levels + offsets).ravel(), minlength=rows * num_levels)
    return shannon_entropy(counts.reshape(rows, num_levels), base=base, axis=1)


def image_entropies(images: np.ndarray, base: float = 2.0) -> np.ndarray:
    """`image_entropy` of each image in a batch ``(N, ...)``."""
    flat = np.asarray(images).reshape(len(images), -1)
    return _histogram_entropies(quantise(flat, 0.0, 1.0), GREY_LEVELS, base)


def feature_entropies(feature_maps: np.ndarray, base: float = 2.0) -> np.ndarray:
    """`feature_entropy` of each image's maps in a batch ``(N, C, H, W)``: each image
    is min-max scaled by its own range."""
    flat = np.asarray(feature_maps, dtype=np.float64).reshape(len(feature_maps), -1)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    # A constant image has span 0: every value falls in level 0 (entropy 0).
    scaled = np.divide(flat - low, span, out=np.zeros_like(flat), where=span > 0)
    levels = np.clip(np.rint(scaled * (GREY_LEVELS - 1)), 0, GREY_LEVELS - 1).astype(np.int64)
    return _histogram_entropies(levels, GREY_LEVELS, base)


# ------------------------------------------------------------------ the report's table
BINNING_NOTE = (
    "input image: 256 grey levels (round(x*255)); feature maps: each conv block's "
    "C*H*W outputs for one image min-max scaled by their own range, 256 levels; "
    "prediction: softmax over classes"
)


def entropy_report(model, images: np.ndarray, labels: np.ndarray, num_classes: int,
                   sample_indices=(), classes=None, batch_size: int = 256,
                   base: float = 2.0) -> dict:
    """Report 003's entropy table for ``model`` on ``images``: per sample image (those
    in ``sample_indices``) and averaged over all images.  Returns a JSON-ready dict.

    The model is put in eval mode (inference statistics, no dropout)."""
    from fastconv.activations import iterate_activations

    model.eval()
    labels = np.asarray(labels).astype(np.int64)
    image_h = image_entropies(images, base)
    block_h, prediction_h, predicted, confidence, block_names = [], [], [], [], []
    for _, acts in iterate_activations(model, images, batch_size):
        block_names = acts.block_names
        block_h.append(np.stack([feature_entropies(b, base) for b in acts.blocks], axis=1)
                       if acts.blocks else np.zeros((len(acts.logits), 0)))
        probabilities = softmax(acts.logits)
        prediction_h.append(shannon_entropy(probabilities, base=base, axis=1))
        predicted.append(probabilities.argmax(axis=1))
        confidence.append(probabilities.max(axis=1))
    block_h = np.concatenate(block_h)
    prediction_h = np.concatenate(prediction_h)
    predicted = np.concatenate(predicted)
    confidence = np.concatenate(confidence)

    def name_of(k: int) -> str:
        return str(classes[k]) if classes is not None and k < len(classes) else str(int(k))

    samples = []
    for index in sample_indices:
        index = int(index)
        samples.append({
            "index": index,
            "label": name_of(labels[index]),
            "predicted": name_of(predicted[index]),
            "confidence": float(confidence[index]),
            "input_image": float(image_h[index]),
            "features": [float(v) for v in block_h[index]],
            "prediction": float(prediction_h[index]),
        })
    return {
        "unit": "bits" if base == 2 else f"log base {base:g}",
        "binning": BINNING_NOTE,
        "num_images": int(len(images)),
        "num_classes": int(num_classes),
        "feature_blocks": list(block_names),
        "accuracy": float(np.mean(predicted == labels)),
        "mean": {
            "input_image": float(image_h.mean()),
            "features": [float(v) for v in block_h.mean(axis=0)],
            "prediction": float(prediction_h.mean()),
            "random_guess": random_guess_entropy(num_classes, base),
            "label_distribution": label_entropy(labels, num_classes, base),
        },
        "samples": samples,
    }


def format_entropy_report(report: dict) -> str:
    """The table as report 003 printed it, for a terminal."""
    unit = report["unit"]
    lines = []
    for sample in report["samples"]:
        lines += [
            f"Image {sample['index']} (label {sample['label']}): recognition result "
            f"{sample['predicted']} (confidence = {sample['confidence']:.2f})",
            f"  Entropy of input image = {sample['input_image']:.2f} {unit}",
            "  Entropy of features = " + _join(sample["features"]),
            f"  Entropy of prediction = {sample['prediction']:.2f}",
        ]
    mean = report["mean"]
    lines += [
        f"Averages over {report['num_images']} test images ({unit}):",
        f"  Entropy of input test images = {mean['input_image']:.2f}",
        "  Entropy of features = " + _join(mean["features"]),
        f"  Entropy of random guess = {mean['random_guess']:.2f}",
        f"  Entropy of symbols in text labels = {mean['label_distribution']:.2f}",
        f"  Entropy of using trained model = {mean['prediction']:.2f}",
    ]
    return "\n".join(lines)


def _join(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values) if values else "(no conv blocks)"
