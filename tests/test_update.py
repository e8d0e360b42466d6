"""`F.sgd_step` (the update `fastconv.optim.SGD` runs) on every backend: identical to
NumPy's in-place passes and to plain scalar loops, through the kernel and around it,
and its argument checks; `Parameter`'s deferred zeroing of the gradient."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
from fastconv import nn
from fastconv.functional.update import KERNEL_MIN_SIZE
from fastconv.optim import SGD

SIZES = [1, 7, KERNEL_MIN_SIZE - 1, KERNEL_MIN_SIZE, KERNEL_MIN_SIZE + 3, 100_003]
SETTINGS = [(0.9, 0.0), (0.9, 1e-2), (0.0, 0.0), (0.0, 5e-4)]


def _arrays(size, dtype, seed):
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(size).astype(dtype)
    grad = rng.standard_normal(size).astype(dtype)
    buffer = rng.standard_normal(size).astype(dtype)
    if size >= 3:
        param[:3] = [np.nan, np.inf, 0.0]        # carried through as NumPy does
    return param, grad, buffer


def _numpy_passes(param, grad, buffer, lr, momentum, weight_decay):
    """The reference: NumPy's in-place passes, each rounded to the arrays' dtype."""
    param, buffer = param.copy(), None if buffer is None else buffer.copy()
    with np.errstate(invalid="ignore"):          # inf - inf
        return _passes(param, grad, buffer, lr, momentum, weight_decay)


def _passes(param, grad, buffer, lr, momentum, weight_decay):
    d = grad + param.dtype.type(weight_decay) * param if weight_decay else grad
    if buffer is not None:
        buffer *= param.dtype.type(momentum)
        buffer += d
        d = buffer
    param -= param.dtype.type(lr) * d
    return param, buffer


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("momentum, weight_decay", SETTINGS)
def test_sgd_step_matches_numpy_passes(backend, dtype, size, momentum, weight_decay):
    param, grad, buffer = _arrays(size, dtype, seed=size)
    buffer = buffer if momentum else None
    expected_param, expected_buffer = _numpy_passes(param, grad, buffer, 0.05, momentum, weight_decay)
    with np.errstate(invalid="ignore"):
        F.sgd_step(param, grad, buffer, 0.05, momentum, weight_decay)
    np.testing.assert_array_equal(param, expected_param)       # bit for bit, NaN and inf included
    if buffer is not None:
        np.testing.assert_array_equal(buffer, expected_buffer)


def test_sgd_step_kernel_against_scalar_loops(dtype):
    """Through the numba kernel (counted), against one scalar at a time."""
    if "numba" not in fastconv.available_backends():
        pytest.skip("numba is not installed")
    size = KERNEL_MIN_SIZE + 5
    param, grad, buffer = _arrays(size, dtype, seed=3)
    param[:3] = 1.0
    t = dtype.type
    expected_param, expected_buffer = param.copy(), buffer.copy()
    for i in range(size):
        d = grad[i] + t(1e-3) * expected_param[i]
        expected_buffer[i] = t(0.9) * expected_buffer[i] + d
        expected_param[i] = expected_param[i] - t(0.1) * expected_buffer[i]
    with fastconv.use_backend("numba") as backend:
        calls = []
        kernel = backend.sgd_step

        def counted(*args):
            calls.append(args[0].size)
            return kernel(*args)

        backend.sgd_step = counted
        try:
            F.sgd_step(param, grad, buffer, 0.1, 0.9, 1e-3)
        finally:
            backend.sgd_step = kernel
    assert calls == [size]
    np.testing.assert_array_equal(param, expected_param)
    np.testing.assert_array_equal(buffer, expected_buffer)


def test_sgd_step_on_a_strided_view_updates_the_view(backend):
    base = np.arange(2 * KERNEL_MIN_SIZE, dtype=np.float32)
    view = base[::2]
    grad = np.ones(view.shape, np.float32)
    F.sgd_step(view, grad, None, 0.5)
    np.testing.assert_array_equal(base[::2], np.arange(0, 2 * KERNEL_MIN_SIZE, 2, dtype=np.float32) - 0.5)
    np.testing.assert_array_equal(base[1::2], np.arange(1, 2 * KERNEL_MIN_SIZE, 2, dtype=np.float32))


@pytest.mark.parametrize("change, error, match", [
    (lambda p, g, b: (p, g[:-1], b), ValueError, "grad must have the parameter's shape"),
    (lambda p, g, b: (p, g.astype(np.float64), b), ValueError, "grad must have .* dtype float32"),
    (lambda p, g, b: (p, g, b.reshape(2, -1)), ValueError, "buffer must have the parameter's shape"),
    (lambda p, g, b: (np.zeros(p.shape, np.int64), g, b), TypeError, "param must be a float32 or float64"),
    (lambda p, g, b: (p.tolist(), g, b), TypeError, "param must be a float32 or float64"),
    (lambda p, g, b: (p, g.tolist(), b), TypeError, "grad must be a NumPy array"),
])
def test_sgd_step_refuses_mismatched_arrays(backend, change, error, match):
    param, grad, buffer = _arrays(KERNEL_MIN_SIZE, np.float32, seed=1)
    before = param.copy()
    with pytest.raises(error, match=match):
        F.sgd_step(*change(param, grad, buffer), 0.1, 0.9)
    np.testing.assert_array_equal(param, before)


@pytest.mark.parametrize("name", ["param", "buffer"])
def test_sgd_step_refuses_a_read_only_array(backend, name):
    param, grad, buffer = _arrays(KERNEL_MIN_SIZE, np.float32, seed=2)
    (param if name == "param" else buffer).flags.writeable = False
    with pytest.raises(ValueError, match=f"{name} is read-only"):
        F.sgd_step(param, grad, buffer, 0.1, 0.9)


# --------------------------------------------------------------------------- Parameter
def test_zero_grad_then_accumulate_writes_a_copy():
    param = nn.Parameter(np.ones(5, np.float32))
    param.accumulate_grad(np.full(5, 2.0, np.float32))
    param.zero_grad()
    grad = np.arange(5, dtype=np.float32)
    param.accumulate_grad(grad)
    grad[:] = 100                                   # the gradient was copied, not kept
    np.testing.assert_array_equal(param.grad, np.arange(5))
    param.accumulate_grad(np.ones(5, np.float32))   # then accumulated
    np.testing.assert_array_equal(param.grad, np.arange(5) + 1)


def test_grad_reads_zero_after_zero_grad_and_broadcasts_as_numpy():
    param = nn.Parameter(np.ones((2, 3)))
    param.accumulate_grad(np.ones((2, 3)))
    param.zero_grad()
    assert param.grad.shape == (2, 3) and not param.grad.any()
    param.zero_grad()
    param.accumulate_grad(np.array([1.0, 2.0, 3.0]))          # broadcast over the rows
    np.testing.assert_array_equal(param.grad, [[1, 2, 3], [1, 2, 3]])
    with pytest.raises(ValueError):
        param.accumulate_grad(np.ones(4))
    with pytest.raises(TypeError):                            # float into an integer gradient
        nn.Parameter(np.zeros(3, np.int64)).accumulate_grad(np.ones(3) * 0.5)


def test_sgd_steps_identical_on_every_backend():
    """Steps of `optim.SGD` over a large and a small parameter from the same gradients
    end bit for bit where the NumPy backend's do (the kernel path on numba)."""
    rng = np.random.default_rng(5)
    start = [rng.standard_normal(shape).astype(np.float32) for shape in ((128, 256), (3, 4))]
    grads = [[rng.standard_normal(a.shape).astype(np.float32) for a in start] for _ in range(3)]
    results = []
    for name in fastconv.available_backends():
        with fastconv.use_backend(name):
            params = [nn.Parameter(a.copy()) for a in start]
            opt = SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3)
            for step in grads:
                opt.zero_grad()
                for param, grad in zip(params, step):
                    param.accumulate_grad(grad)
                opt.step()
            results.append([param.data for param in params])
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            np.testing.assert_array_equal(a, b)
