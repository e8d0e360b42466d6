"""What arrays the kernels and layers take: NumPy arrays, CPU torch tensors and
array-likes (through `numpy.asarray`), never masked arrays; and a dtype mismatch
names the layer."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv.functional as F
from fastconv import nn

torch = pytest.importorskip("torch")


def _case():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    return x, w


def test_kernels_take_cpu_tensors(backend):
    x, w = _case()
    y = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), None, 1, 1)
    assert isinstance(y, np.ndarray)
    np.testing.assert_array_equal(y, F.conv2d(x, w, None, 1, 1))
    pooled, indices = F.max_pool2d(torch.from_numpy(x), 2)
    grad = F.max_pool2d_backward(torch.from_numpy(pooled), torch.from_numpy(indices), x.shape, 2)
    np.testing.assert_array_equal(grad, F.max_pool2d_backward(pooled, indices, x.shape, 2))
    logits = x.reshape(2, -1)[:, :5]
    loss, _ = F.softmax_cross_entropy(torch.from_numpy(logits), torch.tensor([0, 4]))
    assert loss == F.softmax_cross_entropy(logits, np.array([0, 4]))[0]


def test_kernels_take_nested_lists(backend):
    x, w = _case()
    y = F.conv2d(x.astype(np.float64).tolist(), w.astype(np.float64).tolist())
    np.testing.assert_allclose(y, F.conv2d(x.astype(np.float64), w.astype(np.float64)))


def test_tensor_needing_grad_says_what_to_call():
    x, w = _case()
    with pytest.raises(TypeError, match=r"x must be an array .*detach"):
        F.conv2d(torch.from_numpy(x).requires_grad_(), w)


def test_layers_and_models_take_cpu_tensors():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=0), nn.ReLU(), nn.MaxPool2d(2),
                          nn.BatchNorm2d(4), nn.Flatten(), nn.Dropout(0.0), nn.Linear(64, 5, rng=1))
    x, _ = _case()
    want = model.forward(x)
    got = model.forward(torch.from_numpy(x))
    np.testing.assert_array_equal(got, want)
    loss = nn.EuclideanLoss()(torch.from_numpy(got), torch.tensor([1, 2]))
    assert loss == nn.EuclideanLoss()(want, np.array([1, 2]))


@pytest.mark.parametrize("layer, shape", [
    (nn.Conv2d(3, 4, 3, rng=0), (2, 3, 8, 8)),
    (nn.Conv2dReLU(3, 4, 3, rng=0), (2, 3, 8, 8)),
    (nn.Conv2dReLUAvgPool(3, 4, 3, rng=0), (2, 3, 8, 8)),
    (nn.Linear(6, 2, rng=0), (2, 6)),
    (nn.BatchNorm2d(3), (2, 3, 4, 4)),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_float64_input_to_a_float32_layer_names_the_layer(layer, shape):
    with pytest.raises(TypeError, match=rf"^{type(layer).__name__}: input has dtype float64 .*float32"):
        layer.forward(np.zeros(shape))


def test_layers_refuse_masked_arrays():
    x, _ = _case()
    with pytest.raises(TypeError, match="numpy.ma"):
        nn.Conv2d(3, 4, 3, rng=0).forward(np.ma.masked_array(x))
    with pytest.raises(TypeError, match="numpy.ma"):
        nn.ReLU().forward(np.ma.masked_array(x))
