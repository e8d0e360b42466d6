"""Losses: ``forward(outputs, labels) -> float`` then ``backward() -> grad_outputs``.

Labels are int class indices ``(N,)`` or float targets ``(N, K)`` (one-hot or soft).
Both losses are means over the batch, so the gradient is already divided by ``N``.
"""

from __future__ import annotations

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
    computed by the backend's `fastconv.functional.softmax_cross_entropy`."""

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        loss, self._grad = F.softmax_cross_entropy(logits, labels)
        return loss


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
