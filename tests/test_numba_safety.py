"""Bad input reaching the numba backend through `fastconv.functional`: the same clear
errors as the NumPy backend, raised before any JIT kernel runs, and never a crash."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import fastconv  # noqa: E402
import fastconv.functional as F  # noqa: E402
from fastconv.backends import numba_backend as NB  # noqa: E402

X = np.zeros((2, 3, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)
Y = np.zeros((2, 4, 6, 6), np.float32)
G = np.zeros((2, 3, 4, 4), np.float32)
LOGITS = np.zeros((3, 4), np.float32)
X6 = np.zeros((2, 6, 8, 8), np.float32)
WT = np.zeros((3, 4, 3, 3), np.float32)        # transposed: (C_in, C_out // groups, kh, kw)
ONES = np.ones((1, 1, 4, 4), np.float32)
# A gradient of an input whose shape fits no memory: (2, 3, 2**31 - 1, 2**20) pooled
# by (536870911, 2**18) windows gives G's 4x4 output.
HUGE_X_SHAPE, HUGE_WINDOW = (2, 3, 2**31 - 1, 2**20), (536870911, 2**18)

BAD_CALLS = [
    ("x 3-D", lambda: F.conv2d(X[0], W)),
    ("x 5-D", lambda: F.conv2d(X[None], W)),
    ("channel mismatch", lambda: F.conv2d(X, W[:, :2])),
    ("kernel taller than padded input", lambda: F.conv2d(X, np.zeros((4, 3, 9, 3), np.float32))),
    ("kernel wider than padded input",
     lambda: F.conv2d(X, np.zeros((4, 3, 3, 11), np.float32), padding=1)),
    ("zero stride", lambda: F.conv2d(X, W, stride=0)),
    ("negative stride", lambda: F.conv2d(X, W, stride=(1, -2))),
    ("negative padding", lambda: F.conv2d(X, W, padding=-1)),
    ("float padding", lambda: F.conv2d(X, W, padding=0.5)),
    ("int dtype", lambda: F.conv2d(X.astype(np.int64), W)),
    ("object dtype", lambda: F.conv2d(X.astype(object), W)),
    ("complex dtype", lambda: F.conv2d(X.astype(np.complex64), W)),
    ("big-endian", lambda: F.conv2d(X.astype(">f4"), W)),
    ("mismatched dtypes", lambda: F.conv2d(X, W.astype(np.float64))),
    ("bias dtype", lambda: F.conv2d(X, W, np.zeros(4))),
    ("bias shape", lambda: F.conv2d(X, W, np.zeros(3, np.float32))),
    ("empty batch", lambda: F.conv2d(X[:0], W)),
    ("backward grad_y shape", lambda: F.conv2d_backward(Y[:, :, :5], X, W)),
    ("backward grad_y dtype", lambda: F.conv2d_backward(Y.astype(np.float64), X, W)),
    ("backward channel mismatch", lambda: F.conv2d_backward(Y, X[:, :2], W)),
    ("relu: y shape", lambda: F.conv2d_relu_backward(Y, Y[:1], X, W)),
    ("relu: y dtype", lambda: F.conv2d_relu_backward(Y, Y.astype(np.float64), X, W)),
    ("relu: channel mismatch", lambda: F.conv2d_relu(X, W[:, :1])),
    ("relu: bias shape", lambda: F.conv2d_relu(X, W, np.zeros(5, np.float32))),
    ("weights-only: grad_y shape", lambda: F.conv2d_backward_weights(Y[:1], X, W)),
    ("pool: output below 2x2", lambda: F.conv2d_relu_avgpool2(X[:, :, :4, :4], np.zeros((4, 3, 4, 3), np.float32))),
    ("pool: grad shape", lambda: F.conv2d_relu_avgpool2_backward(Y, Y, X, W)),
    ("pool: y shape", lambda: F.conv2d_relu_avgpool2_backward(Y[:, :, ::2, ::2], Y[:, :, :5], X, W)),
    ("pool: grad dtype",
     lambda: F.conv2d_relu_avgpool2_backward(Y[:, :, ::2, ::2].astype(np.float64), Y, X, W)),
    ("batch norm: 5-D x", lambda: F.batch_norm(X[None], np.ones(3, np.float32), np.zeros(3, np.float32))),
    ("batch norm: weight length", lambda: F.batch_norm(X, np.ones(4, np.float32), np.zeros(3, np.float32))),
    ("batch norm: bias dtype", lambda: F.batch_norm(X, np.ones(3, np.float32), np.zeros(3))),
    ("batch norm: one value per channel",
     lambda: F.batch_norm(X[:1, :, :1, :1], np.ones(3, np.float32), np.zeros(3, np.float32))),
    ("batch norm backward: grad shape", lambda: F.batch_norm_backward(
        X[:1], X, np.zeros(3, np.float32), np.ones(3, np.float32), np.ones(3, np.float32))),
    ("batch norm backward: var length", lambda: F.batch_norm_backward(
        X, X, np.zeros(3, np.float32), np.ones(2, np.float32), np.ones(3, np.float32))),
    ("im2col kernel too large", lambda: F.im2col(X, 9)),
    ("im2col int", lambda: F.im2col(X.astype(np.int32), 3)),
    ("col2im rows", lambda: F.col2im(np.zeros((1, 10, 36), np.float32), (8, 8), 3)),
    ("col2im windows", lambda: F.col2im(np.zeros((1, 9, 35), np.float32), (8, 8), 3)),
    ("col2im output size", lambda: F.col2im(np.zeros((1, 9, 36), np.float32), (0, 8), 3)),
    ("avg pool padding > k/2", lambda: F.avg_pool2d(X, 2, padding=2)),
    ("max pool kernel too large", lambda: F.max_pool2d(X, 9)),
    ("max pool zero stride", lambda: F.max_pool2d(X, 2, stride=0)),
    ("avg backward grad shape", lambda: F.avg_pool2d_backward(G[:, :, :3], X.shape, 2)),
    ("avg backward x_shape", lambda: F.avg_pool2d_backward(G, (2, 3, 8), 2)),
    ("avg backward x_shape zero", lambda: F.avg_pool2d_backward(G, (2, 3, 0, 8), 2)),
    ("max backward index too large", lambda: F.max_pool2d_backward(G, np.full(G.shape, 64), X.shape, 2)),
    ("max backward index negative", lambda: F.max_pool2d_backward(G, np.full(G.shape, -1), X.shape, 2)),
    ("max backward huge index", lambda: F.max_pool2d_backward(
        G, np.full(G.shape, 2**62, np.int64), X.shape, 2)),
    ("max backward float indices", lambda: F.max_pool2d_backward(G, np.zeros(G.shape), X.shape, 2)),
    ("max backward indices shape",
     lambda: F.max_pool2d_backward(G, np.zeros((2, 3, 4), np.int64), X.shape, 2)),
    ("labels out of range", lambda: F.softmax_cross_entropy(LOGITS, np.array([0, 4, 1]))),
    ("labels negative", lambda: F.softmax_cross_entropy(LOGITS, np.array([0, -1, 1]))),
    ("labels float 1-D", lambda: F.softmax_cross_entropy(LOGITS, np.zeros(3))),
    ("labels length", lambda: F.softmax_cross_entropy(LOGITS, np.array([0, 1]))),
    ("labels one-hot shape", lambda: F.softmax_cross_entropy(LOGITS, np.zeros((3, 5)))),
    ("labels 3-D", lambda: F.softmax_cross_entropy(LOGITS, np.zeros((3, 4, 1)))),
    ("logits int", lambda: F.softmax_cross_entropy(LOGITS.astype(np.int32), np.array([0, 1, 2]))),
    # general convolution: groups, dilation, padding modes, transposed convolution
    ("groups not dividing C_in", lambda: F.conv2d(X, W[:, :1], groups=2)),
    ("groups not dividing C_out", lambda: F.conv2d(X6, np.zeros((4, 2, 3, 3), np.float32), groups=3)),
    ("grouped channel mismatch", lambda: F.conv2d(X6, np.zeros((6, 3, 3, 3), np.float32), groups=3)),
    ("zero groups", lambda: F.conv2d(X, W, groups=0)),
    ("float groups", lambda: F.conv2d(X, W, groups=1.5)),
    ("bool groups", lambda: F.conv2d(X, W, groups=True)),
    ("zero dilation", lambda: F.conv2d(X, W, dilation=0)),
    ("negative dilation", lambda: F.conv2d(X, W, dilation=(1, -1))),
    ("dilated kernel too large", lambda: F.conv2d(X, W, dilation=4)),
    ("dilated kernel too large, padded", lambda: F.conv2d(X, W, padding=(0, 1), dilation=(1, 5))),
    ("same with stride 2", lambda: F.conv2d(X, W, stride=2, padding="same")),
    ("unknown padding mode", lambda: F.conv2d(X, W, padding="full")),
    ("dilated backward grad_y shape", lambda: F.conv2d_backward(Y, X, W, dilation=2)),
    ("depthwise backward grad_y dtype", lambda: F.conv2d_backward(
        np.zeros((2, 6, 6, 6)), X6, np.zeros((6, 1, 3, 3), np.float32), groups=6)),
    ("depthwise weights-only grad_y shape", lambda: F.conv2d_backward_weights(
        Y, X6, np.zeros((6, 1, 3, 3), np.float32), groups=6)),
    ("same backward grad_y shape", lambda: F.conv2d_backward(Y, X, W, padding="same")),
    ("relu: groups not dividing", lambda: F.conv2d_relu(X, W, groups=2)),
    ("relu backward: dilated y shape", lambda: F.conv2d_relu_backward(Y[:, :, :4, :4], Y, X, W, dilation=2)),
    ("pool: dilated output below 2x2", lambda: F.conv2d_relu_avgpool2(X[:, :, :7, :7], W, dilation=3)),
    ("transpose: output_padding >= stride", lambda: F.conv_transpose2d(X, WT, stride=2, output_padding=2)),
    ("transpose: output_padding, stride 1", lambda: F.conv_transpose2d(X, WT, output_padding=(0, 1))),
    ("transpose: output_padding >= dilation", lambda: F.conv_transpose2d(
        X, WT, dilation=2, output_padding=(2, 0))),
    ("transpose: channel mismatch", lambda: F.conv_transpose2d(X, WT[:2])),
    ("transpose: groups not dividing C_in", lambda: F.conv_transpose2d(X, WT, groups=2)),
    ("transpose: zero dilation", lambda: F.conv_transpose2d(X, WT, dilation=0)),
    ("transpose: padding too large", lambda: F.conv_transpose2d(X[:, :, :1, :1], WT, padding=2)),
    ("transpose: padding 'same'", lambda: F.conv_transpose2d(X, WT, padding="same")),
    ("transpose: bias shape", lambda: F.conv_transpose2d(X, WT, np.zeros(3, np.float32))),
    ("transpose: dtype mix", lambda: F.conv_transpose2d(X, WT.astype(np.float64))),
    ("transpose backward: grad shape", lambda: F.conv_transpose2d_backward(X, X, WT)),
    ("transpose backward: grad dtype", lambda: F.conv_transpose2d_backward(
        np.zeros((2, 4, 10, 10)), X, WT)),
    ("im2col: zero dilation", lambda: F.im2col(X, 3, dilation=0)),
    ("im2col: dilated kernel too large", lambda: F.im2col(X, 3, dilation=4)),
    ("col2im: dilated windows", lambda: F.col2im(np.zeros((1, 9, 36), np.float32), (8, 8), 3, dilation=2)),
    # sizes no kernel can index safely
    ("avg pool window area beyond int64", lambda: F.avg_pool2d(ONES, (2**62, 4), padding=(2**61, 0))),
    ("max pool huge window", lambda: F.max_pool2d(ONES, 2**40, padding=2**39)),
    ("conv huge padding and stride", lambda: F.conv2d(X, W, padding=10**9, stride=10**12)),
    ("conv padded input beyond memory", lambda: F.conv2d(X, W, padding=10**9)),
    ("conv padded height beyond 2**31", lambda: F.conv2d(X, W, padding=2**30)),
    ("fused conv padded input beyond memory", lambda: F.conv2d_relu_avgpool2(X, W, padding=10**8)),
    ("im2col output beyond memory", lambda: F.im2col(X, 1024, padding=1024)),
    ("col2im output size beyond 2**31", lambda: F.col2im(np.zeros((1, 9, 36), np.float32), (2**31, 8), 3)),
    ("avg backward input gradient beyond memory",
     lambda: F.avg_pool2d_backward(G, HUGE_X_SHAPE, HUGE_WINDOW)),
    ("max backward input gradient beyond memory",
     lambda: F.max_pool2d_backward(G, np.zeros(G.shape, np.int64), HUGE_X_SHAPE, HUGE_WINDOW)),
    ("max pool padded input beyond memory", lambda: F.max_pool2d(ONES, 2**30, padding=2**29)),
    # masked arrays: the mask would be ignored
    ("masked x", lambda: F.conv2d(np.ma.masked_array(X), W)),
    ("masked labels", lambda: F.softmax_cross_entropy(LOGITS, np.ma.masked_array([0, 1, 2]))),
    ("masked indices", lambda: F.max_pool2d_backward(G, np.ma.masked_array(np.zeros(G.shape, np.int64)),
                                                     X.shape, 2)),
    ("masked batch norm input", lambda: F.batch_norm(np.ma.masked_array(X), np.ones(3, np.float32),
                                                     np.zeros(3, np.float32))),
    ("dilated conv padded input beyond memory", lambda: F.conv2d(X, W, padding=10**9, dilation=2)),
    ("grouped conv output beyond memory", lambda: F.conv2d(X6, np.zeros((6, 3, 3, 3), np.float32),
                                                           groups=2, padding=10**8)),
    ("transposed conv output beyond memory", lambda: F.conv_transpose2d(X, WT, stride=10**8)),
    ("transposed conv stride beyond 2**31", lambda: F.conv_transpose2d(X, WT, stride=2**31)),
    ("masked transposed input", lambda: F.conv_transpose2d(np.ma.masked_array(X), WT)),
]


def _error_of(backend_name, call):
    with fastconv.use_backend(backend_name):
        with pytest.raises((ValueError, TypeError)) as excinfo:
            call()
    return type(excinfo.value), str(excinfo.value)


@pytest.mark.parametrize("description, call", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_same_clear_error_as_numpy(description, call):
    assert _error_of("numba", call) == _error_of("numpy", call)


@pytest.fixture
def kernels_forbidden(monkeypatch):
    """Replace every JIT kernel by one that fails the test if it is ever called."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a JIT kernel ran on invalid input")

    for module in NB.KERNEL_MODULES:
        for name in dir(module):
            if hasattr(getattr(module, name), "py_func"):
                monkeypatch.setattr(module, name, forbidden)


