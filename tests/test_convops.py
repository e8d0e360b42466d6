"""General convolution on every backend against plain loops: dilated and grouped (depthwise with
channel multipliers 1 and 2) convolution, its fused variants, ``padding="same"`` /
``"valid"``, dilated unfold/fold, and transposed convolution; plus the composition a
backend without the optional general kernels gets."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
from fastconv.backends import KERNELS, register_backend
from tests import loops
from tests.conftest import tolerance

KINDS = ("depthwise", "depthwise x2", "grouped", "dilated")
SEEDS = range(12)


def _pair(rng, low, high):
    return tuple(int(v) for v in rng.integers(low, high, size=2))


def _kernel_that_fits(rng, size, pad, dilation, prefer_3):
    largest = min(4, (size + 2 * pad - 1) // dilation + 1)
    return 3 if prefer_3 and largest >= 3 else int(rng.integers(1, largest + 1))


def general_case(seed):
    """A random dilated / grouped convolution: odd sizes, strides 1-3, rectangular
    kernels (3x3 often, for the depthwise fast path), N = 1 every third seed."""
    rng = np.random.default_rng(1000 + seed)
    kind = KINDS[seed % len(KINDS)]
    if kind.startswith("depthwise"):
        groups, cg, og = int(rng.integers(2, 5)), 1, (2 if kind.endswith("x2") else 1)
    elif kind == "grouped":
        groups, cg, og = int(rng.integers(2, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 4))
    else:
        groups, cg, og = 1, int(rng.integers(1, 4)), int(rng.integers(1, 4))
    dilation = _pair(rng, 1, 4) if kind == "dilated" or seed % 3 else (1, 1)
    if dilation == (1, 1) and kind == "dilated":
        dilation = (2, 1)
    height, width = _pair(rng, 3, 10)
    padding = _pair(rng, 0, 3)
    kernel = tuple(_kernel_that_fits(rng, size, p, d, seed % 8 < 4)
                   for size, p, d in zip((height, width), padding, dilation))
    stride = (1, 1) if seed % 2 == 0 else _pair(rng, 1, 4)
    n = 1 if seed % 3 == 0 else int(rng.integers(2, 4))
    return dict(x_shape=(n, groups * cg, height, width), w_shape=(groups * og, cg, *kernel),
                stride=stride, padding=padding, dilation=dilation, groups=groups, rng=rng, kind=kind)


def general_inputs(seed, dtype):
    case = general_case(seed)
    rng = case["rng"]
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    w = rng.standard_normal(case["w_shape"]).astype(dtype)
    b = rng.standard_normal(case["w_shape"][0]).astype(dtype)
    args = (case["stride"], case["padding"], case["dilation"], case["groups"])
    return x, w, b, args, rng


def transpose_case(seed):
    """A random transposed convolution; ``output_padding`` below max(stride, dilation)."""
    rng = np.random.default_rng(2000 + seed)
    kind = KINDS[seed % len(KINDS)]
    groups = 1 if kind == "dilated" else int(rng.integers(2, 4))
    cg = 1 if kind.startswith("depthwise") else int(rng.integers(1, 3))   # C_out / groups
    ig = (2 if kind.endswith("x2") else 1) if kind.startswith("depthwise") else int(rng.integers(1, 4))
    stride = _pair(rng, 1, 4)
    dilation = _pair(rng, 1, 3) if seed % 3 else (1, 1)
    kernel = _pair(rng, 1, 5)
    height, width = _pair(rng, 2, 7)
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    padding = []
    for size, k, s, op, d in zip((height, width), kernel, stride, output_padding, dilation):
        p = int(rng.integers(0, 3))
        while loops.conv_transpose_out_size(size, k, s, p, op, d) < 1:
            p -= 1
        padding.append(p)
    n = 1 if seed % 3 == 0 else int(rng.integers(2, 4))
    x = rng.standard_normal((n, groups * ig, height, width))
    w = rng.standard_normal((groups * ig, cg, *kernel))
    b = rng.standard_normal(groups * cg)
    return x, w, b, (stride, tuple(padding), output_padding, dilation, groups), rng


@functools.lru_cache(maxsize=None)
def general_loops(seed, dtype_name):
    x, w, b, args, rng = general_inputs(seed, np.dtype(dtype_name))
    y = loops.conv2d_general(x, w, b, *args)
    grad_y = rng.standard_normal(y.shape).astype(dtype_name)
    return y, grad_y, loops.conv2d_general_backward(grad_y, x, w, *args)


@functools.lru_cache(maxsize=None)
def transpose_loops(seed, dtype_name):
    x, w, b, args, rng = transpose_case(seed)
    x, w, b = (a.astype(dtype_name) for a in (x, w, b))
    y = loops.conv_transpose2d(x, w, b, *args)
    grad_y = rng.standard_normal(y.shape).astype(dtype_name)
    return y, grad_y, loops.conv_transpose2d_backward(grad_y, x, w, *args)


def assert_close(got, want, dtype, what=""):
    assert got.dtype == dtype, what
    np.testing.assert_allclose(got, want, **tolerance(dtype), err_msg=what)


# ------------------------------------------------------------------ against loops
@pytest.mark.parametrize("seed", SEEDS)
def test_general_conv_matches_loops(backend, dtype, seed):
    x, w, b, args, _ = general_inputs(seed, dtype)
    y_want, grad_y, grads_want = general_loops(seed, dtype.name)
    assert_close(F.conv2d(x, w, b, *args[:2], dilation=args[2], groups=args[3]), y_want, dtype, "y")
    grads = F.conv2d_backward(grad_y, x, w, *args)
    for got, want, name in zip(grads, grads_want, ("grad_x", "grad_w", "grad_b")):
        assert_close(got, want, dtype, name)


@pytest.mark.parametrize("seed", SEEDS)
def test_conv_transpose_matches_loops(backend, dtype, seed):
    x, w, b, args, _ = transpose_case(seed)
    x, w, b = (a.astype(dtype) for a in (x, w, b))
    y_want, grad_y, grads_want = transpose_loops(seed, dtype.name)
    assert_close(F.conv_transpose2d(x, w, b, *args), y_want, dtype, "y")
    assert_close(F.conv_transpose2d(x, w, None, *args), y_want - b.reshape(1, -1, 1, 1), dtype, "no bias")
    for got, want, name in zip(F.conv_transpose2d_backward(grad_y, x, w, *args), grads_want,
                               ("grad_x", "grad_w", "grad_b")):
        assert_close(got, want, dtype, name)


@pytest.mark.parametrize("seed", range(6))
def test_dilated_unfold_and_fold_match_loops(backend, dtype, seed):
    case = general_case(seed)
    x = case["rng"].standard_normal(case["x_shape"]).astype(dtype)
    args = (case["w_shape"][2:], case["stride"], case["padding"], case["dilation"])
    cols = F.im2col(x, *args)
    np.testing.assert_array_equal(cols, loops.im2col_dilated(x, *args))
    assert_close(F.col2im(cols, x.shape[2:], *args), loops.col2im_dilated(cols, x.shape[2:], *args), dtype)


@pytest.mark.parametrize("kernel, dilation", [((2, 3), (1, 1)), ((4, 4), (1, 2)), ((3, 2), (2, 3)), (1, 1)])
def test_same_and_valid_padding(backend, dtype, kernel, dilation):
    """'same' keeps H x W with dilation*(k-1) zeros per axis, the odd one after (on
    the bottom/right, as PyTorch); 'valid' is no padding."""
    rng = np.random.default_rng(7)
    kernel = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    dilation = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    x = rng.standard_normal((2, 3, 7, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, *kernel)).astype(dtype)
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    padded = np.pad(x, ((0, 0), (0, 0), (totals[0] // 2, totals[0] - totals[0] // 2),
                        (totals[1] // 2, totals[1] - totals[1] // 2)))
    y = F.conv2d(x, w, None, 1, "same", dilation)
    assert y.shape == (2, 4, 7, 8)
    assert_close(y, loops.conv2d_general(padded, w, None, (1, 1), (0, 0), dilation, 1), dtype)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    grad_x, grad_w, _ = F.conv2d_backward(grad_y, x, w, 1, "same", dilation)
    want_x, want_w, _ = loops.conv2d_general_backward(grad_y, padded, w, (1, 1), (0, 0), dilation, 1)
    assert_close(grad_x, want_x[:, :, totals[0] // 2:totals[0] // 2 + 7, totals[1] // 2:totals[1] // 2 + 8], dtype)
    assert_close(grad_w, want_w, dtype)
    assert_close(F.conv2d(x, w, None, 1, "valid", dilation),
                 loops.conv2d_general(x, w, None, (1, 1), (0, 0), dilation, 1), dtype)


@pytest.mark.parametrize("seed", [0, 1, 2, 5])
def test_fused_variants_with_groups_and_dilation(backend, dtype, seed):
    """conv2d_relu(+avgpool2) and the weights-only backward: the general convolution
    followed by ReLU (and 2x2 pooling), with the matching gradients."""
    x, w, b, (stride, _, dilation, groups), rng = general_inputs(seed, dtype)
    kw = dict(dilation=dilation, groups=groups)
    padding = "same"
    y = F.conv2d(x, w, b, 1, padding, **kw)
    relu = np.maximum(y, 0)
    assert_close(F.conv2d_relu(x, w, b, 1, padding, **kw), relu, dtype, "relu")
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    masked = grad_y * (relu > 0)
    want = F.conv2d_backward(masked, x, w, 1, padding, **kw)
    got = F.conv2d_relu_backward(grad_y, relu, x, w, 1, padding, True, **kw)
    for g, wnt in zip(got, want):
        assert_close(g, wnt, dtype)
    no_x = F.conv2d_relu_backward(grad_y, relu, x, w, 1, padding, False, **kw)
    assert no_x[0] is None
    assert_close(no_x[1], want[1], dtype)
    for g, wnt in zip(F.conv2d_backward_weights(masked, x, w, 1, padding, **kw), want[1:]):
        assert_close(g, wnt, dtype)
    if min(y.shape[2:]) >= 2:
        pooled, y_relu = F.conv2d_relu_avgpool2(x, w, b, 1, padding, **kw)
        assert_close(y_relu, relu, dtype)
        assert_close(pooled, F.avg_pool2d(relu, 2), dtype)
        grad_pooled = rng.standard_normal(pooled.shape).astype(dtype)
        grad_relu = F.avg_pool2d_backward(grad_pooled, y.shape, 2)
        want = F.conv2d_backward(grad_relu * (relu > 0), x, w, 1, padding, **kw)
        got = F.conv2d_relu_avgpool2_backward(grad_pooled, relu, x, w, 1, padding, True, **kw)
        for g, wnt in zip(got, want):
            assert_close(g, wnt, dtype)


def test_default_arguments_stay_on_the_plain_path(monkeypatch):
    """dilation=1, groups=1 and int padding never enter the general code; (1, 1)
    pairs do, and come out identical."""
    from fastconv.functional import general_conv

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    plain = F.conv2d(x, w, None, 1, 1)
    np.testing.assert_array_equal(F.conv2d(x, w, None, 1, 1, (1, 1), 1), plain)
    monkeypatch.setattr(general_conv, "conv2d", lambda *a: pytest.fail("general path taken"))
    F.conv2d(x, w, None, 1, 1, dilation=1, groups=1)


# ------------------------------------------------------------------ composed fallback
MINIMAL = "minimal-test-backend"


@pytest.fixture
def minimal_backend():
    """A backend with only the required kernels (numpy's), so every issue-13 op runs
    `fastconv.functional.compose` on the plain im2col/col2im."""
    from fastconv import backends

    register_backend(MINIMAL, "tests.test_convops")
    try:
        with fastconv.use_backend(MINIMAL) as backend:
            assert not hasattr(backend, "conv2d_general")
            yield backend
    finally:                                  # leave the registry as it was
        backends._BACKEND_MODULES.pop(MINIMAL, None)
        backends._loaded.pop(MINIMAL, None)


class _Minimal:
    name = MINIMAL

    def __init__(self):
        from fastconv.backends import numpy_backend

        for kernel in KERNELS:
            setattr(self, kernel, getattr(numpy_backend, kernel))


BACKEND = _Minimal()


@pytest.mark.parametrize("seed", range(4))
def test_composition_from_the_required_kernels(minimal_backend, dtype, seed):
    x, w, b, args, _ = general_inputs(seed, dtype)
    y_want, grad_y, grads_want = general_loops(seed, dtype.name)
    assert_close(F.conv2d(x, w, b, args[0], args[1], args[2], args[3]), y_want, dtype)
    for got, want in zip(F.conv2d_backward(grad_y, x, w, *args), grads_want):
        assert_close(got, want, dtype)
    x, w, b, targs, _ = transpose_case(seed)
    x, w, b = (a.astype(dtype) for a in (x, w, b))
    y_want, grad_y, grads_want = transpose_loops(seed, dtype.name)
    assert_close(F.conv_transpose2d(x, w, b, *targs), y_want, dtype)
    for got, want in zip(F.conv_transpose2d_backward(grad_y, x, w, *targs), grads_want):
        assert_close(got, want, dtype)
