"""Losses: ``forward(outputs, labels) -> float`` then ``backward() -> grad_outputs``.

`CrossEntropyLoss` (PyTorch's name of `SoftmaxCrossEntropyLoss`) and `EuclideanLoss` take
int class indices ``(N,)`` or float targets ``(N, K)`` (one-hot or soft);
`BCEWithLogitsLoss` takes targets of the logits' shape.  All are means, so the
gradient is already divided by the number of terms.
"""

from __future__ import annotations

import numbers

import numpy as np

import fastconv.functional as F


class Loss:
    """Base class: call (or ``forward``) with outputs and labels, then ``backward()``."""

    def __init__(self):
        self._grad = None

    def forward(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        raise NotImplementedError

    def __call__(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        return self.forward(outputs, labels)

    def backward(self) -> np.ndarray:
        """Gradient of the last ``forward``'s loss w.r.t. its ``outputs``."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._grad

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropyLoss(Loss):
    """Mean softmax cross-entropy of logits ``(N, K)`` (as `torch.nn.CrossEntropyLoss`),
    computed by the backend's `fastconv.functional.softmax_cross_entropy`.

    ``label_smoothing`` (in [0, 1]) mixes the targets with the uniform distribution,
    as PyTorch does: ``target = (1 - label_smoothing) * target + label_smoothing / K``,
    for class-index labels (one-hot targets) and float target rows alike.
    """

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        if not isinstance(label_smoothing, numbers.Real) or isinstance(label_smoothing, bool):
            raise TypeError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        if self.label_smoothing:
            labels = self._smoothed_targets(logits, labels)
        loss, self._grad = F.softmax_cross_entropy(logits, labels)
        return loss

    def _smoothed_targets(self, logits, labels):
        logits = F.as_array(logits, "logits")
        if logits.ndim != 2 or logits.dtype.kind != "f":
            return labels       # softmax_cross_entropy says what is wrong with the logits
        n, k = logits.shape
        target = _targets(F.as_array(labels, "labels"), n, k, logits.dtype)
        return target * (1.0 - self.label_smoothing) + self.label_smoothing / k

    def __repr__(self) -> str:
        smoothing = f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return f"{type(self).__name__}({smoothing})"


class CrossEntropyLoss(SoftmaxCrossEntropyLoss):
    """PyTorch's name of `SoftmaxCrossEntropyLoss`: the mean over the batch of the
    softmax cross-entropy of ``(N, K)`` logits, with optional ``label_smoothing``."""


class BCEWithLogitsLoss(Loss):
    """Mean binary cross-entropy of logits ``x`` against targets ``t`` in [0, 1] of the
    same shape, as `torch.nn.BCEWithLogitsLoss`:
    ``mean(max(x, 0) - x * t + log(1 + exp(-|x|)))``, stable for any ``x``; the
    gradient is ``(sigmoid(x) - t) / x.size``.  A GAN discriminator's loss."""

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        logits = F.as_array(logits, "logits")
        if logits.dtype.kind != "f" or logits.size == 0:
            raise ValueError(f"logits must be a non-empty float array, got dtype {logits.dtype}, "
                             f"shape {logits.shape}")
        targets = F.as_array(targets, "targets")
        if targets.shape != logits.shape:
            raise ValueError(f"targets must have the logits' shape {logits.shape}, got {targets.shape}")
        targets = targets.astype(logits.dtype, copy=False)
        decay = np.exp(-np.abs(logits))             # in (0, 1]: no overflow
        losses = np.maximum(logits, 0) - logits * targets + np.log1p(decay)
        sigmoid = np.where(logits >= 0, 1.0, decay) / (1.0 + decay)
        self._grad = ((sigmoid - targets) / logits.size).astype(logits.dtype, copy=False)
        return float(np.mean(losses))


class EuclideanLoss(Loss):
    """``0.5 * sum((y - t) ** 2) / N`` (report 000's MLP-2; the course framework's
    EuclideanLoss).  Int labels become one-hot targets ``t``; float ``(N, K)`` labels
    are used as targets directly."""

    def forward(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        outputs = F.as_array(outputs, "outputs")
        if outputs.ndim != 2 or outputs.dtype.kind != "f":
            raise ValueError(
                f"outputs must be a 2-D float array (N, K), got "
                f"{getattr(outputs, 'shape', type(outputs).__name__)}")
        n, k = outputs.shape
        target = _targets(F.as_array(labels, "labels"), n, k, outputs.dtype)
        diff = outputs - target
        self._grad = diff / n
        return float(0.5 * np.vdot(diff, diff) / n)


def _targets(labels: np.ndarray, n: int, k: int, dtype) -> np.ndarray:
    """``(N, K)`` targets from int class indices or float target rows."""
    if labels.ndim == 1:
        if labels.dtype.kind not in "iu":
            raise TypeError(f"1-D labels must be integer class indices, got dtype {labels.dtype}")
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"labels must lie in [0, {k}) for {k} outputs")
        target = np.zeros((n, k), dtype=dtype)
        target[np.arange(n), labels] = 1
        return target
    if labels.ndim == 2:
        if labels.dtype.kind != "f":
            raise TypeError(f"2-D labels must be float targets, got dtype {labels.dtype}")
        if labels.shape != (n, k):
            raise ValueError(f"labels must have shape ({n}, {k}), got {labels.shape}")
        return labels.astype(dtype, copy=False)
    raise ValueError(f"labels must be (N,) int or (N, K) float, got shape {labels.shape}")