@pytest.mark.parametrize("description, call", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_no_kernel_runs_on_bad_input(kernels_forbidden, description, call):
    with fastconv.use_backend("numba"):
        with pytest.raises((ValueError, TypeError)):
            call()


def test_non_contiguous_and_read_only_inputs_are_accepted(dtype):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 2, 11, 13)).astype(dtype)
    views = {
        "strided": base[:, :, ::2, 1::2],
        "transposed": np.ascontiguousarray(base.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2),
        "fortran": np.asfortranarray(base),
    }
    read_only = base.copy()
    read_only.flags.writeable = False
    views["read-only"] = read_only
    w = rng.standard_normal((4, 2, 3, 3)).astype(dtype)
    for name, x in views.items():
        want = x.copy()
        for algo in ("direct", "gemm"):
            NB.set_conv_algorithm(algo)
            try:
                with fastconv.use_backend("numba"):
                    got = F.conv2d(x, w, None, 1, 1)
                    grads = F.conv2d_backward(got, x, w, 1, 1)
            finally:
                NB.set_conv_algorithm(None)
            with fastconv.use_backend("numpy"):
                ref = F.conv2d(want, w, None, 1, 1)
                ref_grads = F.conv2d_backward(ref, want, w, 1, 1)
            tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(got, ref, **tol, err_msg=f"{name} {algo}")
            for g, r in zip(grads, ref_grads):
                np.testing.assert_allclose(g, r, **tol, err_msg=f"{name} {algo}")
        with fastconv.use_backend("numba"):
            y, idx = F.max_pool2d(x, 2)
            np.testing.assert_array_equal(y, F.max_pool2d(want, 2)[0])
            F.max_pool2d_backward(y[:, :, ::-1].copy(), idx, x.shape, 2)   # any valid grad


