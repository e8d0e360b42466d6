"""Optional: the kernel interface agrees with PyTorch, when PyTorch is installed."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv.functional as F
from tests.conftest import tolerance
from tests.test_functional import random_conv_case, random_pool_case

torch = pytest.importorskip("torch", reason="PyTorch is optional; install torch to compare against it")
TF = torch.nn.functional


def _tensor(array, grad=False):
    return torch.tensor(array, requires_grad=grad)


@pytest.mark.parametrize("seed", range(20))
def test_conv_and_unfold_match_torch(backend, dtype, seed):
    case = random_conv_case(seed)
    rng = case["rng"]
    x = rng.standard_normal(case["shape"]).astype(dtype)
    w = rng.standard_normal((case["c_out"], case["shape"][1], *case["kernel_size"])).astype(dtype)
    b = rng.standard_normal(case["c_out"]).astype(dtype)
    stride, padding = case["stride"], case["padding"]
    tx, tw, tb = _tensor(x, True), _tensor(w, True), _tensor(b, True)
    ty = TF.conv2d(tx, tw, tb, stride=stride, padding=padding)
    y = F.conv2d(x, w, b, stride, padding)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tolerance(dtype))
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(_tensor(grad_y))
    for got, want in zip(F.conv2d_backward(grad_y, x, w, stride, padding), (tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(got, want.numpy(), **tolerance(dtype))

    kernel_size = case["kernel_size"]
    cols = F.im2col(x, kernel_size, stride, padding)
    np.testing.assert_array_equal(cols, TF.unfold(_tensor(x), kernel_size, stride=stride, padding=padding))
    np.testing.assert_allclose(
        F.col2im(cols, x.shape[2:], kernel_size, stride, padding),
        TF.fold(_tensor(cols), x.shape[2:], kernel_size, stride=stride, padding=padding).numpy(),
        **tolerance(dtype))


@pytest.mark.parametrize("seed", range(20))
def test_pooling_matches_torch(backend, dtype, seed):
    case = random_pool_case(seed)
    rng = case["rng"]
    x = rng.standard_normal(case["shape"]).astype(dtype)
    args = (case["kernel_size"], case["stride"], case["padding"])

    tx = _tensor(x, True)
    ty = TF.avg_pool2d(tx, *args)
    np.testing.assert_allclose(F.avg_pool2d(x, *args), ty.detach().numpy(), **tolerance(dtype))
    grad_y = rng.standard_normal(ty.shape).astype(dtype)
    ty.backward(_tensor(grad_y))
    np.testing.assert_allclose(F.avg_pool2d_backward(grad_y, x.shape, *args), tx.grad.numpy(), **tolerance(dtype))

    tx = _tensor(x, True)
    ty, t_indices = TF.max_pool2d(tx, *args, return_indices=True)
    y, indices = F.max_pool2d(x, *args)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(indices, t_indices.numpy())
    ty.backward(_tensor(grad_y))
    np.testing.assert_allclose(F.max_pool2d_backward(grad_y, indices, x.shape, *args), tx.grad.numpy(),
                               **tolerance(dtype))


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_cross_entropy_matches_torch(backend, dtype, scale):
    rng = np.random.default_rng(int(scale))
    logits = (rng.standard_normal((9, 7)) * scale).astype(dtype)
    labels = rng.integers(0, 7, 9)
    t_logits = _tensor(logits, True)
    t_loss = TF.cross_entropy(t_logits, torch.tensor(labels))
    t_loss.backward()
    loss, grad = F.softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(loss, t_loss.item(), **tolerance(dtype))
    np.testing.assert_allclose(grad, t_logits.grad.numpy(), **tolerance(dtype))
