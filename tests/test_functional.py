"""Every kernel of `fastconv.functional`, on every backend, against plain loops."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv.functional as F
from tests import loops
from tests.conftest import tolerance


def random_conv_case(seed):
    """A small random convolution problem: odd sizes, strides 1-3, rectangular
    kernels, padding, and N=1 / C=1 appearing among the seeds."""
    rng = np.random.default_rng(seed)
    n_batch = 1 if seed % 3 == 0 else int(rng.integers(2, 4))
    c_in = 1 if seed % 4 == 0 else int(rng.integers(2, 4))
    c_out = int(rng.integers(1, 4))
    height, width = (int(v) for v in rng.integers(3, 10, size=2))
    padding = tuple(int(v) for v in rng.integers(0, 3, size=2))
    kh = int(rng.integers(1, min(5, height + 2 * padding[0]) + 1))
    kw = int(rng.integers(1, min(5, width + 2 * padding[1]) + 1))
    stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
    return dict(shape=(n_batch, c_in, height, width), c_out=c_out,
                kernel_size=(kh, kw), stride=stride, padding=padding, rng=rng)


def random_pool_case(seed):
    case = random_conv_case(seed)
    kh, kw = case["kernel_size"]
    # pooling padding may be at most half the window (PyTorch's rule)
    case["padding"] = (min(case["padding"][0], kh // 2), min(case["padding"][1], kw // 2))
    height, width = case["shape"][2:]
    if kh > height + 2 * case["padding"][0] or kw > width + 2 * case["padding"][1]:
        case["kernel_size"] = (min(kh, height), min(kw, width))
    return case


SEEDS = range(12)


def conv_inputs(seed, dtype):
    """x, w, b of `random_conv_case(seed)`, its (stride, padding), and its generator."""
    case = random_conv_case(seed)
    rng = case["rng"]
    x = rng.standard_normal(case["shape"]).astype(dtype)
    w = rng.standard_normal((case["c_out"], case["shape"][1], *case["kernel_size"])).astype(dtype)
    b = rng.standard_normal(case["c_out"]).astype(dtype)
    return x, w, b, (case["stride"], case["padding"]), rng


# ------------------------------------------------------------------ worked example
def test_report003_worked_example(backend):
    """Report 003 section 2.1: Y and dL/dX, computed by hand in the report."""
    x = np.array([[-0.5, 0.2, 0.3], [0.6, -0.4, 0.1], [0.4, 0.5, -0.2]])[None, None]
    w = np.array([[-0.2, 0.1], [0.4, -0.3]])[None, None]
    b = np.array([0.05])
    y = F.conv2d(x, w, b)
    np.testing.assert_allclose(y[0, 0], [[0.53, -0.15], [-0.1, 0.4]], rtol=0, atol=1e-12)
    grad_y = np.array([[0.1, -0.2], [0.2, 0.3]])[None, None]
    grad_x, grad_w, grad_b = F.conv2d_backward(grad_y, x, w)
    expected_grad_x = [[-0.02, 0.05, -0.02], [0.0, -0.15, 0.09], [0.08, 0.06, -0.09]]
    np.testing.assert_allclose(grad_x[0, 0], expected_grad_x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(grad_b, [0.4], atol=1e-12)
    # dL/dW[i, j] = sum over outputs (r, c) of dY[r, c] * X[r + i, c + j]
    expected_grad_w = [[0.1 * -0.5 - 0.2 * 0.2 + 0.2 * 0.6 + 0.3 * -0.4,
                        0.1 * 0.2 - 0.2 * 0.3 + 0.2 * -0.4 + 0.3 * 0.1],
                       [0.1 * 0.6 - 0.2 * -0.4 + 0.2 * 0.4 + 0.3 * 0.5,
                        0.1 * -0.4 - 0.2 * 0.1 + 0.2 * 0.5 + 0.3 * -0.2]]
    np.testing.assert_allclose(grad_w[0, 0], expected_grad_w, atol=1e-12)


# ------------------------------------------------------------------ against loops
@pytest.mark.parametrize("seed", SEEDS)
def test_conv2d_matches_loops(backend, dtype, seed):
    case = random_conv_case(seed)
    rng = case["rng"]
    x = rng.standard_normal(case["shape"]).astype(dtype)
    w = rng.standard_normal((case["c_out"], case["shape"][1], *case["kernel_size"])).astype(dtype)
    b = rng.standard_normal(case["c_out"]).astype(dtype)
    y = F.conv2d(x, w, b, case["stride"], case["padding"])
    assert y.dtype == dtype
    np.testing.assert_allclose(y, loops.conv2d(x, w, b, case["stride"], case["padding"]), **tolerance(dtype))
    assert np.allclose(F.conv2d(x, w, None, case["stride"], case["padding"]) + b[:, None, None], y,
                       **tolerance(dtype))

    grad_y = rng.standard_normal(y.shape).astype(dtype)
    grads = F.conv2d_backward(grad_y, x, w, case["stride"], case["padding"])
    expected = loops.conv2d_backward(grad_y, x, w, case["stride"], case["padding"])
    for got, want, name in zip(grads, expected, ("grad_x", "grad_w", "grad_b")):
        assert got.dtype == dtype and got.shape == want.shape, name
        np.testing.assert_allclose(got, want, **tolerance(dtype), err_msg=name)


@pytest.mark.parametrize("seed", SEEDS)
def test_fused_conv_relu_matches_loops(backend, dtype, seed):
    """The fused ops (native on numba, composed in `functional` elsewhere)."""
    x, w, b, args, rng = conv_inputs(seed, dtype)
    z = loops.conv2d(x, w, b, *args)
    y = F.conv2d_relu(x, w, b, *args)
    assert y.dtype == dtype and (y == 0).any() and (y > 0).any()
    np.testing.assert_allclose(y, np.maximum(z, 0), **tolerance(dtype))

    grad_y = rng.standard_normal(y.shape).astype(dtype)
    expected = loops.conv2d_backward(grad_y * (z > 0), x, w, *args)
    got = F.conv2d_relu_backward(grad_y, y, x, w, *args)
    for g, e, name in zip(got, expected, ("grad_x", "grad_w", "grad_b")):
        np.testing.assert_allclose(g, e, **tolerance(dtype), err_msg=name)
    none_x, grad_w, grad_b = F.conv2d_relu_backward(grad_y, y, x, w, *args, input_grad=False)
    assert none_x is None
    np.testing.assert_allclose(grad_w, expected[1], **tolerance(dtype))
    np.testing.assert_allclose(grad_b, expected[2], **tolerance(dtype))
    plain = loops.conv2d_backward(grad_y, x, w, *args)
    for g, e in zip(F.conv2d_backward_weights(grad_y, x, w, *args), plain[1:]):
        np.testing.assert_allclose(g, e, **tolerance(dtype))


@pytest.mark.parametrize("seed", SEEDS)
def test_fused_conv_relu_avgpool_matches_loops(backend, dtype, seed):
    x, w, b, args, rng = conv_inputs(seed, dtype)
    z = loops.conv2d(x, w, b, *args)
    if min(z.shape[2:]) < 2:
        with pytest.raises(ValueError, match="smaller than the 2x2 pooling window"):
            F.conv2d_relu_avgpool2(x, w, b, *args)
        return
    relu = np.maximum(z, 0)
    want_pooled = loops.avg_pool2d(relu, (2, 2), (2, 2), (0, 0))
    pooled, y = F.conv2d_relu_avgpool2(x, w, b, *args)
    np.testing.assert_allclose(y, relu, **tolerance(dtype))
    np.testing.assert_allclose(pooled, want_pooled, **tolerance(dtype))
    assert pooled.dtype == y.dtype == dtype

    grad_pooled = rng.standard_normal(pooled.shape).astype(dtype)
    grad_relu = loops.avg_pool2d_backward(grad_pooled, relu.shape, (2, 2), (2, 2), (0, 0))
    expected = loops.conv2d_backward(grad_relu * (z > 0), x, w, *args)
    got = F.conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, *args)
    for g, e, name in zip(got, expected, ("grad_x", "grad_w", "grad_b")):
        np.testing.assert_allclose(g, e, **tolerance(dtype), err_msg=name)
    no_x = F.conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, *args, input_grad=False)
    assert no_x[0] is None
    np.testing.assert_allclose(no_x[1], expected[1], **tolerance(dtype))


@pytest.mark.parametrize("seed", SEEDS)
def test_im2col_col2im_match_loops(backend, dtype, seed):
    case = random_conv_case(seed)
    x = case["rng"].standard_normal(case["shape"]).astype(dtype)
    args = (case["kernel_size"], case["stride"], case["padding"])
    cols = F.im2col(x, *args)
    assert cols.dtype == dtype
    np.testing.assert_array_equal(cols, loops.im2col(x, *args))
    folded = F.col2im(cols, case["shape"][2:], *args)
    np.testing.assert_allclose(folded, loops.col2im(cols, case["shape"][2:], *args), **tolerance(dtype))


@pytest.mark.parametrize("seed", SEEDS)
def test_pooling_matches_loops(backend, dtype, seed):
    case = random_pool_case(seed)
    rng = case["rng"]
    x = rng.standard_normal(case["shape"]).astype(dtype)
    args = (case["kernel_size"], case["stride"], case["padding"])

    y = F.avg_pool2d(x, *args)
    np.testing.assert_allclose(y, loops.avg_pool2d(x, *args), **tolerance(dtype))
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(F.avg_pool2d_backward(grad_y, x.shape, *args),
                               loops.avg_pool2d_backward(grad_y, x.shape, *args), **tolerance(dtype))

    y, indices = F.max_pool2d(x, *args)
    want_y, want_indices = loops.max_pool2d(x, *args)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(indices, want_indices)
    assert indices.dtype == np.int64
    np.testing.assert_allclose(F.max_pool2d_backward(grad_y, indices, x.shape, *args),
                               loops.max_pool2d_backward(grad_y, indices, x.shape), **tolerance(dtype))


def test_pool_stride_defaults_to_kernel(backend, dtype):
    x = np.arange(2 * 3 * 7 * 9, dtype=dtype).reshape(2, 3, 7, 9)
    np.testing.assert_array_equal(F.avg_pool2d(x, (2, 3)), F.avg_pool2d(x, (2, 3), (2, 3)))
    np.testing.assert_array_equal(F.max_pool2d(x, 2)[1], F.max_pool2d(x, 2, 2)[1])
    assert F.avg_pool2d(x, (2, 3)).shape == (2, 3, 3, 3)  # floor mode drops partial windows


def test_max_pool_ties_go_to_first_maximum(backend, dtype):
    x = np.zeros((1, 1, 4, 4), dtype=dtype)
    x[0, 0, 1, 1] = x[0, 0, 0, 1] = 1.0       # two maxima in the first window
    _, indices = F.max_pool2d(x, 2)
    np.testing.assert_array_equal(indices[0, 0], [[1, 2], [8, 10]])


def test_max_pool_never_points_into_padding(backend, dtype):
    """A window of real -inf values selects its first real position, not padding."""
    x = np.full((1, 1, 3, 3), -np.inf, dtype=dtype)
    y, indices = F.max_pool2d(x, 3, stride=2, padding=1)
    assert np.all(y == -np.inf)
    np.testing.assert_array_equal(indices[0, 0], [[0, 1], [3, 4]])


def test_avg_pool_counts_zero_padding(backend, dtype):
    x = np.ones((1, 1, 2, 2), dtype=dtype)
    y = F.avg_pool2d(x, 3, stride=1, padding=1)
    np.testing.assert_allclose(y[0, 0], np.full((2, 2), 4 / 9), **tolerance(dtype))


def test_report000_modes_are_strides(backend, dtype):
    """'sliding' im2col is stride 1 and 'distinct' is stride = kernel size."""
    x = np.arange(16, dtype=dtype).reshape(1, 1, 4, 4)
    distinct = F.im2col(x, 2, stride=2)
    np.testing.assert_array_equal(distinct[0, :, 0], [0, 1, 4, 5])
    np.testing.assert_array_equal(distinct[0, 0], [0, 2, 8, 10])
    assert F.im2col(x, 2, stride=1).shape == (1, 4, 9)


@pytest.mark.parametrize("shape", [(5, 3), (4, 2, 7), (3, 4, 5, 6), (1, 1, 3, 2), (2, 5, 1, 1)])
def test_batch_norm_matches_loops(backend, dtype, shape):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    weight = rng.standard_normal(shape[1]).astype(dtype)
    bias = rng.standard_normal(shape[1]).astype(dtype)
    y, mean, var = F.batch_norm(x, weight, bias, 1e-5)
    want_y, want_mean, want_var = loops.batch_norm(x, weight, bias, 1e-5)
    assert y.dtype == mean.dtype == var.dtype == dtype and y.shape == x.shape
    for got, want, name in ((y, want_y, "y"), (mean, want_mean, "mean"), (var, want_var, "var")):
        np.testing.assert_allclose(got, want, **tolerance(dtype), err_msg=name)
    grad_y = rng.standard_normal(shape).astype(dtype)
    got = F.batch_norm_backward(grad_y, x, mean, var, weight, 1e-5)
    want = loops.batch_norm_backward(grad_y, x, weight, 1e-5)
    for g, e, name in zip(got, want, ("grad_x", "grad_weight", "grad_bias")):
        assert g.dtype == dtype and g.shape == e.shape, name
        np.testing.assert_allclose(g, e, **tolerance(dtype), err_msg=name)


@pytest.mark.parametrize("seed", range(4))
def test_softmax_cross_entropy_matches_loops(backend, dtype, seed):
    rng = np.random.default_rng(seed)
    n_rows, n_classes = int(rng.integers(1, 6)), int(rng.integers(2, 7))
    logits = (rng.standard_normal((n_rows, n_classes)) * 5).astype(dtype)
    labels = rng.integers(0, n_classes, n_rows)
    one_hot = np.eye(n_classes, dtype=dtype)[labels]
    loss, grad = F.softmax_cross_entropy(logits, labels)
    want_loss, want_grad = loops.softmax_cross_entropy(logits, one_hot)
    assert isinstance(loss, float) and grad.dtype == dtype
    np.testing.assert_allclose(loss, want_loss, **tolerance(dtype))
    np.testing.assert_allclose(grad, want_grad, **tolerance(dtype))
    loss_one_hot, grad_one_hot = F.softmax_cross_entropy(logits, one_hot)
    np.testing.assert_allclose(loss_one_hot, loss, **tolerance(dtype))
    np.testing.assert_allclose(grad_one_hot, grad, **tolerance(dtype))


def test_softmax_cross_entropy_is_stable_for_huge_logits(backend, dtype):
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4 + 1]], dtype=dtype)
    loss, grad = F.softmax_cross_entropy(logits, np.array([0, 2]))
    assert np.isfinite(loss) and np.isfinite(grad).all()
    want = np.log1p(2 * np.exp(-1.0)) / 2                   # row 0 contributes ~0
    np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_non_contiguous_input_is_accepted(backend, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)[:, :, ::2, :]   # strided view
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    np.testing.assert_allclose(F.conv2d(x, w, None, 1, 1), F.conv2d(x.copy(), w, None, 1, 1),
                               **tolerance(dtype))


# ------------------------------------------------------------------ backends agree
@pytest.mark.parametrize("seed", range(6))
def test_backends_agree_on_larger_shapes(dtype, seed):
    """The same random problem on every backend, compared with the numpy reference."""
    import fastconv

    rng = np.random.default_rng(100 + seed)
    c_in, c_out = int(rng.integers(1, 9)), int(rng.integers(1, 17))
    x = rng.standard_normal((int(rng.integers(1, 5)), c_in, 15, 13)).astype(dtype)
    w = rng.standard_normal((c_out, c_in, 3, 5)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    stride, padding = (1 + seed % 3, 1 + seed % 2), (seed % 3, 2)
    results = {}
    for name in fastconv.available_backends():
        with fastconv.use_backend(name):
            y = F.conv2d(x, w, b, stride, padding)
            results[name] = (y, *F.conv2d_backward(np.ones_like(y), x, w, stride, padding),
                             *F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 2))
    reference = results["numpy"]
    for name, outputs in results.items():
        for got, want in zip(outputs, reference):
            np.testing.assert_allclose(got, want, **tolerance(dtype), err_msg=name)


def test_softmax_cross_entropy_with_minus_inf_logit_off_the_label(backend, dtype):
    """A -inf logit on a class that is not the label costs nothing (PyTorch's
    F.cross_entropy gives the finite loss; 0 * log 0 counts as 0)."""
    logits = np.array([[-np.inf, 0.0, 1.0], [2.0, -np.inf, 0.0]], dtype=dtype)
    labels = np.array([1, 0])
    loss, grad = F.softmax_cross_entropy(logits, labels)
    finite = np.array([[0.0, 1.0], [2.0, 0.0]])
    want = -np.mean([finite[0, 0] - np.logaddexp(0.0, 1.0), finite[1, 0] - np.logaddexp(2.0, 0.0)])
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    assert np.isfinite(grad).all() and grad[0, 0] == 0 and grad[1, 1] == 0
    one_hot_loss, _ = F.softmax_cross_entropy(logits, np.eye(3, dtype=dtype)[labels])
    np.testing.assert_allclose(one_hot_loss, want, rtol=1e-5)


def test_pool_windows_much_wider_than_the_input(backend, dtype):
    """Windows reaching far into the padding: the same results on every backend
    (the numba loops skip the all-padding offsets)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, 3, 5)).astype(dtype)
    args = ((3, 41), (1, 2), (1, 20))
    np.testing.assert_allclose(F.avg_pool2d(x, *args), loops.avg_pool2d(x, *args), **tolerance(dtype))
    y, indices = F.max_pool2d(x, *args)
    want_y, want_indices = loops.max_pool2d(x, *args)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(indices, want_indices)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(F.avg_pool2d_backward(grad_y, x.shape, *args),
                               loops.avg_pool2d_backward(grad_y, x.shape, *args), **tolerance(dtype))
