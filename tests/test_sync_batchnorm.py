"""Batch norm with a ``stats_reducer``: N shards of a batch, reduced, give what one
layer computes on the whole batch (SyncBatchNorm semantics; no MPI needed here:
two threads stand in for two ranks)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fastconv import nn


class ThreadSum:
    """A sum over ``parties`` threads: each passes its array, each gets the total."""

    def __init__(self, parties: int):
        self.barrier = threading.Barrier(parties)
        self.parts: dict[int, np.ndarray] = {}

    def reducer(self, index: int):
        def reduce(array: np.ndarray) -> np.ndarray:
            self.parts[index] = np.array(array, dtype=np.float64)
            self.barrier.wait()
            total = sum(self.parts[i] for i in sorted(self.parts))
            self.barrier.wait()  # everyone has read the parts before the next call
            return total
        return reduce


def run_shards(layers, shards, grads):
    """forward + backward of each layer on its shard, in parallel threads."""
    outputs, input_grads = [None] * len(layers), [None] * len(layers)

    def work(i):
        outputs[i] = layers[i].forward(shards[i])
        input_grads[i] = layers[i].backward(grads[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(layers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outputs, input_grads


@pytest.mark.parametrize("make, shape", [(nn.BatchNorm2d, (7, 3, 4, 5)), (nn.BatchNorm1d, (9, 6))])
def test_two_shards_equal_one_batch(make, shape):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, shape)
    grad_y = rng.normal(size=shape)
    whole = make(shape[1], dtype=np.float64)
    whole.weight.data[:] = rng.normal(size=shape[1])
    whole.bias.data[:] = rng.normal(size=shape[1])
    y = whole.forward(x)
    grad_x = whole.backward(grad_y)

    split = 3  # uneven shards: 3 and the rest
    total = ThreadSum(2)
    layers = [make(shape[1], dtype=np.float64) for _ in range(2)]
    for index, layer in enumerate(layers):
        layer.load_state_dict(make(shape[1], dtype=np.float64).state_dict())
        layer.weight.data[:] = whole.weight.data
        layer.bias.data[:] = whole.bias.data
        layer.stats_reducer = total.reducer(index)
    outputs, input_grads = run_shards(layers, [x[:split], x[split:]], [grad_y[:split], grad_y[split:]])

    np.testing.assert_allclose(np.concatenate(outputs), y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.concatenate(input_grads), grad_x, rtol=1e-10, atol=1e-12)
    for name in ("weight", "bias"):  # each shard's part; the gradient Allreduce adds them
        parts = sum(getattr(layer, name).grad for layer in layers)
        np.testing.assert_allclose(parts, getattr(whole, name).grad, rtol=1e-10, atol=1e-12)
    for layer in layers:
        np.testing.assert_allclose(layer.running_mean, whole.running_mean, rtol=1e-12)
        np.testing.assert_allclose(layer.running_var, whole.running_var, rtol=1e-12)


def test_an_identity_reducer_matches_the_kernel_in_float32():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 4, 3, 3)).astype(np.float32)
    grad_y = rng.normal(size=x.shape).astype(np.float32)
    plain, synced = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
    synced.stats_reducer = lambda array: array
    y = synced.forward(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, plain.forward(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(synced.backward(grad_y), plain.backward(grad_y), rtol=1e-4, atol=1e-5)
    synced.eval()  # eval mode uses the running statistics: no reduction at all
    synced.stats_reducer = None
    np.testing.assert_allclose(synced.forward(x), plain.eval().forward(x), rtol=1e-5, atol=1e-6)
