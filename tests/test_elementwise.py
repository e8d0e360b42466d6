"""The layers' elementwise ops (`fastconv.functional.elementwise`) on every backend
against NumPy: random shapes, both dtypes, NaN and infinities, the kinks, and the
arrays no kernel takes (integers, strided views, broadcasting)."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv.functional as F


def _random(shape, dtype, seed, scale=4.0):
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal(shape)).astype(dtype)
    flat = x.reshape(-1)
    if flat.size >= 8:                         # the special values a kernel must carry through
        flat[:8] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 6.0, -1e-30, 1e30]
    return x


SHAPES = [(1,), (7,), (3, 5), (2, 3, 4, 5), (1, 1, 33, 17), (64, 16, 32, 33)]


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_and_its_gradient(backend, dtype, shape):
    x = _random(shape, dtype, seed=len(shape))
    y = F.relu(x)
    assert y.dtype == dtype and y.shape == x.shape and y is not x
    np.testing.assert_array_equal(y, np.maximum(x, 0))          # NaN stays NaN
    grad_y = _random(shape, dtype, seed=9, scale=1.0)
    with np.errstate(invalid="ignore"):          # NumPy warns of the infinite gradient times 0
        grad = F.relu_backward(grad_y, y)
        np.testing.assert_array_equal(grad, grad_y * (y > 0))   # an infinite grad_y times 0 is NaN


@pytest.mark.parametrize("shape", SHAPES)
def test_clamp_and_its_gradient(backend, dtype, shape):
    x = _random(shape, dtype, seed=len(shape) + 10)
    y = F.clamp(x, 0, 6)
    np.testing.assert_array_equal(y, np.clip(x, 0, 6))
    grad_y = _random(shape, dtype, seed=11, scale=1.0)
    with np.errstate(invalid="ignore"):
        grad = F.clamp_backward(grad_y, y, 0, 6)
        np.testing.assert_array_equal(grad, grad_y * ((y > 0) & (y < 6)))   # 0 at both kinks


@pytest.mark.parametrize("shape", SHAPES)
def test_add(backend, dtype, shape):
    a, b = _random(shape, dtype, seed=20), _random(shape, dtype, seed=21)
    total = F.add(a, b)
    assert total is not a and total is not b
    np.testing.assert_array_equal(total, a + b)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 3, 4, 5), (1, 1, 33, 17), (64, 16, 32, 33), (4, 7, 9)])
def test_channel_affine(backend, dtype, shape):
    x = _random(shape, dtype, seed=30 + len(shape))
    rng = np.random.default_rng(31)
    scale = rng.standard_normal(shape[1]).astype(dtype)
    shift = rng.standard_normal(shape[1]).astype(dtype)
    scale[0] = 0.0                                     # 0 * inf is NaN, as in NumPy
    per_channel = (1, shape[1]) + (1,) * (len(shape) - 2)
    with np.errstate(invalid="ignore"):
        y = F.channel_affine(x, scale, shift)
        want = x * scale.reshape(per_channel) + shift.reshape(per_channel)
    assert y.dtype == dtype and y.shape == x.shape and y is not x
    np.testing.assert_array_equal(y, want)


def test_what_no_kernel_takes_is_numpy(backend):
    x = np.arange(-6, 6).reshape(3, 4)
    np.testing.assert_array_equal(F.relu(x), np.maximum(x, 0))              # integers
    strided = _random((8, 9), np.float32, seed=3)[:, ::2]
    np.testing.assert_array_equal(F.relu(strided), np.maximum(strided, 0))  # a strided view
    row = np.ones(4, np.float32)
    np.testing.assert_array_equal(F.add(x.astype(np.float32), row), x + row)   # broadcasting
    mixed = F.add(np.ones(3, np.float32), np.ones(3, np.float64))
    assert mixed.dtype == np.float64
    planes = _random((2, 3, 8, 8), np.float32, seed=4)[:, :, ::2]          # strided planes
    scale, shift = np.arange(1, 4, dtype=np.float32), np.arange(3, dtype=np.float32)
    np.testing.assert_array_equal(F.channel_affine(planes, scale, shift),
                                  planes * scale[:, None, None] + shift[:, None, None])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"channel_affine: scale must have shape \(3,\)"):
        F.channel_affine(np.ones((2, 3, 4), np.float32), np.ones(4, np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="channel_affine: x must have a channel axis"):
        F.channel_affine(np.ones(3), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="relu_backward: grad_y has shape"):
        F.relu_backward(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="clamp: low must be below high"):
        F.clamp(np.ones(3), 6, 0)
