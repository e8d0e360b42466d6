"""General convolution against PyTorch (when installed): dilated / grouped / depthwise
convolution, ``padding="same"``, dilated unfold/fold and transposed convolution,
forward and autograd, float32 and float64, on every backend."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastconv.functional as F
from tests.conftest import tolerance
from tests.test_convops import SEEDS, general_inputs, transpose_case

torch = pytest.importorskip("torch", reason="PyTorch is optional; install torch to compare against it")
TF = torch.nn.functional


def _leaf(array):
    return torch.tensor(array, requires_grad=True)


def _check_conv(x, w, b, stride, padding, dilation, groups, dtype, rng):
    tx, tw, tb = _leaf(x), _leaf(w), _leaf(b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)    # 'same' with an even kernel
        ty = TF.conv2d(tx, tw, tb, stride, padding, dilation, groups)
    y = F.conv2d(x, w, b, stride, padding, dilation, groups)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tolerance(dtype))
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(grad_y))
    grads = F.conv2d_backward(grad_y, x, w, stride, padding, dilation, groups)
    for got, want, name in zip(grads, (tx.grad, tw.grad, tb.grad), ("grad_x", "grad_w", "grad_b")):
        np.testing.assert_allclose(got, want.numpy(), **tolerance(dtype), err_msg=name)


@pytest.mark.parametrize("seed", SEEDS)
def test_general_conv_matches_torch(backend, dtype, seed):
    x, w, b, args, rng = general_inputs(seed, dtype)
    _check_conv(x, w, b, *args, dtype, rng)


@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (1, 2)])
def test_depthwise_3x3_matches_torch(backend, dtype, multiplier, stride, dilation):
    """MobileNet's layer (3x3, padding 1), odd sizes, N = 1, multipliers 1 and 2."""
    rng = np.random.default_rng(multiplier * 10 + stride)
    x = rng.standard_normal((1, 6, 13, 11)).astype(dtype)
    w = rng.standard_normal((6 * multiplier, 1, 3, 3)).astype(dtype)
    b = rng.standard_normal(6 * multiplier).astype(dtype)
    _check_conv(x, w, b, stride, dilation, dilation, 6, dtype, rng)


@pytest.mark.parametrize("kernel, dilation", [(3, 1), (4, 1), ((2, 5), 2), ((3, 4), (3, 1))])
def test_same_padding_matches_torch(backend, dtype, kernel, dilation):
    rng = np.random.default_rng(3)
    kernel = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    x = rng.standard_normal((2, 4, 9, 10)).astype(dtype)
    w = rng.standard_normal((6, 2, *kernel)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    _check_conv(x, w, b, 1, "same", dilation, 2, dtype, rng)
    _check_conv(x, w, b, 1, "valid", dilation, 2, dtype, rng)


@pytest.mark.parametrize("seed", SEEDS)
def test_conv_transpose_matches_torch(backend, dtype, seed):
    x, w, b, (stride, padding, output_padding, dilation, groups), rng = transpose_case(seed)
    x, w, b = (a.astype(dtype) for a in (x, w, b))
    tx, tw, tb = _leaf(x), _leaf(w), _leaf(b)
    ty = TF.conv_transpose2d(tx, tw, tb, stride, padding, output_padding, groups, dilation)
    y = F.conv_transpose2d(x, w, b, stride, padding, output_padding, dilation, groups)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tolerance(dtype))
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(grad_y))
    grads = F.conv_transpose2d_backward(grad_y, x, w, stride, padding, output_padding, dilation, groups)
    for got, want, name in zip(grads, (tx.grad, tw.grad, tb.grad), ("grad_x", "grad_w", "grad_b")):
        np.testing.assert_allclose(got, want.numpy(), **tolerance(dtype), err_msg=name)


def test_dcgan_generator_layer_matches_torch(backend, dtype):
    """ConvTranspose2d(16, 8, 4, stride 2, padding 1): 5x7 -> 10x14."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 16, 5, 7)).astype(dtype)
    w = rng.standard_normal((16, 8, 4, 4)).astype(dtype)
    ty = TF.conv_transpose2d(torch.tensor(x), torch.tensor(w), None, 2, 1)
    y = F.conv_transpose2d(x, w, None, 2, 1)
    assert y.shape == (3, 8, 10, 14)
    np.testing.assert_allclose(y, ty.numpy(), **tolerance(dtype))


@pytest.mark.parametrize("seed", range(6))
def test_dilated_unfold_and_fold_match_torch(backend, dtype, seed):
    x, w, _, (stride, padding, dilation, _), _ = general_inputs(seed, dtype)
    kernel = w.shape[2:]
    cols = F.im2col(x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(cols, TF.unfold(torch.tensor(x), kernel, dilation, padding, stride).numpy())
    np.testing.assert_allclose(
        F.col2im(cols, x.shape[2:], kernel, stride, padding, dilation),
        TF.fold(torch.tensor(cols), x.shape[2:], kernel, dilation, padding, stride).numpy(),
        **tolerance(dtype))
