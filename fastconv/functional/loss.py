"""The softmax cross-entropy loss and its gradient (the mean of ``F.cross_entropy``)."""

from __future__ import annotations

import numpy as np

from fastconv.backends import get_backend
from fastconv.functional.arguments import as_array, expect_shape, float_array


def _target(labels, logits):
    """The ``(N, K)`` target distribution of int class indices or float distributions."""
    n, k = logits.shape
    labels = as_array(labels, "labels")
    if labels.ndim == 1:
        if labels.dtype.kind not in "iu":
            raise TypeError(f"1-D labels must be integer class indices, got dtype {labels.dtype}")
        expect_shape(labels, "labels", (n,))
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"labels must lie in [0, {k}) for {k} classes")
        target = np.zeros_like(logits)
        target[np.arange(n), labels] = 1
        return target
    if labels.ndim == 2:
        if labels.dtype.kind != "f":
            raise TypeError(f"2-D labels must be float distributions, got dtype {labels.dtype}")
        expect_shape(labels, "labels", (n, k))
        return np.ascontiguousarray(labels, dtype=logits.dtype)
    raise ValueError(f"labels must be (N,) int or (N, K) float, got shape {labels.shape}")


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy and its gradient: ``(loss, grad_logits)``.

    ``labels`` is either int class indices of shape ``(N,)`` or target distributions
    of shape ``(N, K)`` (one-hot or soft, rows summing to 1).  ``loss`` is a Python
    float; ``grad_logits = (softmax(logits) - target) / N``.
    """
    logits = float_array(logits, "logits", 2, "(N, K)")
    target = _target(labels, logits)
    loss, grad = get_backend().softmax_cross_entropy(logits, target)
    return float(loss), grad