def test_inputs_are_not_modified():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    copies = [a.copy() for a in (x, w, b)]
    with fastconv.use_backend("numba"):
        for algo in ("direct", "gemm"):
            NB.set_conv_algorithm(algo)
            try:
                y = F.conv2d_relu(x, w, b, 1, 1)
                grad_y = np.ones_like(y)
                y_copy = y.copy()
                F.conv2d_relu_backward(grad_y, y, x, w, 1, 1)
                np.testing.assert_array_equal(y, y_copy)
                np.testing.assert_array_equal(grad_y, 1)
            finally:
                NB.set_conv_algorithm(None)
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("seed", range(60))
def test_random_hyper_parameters_never_crash(seed):
    """Random (often invalid) shapes and hyper-parameters: numba either raises the
    same error as numpy or returns the same result.  A crash would kill the run."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(1, 7, size=4))
    x = rng.standard_normal(shape).astype(np.float32)
    w_shape = (int(rng.integers(1, 4)), x.shape[1] if seed % 5 else x.shape[1] + 1,
               *(int(v) for v in rng.integers(1, 8, size=2)))
    w = rng.standard_normal(w_shape).astype(np.float32)
    stride = tuple(int(v) for v in rng.integers(0 if seed % 7 == 0 else 1, 4, size=2))
    padding = tuple(int(v) for v in rng.integers(-1 if seed % 11 == 0 else 0, 4, size=2))
    kernel = tuple(int(v) for v in rng.integers(1, 6, size=2))
    pool_pad = tuple(int(v) for v in rng.integers(0, 3, size=2))
    calls = [
        lambda: F.conv2d(x, w, None, stride, padding),
        lambda: F.conv2d_backward(np.ones((x.shape[0], w.shape[0], 2, 2), np.float32), x, w,
                                  stride, padding),
        lambda: F.im2col(x, kernel, stride, padding),
        lambda: F.avg_pool2d(x, kernel, stride, pool_pad),
        lambda: F.max_pool2d(x, kernel, stride, pool_pad),
    ]
    for call in calls:
        outcome = {}
        for name in ("numpy", "numba"):
            with fastconv.use_backend(name):
                try:
                    result = call()
                except (ValueError, TypeError) as error:
                    outcome[name] = ("error", type(error), str(error))
                else:
                    outcome[name] = result if isinstance(result, tuple) else (result,)
        failed = [isinstance(outcome[name][0], str) for name in ("numpy", "numba")]
        if any(failed):
            assert outcome["numba"] == outcome["numpy"]
        else:
            for got, want in zip(outcome["numba"], outcome["numpy"]):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
