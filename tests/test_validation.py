"""Bad input raises a clear error naming the argument, before any backend runs."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
import fastconv.functional as F

X = np.zeros((2, 3, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)

BAD_CALLS = [
    # (description, call, exception type, message fragment)
    ("x not 4-D", lambda: F.conv2d(X[0], W), ValueError, "x must be 4-D"),
    ("w not 4-D", lambda: F.conv2d(X, W[0]), ValueError, "w must be 4-D"),
    ("channel mismatch", lambda: F.conv2d(X, W[:, :2]), ValueError, "channel mismatch"),
    ("kernel too large", lambda: F.conv2d(X, np.zeros((4, 3, 9, 3), np.float32)), ValueError,
     "larger than the padded input"),
    ("zero stride", lambda: F.conv2d(X, W, stride=0), ValueError, "stride must be positive"),
    ("negative padding", lambda: F.conv2d(X, W, padding=(0, -1)), ValueError,
     "padding must be non-negative"),
    ("stride triple", lambda: F.conv2d(X, W, stride=(1, 1, 1)), TypeError, "stride must be an int"),
    ("float stride", lambda: F.conv2d(X, W, stride=1.5), TypeError, "stride must be an int"),
    ("bool padding", lambda: F.conv2d(X, W, padding=True), TypeError, "padding must be an int"),
    ("int dtype", lambda: F.conv2d(X.astype(np.int32), W), TypeError, "float32 or float64"),
    ("object dtype", lambda: F.conv2d(X.astype(object), W), TypeError, "float32 or float64"),
    ("float16", lambda: F.im2col(X.astype(np.float16), 3), TypeError, "float32 or float64"),
    ("list input of another dtype", lambda: F.conv2d(X.tolist(), W), TypeError,
     "w has dtype float32 but x has float64"),
    ("masked array", lambda: F.conv2d(np.ma.masked_array(X, X > 0), W), TypeError, "numpy.ma"),
    ("masked labels", lambda: F.softmax_cross_entropy(np.zeros((3, 4), np.float32),
                                                      np.ma.masked_array([0, 1, 2])), TypeError, "numpy.ma"),
    ("pool window beyond 2**31", lambda: F.avg_pool2d(np.ones((1, 1, 4, 4), np.float32), (2**62, 4),
                                                      padding=(2**61, 0)), ValueError,
     "kernel_size must be at most 2**31 - 1"),
    ("stride beyond 2**31", lambda: F.conv2d(X, W, padding=10**9, stride=10**12), ValueError,
     "stride must be at most 2**31 - 1"),
    ("padded height beyond 2**31", lambda: F.conv2d(X, W, padding=2**30), ValueError,
     "padding 1073741824 makes the padded input height"),
    ("padded input beyond memory", lambda: F.conv2d(X, W, padding=10**9), ValueError,
     "zero-padded input would be 2x3x2000000008x2000000008"),
    ("im2col output beyond memory", lambda: F.im2col(X, 1024, padding=1024), ValueError,
     "im2col: the output would be"),
    ("pool input gradient beyond memory", lambda: F.avg_pool2d_backward(
        np.zeros((2, 3, 4, 4), np.float32), (2, 3, 2**31 - 1, 2**20), (536870911, 2**18)), ValueError,
     "input gradient would be 2x3x2147483647x1048576"),
    ("mixed dtypes", lambda: F.conv2d(X, W.astype(np.float64)), TypeError, "dtype"),
    ("bias shape", lambda: F.conv2d(X, W, np.zeros(5, np.float32)), ValueError, "b must have shape (4,)"),
    ("bias dtype", lambda: F.conv2d(X, W, np.zeros(4)), TypeError, "b has dtype"),
    ("empty x", lambda: F.conv2d(np.zeros((0, 3, 8, 8), np.float32), W), ValueError, "empty"),
    ("grad_y shape", lambda: F.conv2d_backward(np.zeros((2, 4, 5, 5), np.float32), X, W), ValueError,
     "grad_y must have shape (2, 4, 6, 6)"),
    ("grad_y dtype", lambda: F.conv2d_backward(np.zeros((2, 4, 6, 6)), X, W), TypeError, "grad_y"),
    ("cols not 3-D", lambda: F.col2im(X, (8, 8), 3), ValueError, "cols must be 3-D"),
    ("cols rows", lambda: F.col2im(np.zeros((1, 10, 36), np.float32), (8, 8), 3), ValueError,
     "multiple of kh*kw"),
    ("cols windows", lambda: F.col2im(np.zeros((1, 9, 35), np.float32), (8, 8), 3), ValueError,
     "number of windows"),
    ("pool kernel too large", lambda: F.max_pool2d(X, 9), ValueError, "larger than the padded input"),
    ("pool padding too large", lambda: F.avg_pool2d(X, 2, padding=2), ValueError, "at most half"),
    ("pool grad shape", lambda: F.avg_pool2d_backward(np.zeros((2, 3, 3, 4), np.float32), X.shape, 2),
     ValueError, "grad_y must have shape (2, 3, 4, 4)"),
    ("x_shape length", lambda: F.avg_pool2d_backward(np.zeros((2, 3, 4, 4), np.float32), (3, 8, 8), 2),
     ValueError, "x_shape"),
    ("indices out of range", lambda: F.max_pool2d_backward(
        np.zeros((2, 3, 4, 4), np.float32), np.full((2, 3, 4, 4), 64), X.shape, 2), ValueError,
     "indices must lie in"),
    ("negative indices", lambda: F.max_pool2d_backward(
        np.zeros((2, 3, 4, 4), np.float32), np.full((2, 3, 4, 4), -1), X.shape, 2), ValueError,
     "indices must lie in"),
    ("float indices", lambda: F.max_pool2d_backward(
        np.zeros((2, 3, 4, 4), np.float32), np.zeros((2, 3, 4, 4)), X.shape, 2), TypeError, "indices"),
    ("indices shape", lambda: F.max_pool2d_backward(
        np.zeros((2, 3, 4, 4), np.float32), np.zeros((2, 3, 4, 3), np.int64), X.shape, 2), ValueError,
     "indices must have shape"),
    ("labels out of range", lambda: F.softmax_cross_entropy(np.zeros((3, 4), np.float32), np.array([0, 4, 1])),
     ValueError, "labels must lie in [0, 4)"),
    ("labels length", lambda: F.softmax_cross_entropy(np.zeros((3, 4), np.float32), np.array([0, 1])),
     ValueError, "labels must have shape (3,)"),
    ("float class labels", lambda: F.softmax_cross_entropy(np.zeros((3, 4), np.float32), np.zeros(3)),
     TypeError, "integer class indices"),
    ("one-hot shape", lambda: F.softmax_cross_entropy(np.zeros((3, 4), np.float32), np.zeros((3, 5))),
     ValueError, "labels must have shape (3, 4)"),
    ("logits 1-D", lambda: F.softmax_cross_entropy(np.zeros(4, np.float32), np.array([0])), ValueError,
     "logits must be 2-D"),
]


@pytest.mark.parametrize("description, call, error, fragment", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_clear_error(backend, description, call, error, fragment):
    with pytest.raises(error) as excinfo:
        call()
    assert fragment in str(excinfo.value), str(excinfo.value)


def test_validation_happens_before_the_backend(monkeypatch):
    """A backend is never called with invalid arguments."""
    backend = fastconv.get_backend()
    called = []
    monkeypatch.setattr(backend, "conv2d", lambda *args: called.append(args))
    with pytest.raises(ValueError):
        F.conv2d(X, W[:, :2])
    assert called == []


def test_conv_output_size():
    assert F.conv_output_size((28, 28), 5, 1, 2) == (28, 28)
    assert F.conv_output_size((7, 9), (3, 2), (2, 3), (1, 0)) == (4, 3)
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.conv_output_size((2, 2), 5)
