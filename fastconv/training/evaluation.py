"""Loss and accuracy over a test split, optionally sharded over the ranks of a world."""

from __future__ import annotations

import numpy as np

from fastconv.training.model_setup import as_model_input


def _sums(model, loss_fn, images, labels, batch_size: int, dtype) -> tuple[float, int]:
    """(sum of per-image losses, number correct) over ``images``, in batches."""
    total_loss, correct = 0.0, 0
    for start in range(0, len(images), batch_size):
        x = as_model_input(images[start:start + batch_size], dtype)
        y = labels[start:start + batch_size]
        logits = model.forward(x)
        total_loss += float(loss_fn.forward(logits, y)) * len(y)
        correct += int(np.count_nonzero(logits.argmax(axis=1) == y))
    return total_loss, correct


def evaluate(model, loss_fn, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 500, dtype=np.float32, world=None) -> tuple[float, float]:
    """Mean loss and accuracy over ``images`` in eval mode (batched, each batch cast
    to ``dtype``; the model's previous mode is restored).  With a ``world`` of
    several ranks each rank evaluates its contiguous share and the sums are added."""
    was_training = model.training
    model.eval()
    try:
        part = world.shard(len(images)) if world is not None else slice(0, len(images))
        total_loss, correct = _sums(model, loss_fn, images[part], labels[part], batch_size, dtype)
    finally:
        model.train(was_training)
    if world is not None and world.size > 1:
        total_loss, correct = world.sum(np.array([total_loss, correct], dtype=np.float64))
    return total_loss / len(images), correct / len(images)
