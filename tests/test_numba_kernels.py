"""The numba backend against the NumPy reference (and plain loops), kernel by kernel.

Every convolution check runs once per algorithm (``direct`` and ``gemm`` forced),
forward and backward, plus the fused ops; shapes are randomised: odd sizes, strides
1-3, rectangular kernels, padding, N = 1 and C = 1 among the seeds.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import fastconv  # noqa: E402
import fastconv.functional as F  # noqa: E402
from fastconv.backends import numba_backend as NB  # noqa: E402
from fastconv.system.env import EnvironmentVariableError  # noqa: E402
from tests import loops  # noqa: E402

ALGORITHMS = tuple(NB.ALGORITHMS)
SEEDS = range(16)


@pytest.fixture(scope="module", autouse=True)
def compiled_kernels():
    """Compile every kernel for both dtypes up front, two processes in parallel
    (~30 s instead of ~55 s on a cold cache; ~0.5 s when cached)."""
    NB.warmup((np.float32, np.float64), jobs=2)


def close(got, want, dtype, what=""):
    """rtol 1e-5 (float32) / 1e-10 (float64), atol scaled to the data's magnitude
    (sums of hundreds of terms cancel)."""
    rtol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-10
    scale = max(1.0, float(np.max(np.abs(want)))) if np.size(want) else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


def on(backend_name, fn, *args, **kwargs):
    with fastconv.use_backend(backend_name):
        return fn(*args, **kwargs)


@pytest.fixture
def algorithm(request):
    NB.set_conv_algorithm(request.param)
    yield request.param
    NB.set_conv_algorithm(None)


def conv_case(seed, dtype):
    rng = np.random.default_rng(seed)
    n = 1 if seed % 3 == 0 else int(rng.integers(2, 4))
    c_in = 1 if seed % 4 == 0 else int(rng.integers(2, 6))
    c_out = 1 if seed % 5 == 0 else int(rng.integers(2, 7))
    height, width = (int(v) for v in rng.integers(3, 12, size=2))
    padding = tuple(int(v) for v in rng.integers(0, 3, size=2))
    kh = int(rng.integers(1, min(6, height + 2 * padding[0]) + 1))
    kw = int(rng.integers(1, min(6, width + 2 * padding[1]) + 1))
    stride = (1, 1) if seed % 2 == 0 else tuple(int(v) for v in rng.integers(1, 4, size=2))
    x = rng.standard_normal((n, c_in, height, width)).astype(dtype)
    w = rng.standard_normal((c_out, c_in, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b, stride, padding, rng


# ------------------------------------------------------------------ convolution
@pytest.mark.parametrize("algorithm", ALGORITHMS, indirect=True)
@pytest.mark.parametrize("seed", SEEDS)
def test_conv2d_forward_and_backward_agree_with_numpy(algorithm, seed, dtype):
    x, w, b, stride, padding, rng = conv_case(seed, dtype)
    want_y = on("numpy", F.conv2d, x, w, b, stride, padding)
    grad_y = rng.standard_normal(want_y.shape).astype(dtype)
    want = on("numpy", F.conv2d_backward, grad_y, x, w, stride, padding)
    with fastconv.use_backend("numba"):
        close(F.conv2d(x, w, b, stride, padding), want_y, dtype, "y")
        close(F.conv2d(x, w, None, stride, padding), want_y - b[:, None, None], dtype, "y, no bias")
        got = F.conv2d_backward(grad_y, x, w, stride, padding)
    for name, g, e in zip(("grad_x", "grad_w", "grad_b"), got, want):
        assert g.dtype == dtype and g.shape == e.shape, name
        close(g, e, dtype, name)
    key = ("backward", x.shape, w.shape, stride, padding, np.dtype(dtype).name)
    if NB.ALGORITHMS[algorithm].supports(x.shape, w.shape, stride, padding):
        assert NB.last_conv_algorithms[key] == algorithm
    else:                       # a forced algorithm that cannot run this falls back
        assert NB.ALGORITHMS[NB.last_conv_algorithms[key]].supports(x.shape, w.shape, stride, padding)


@pytest.mark.parametrize("algorithm", ALGORITHMS, indirect=True)
@pytest.mark.parametrize("seed", range(8))
def test_fused_ops_agree_with_numpy(algorithm, seed, dtype):
    x, w, b, stride, padding, rng = conv_case(seed, dtype)
    want_y = on("numpy", F.conv2d_relu, x, w, b, stride, padding)
    grad_y = rng.standard_normal(want_y.shape).astype(dtype)
    want = on("numpy", F.conv2d_relu_backward, grad_y, want_y, x, w, stride, padding)
    want_params = on("numpy", F.conv2d_backward_weights, grad_y, x, w, stride, padding)
    with fastconv.use_backend("numba"):
        y = F.conv2d_relu(x, w, b, stride, padding)
        got = F.conv2d_relu_backward(grad_y, y, x, w, stride, padding)
        no_input = F.conv2d_relu_backward(grad_y, y, x, w, stride, padding, input_grad=False)
        params = F.conv2d_backward_weights(grad_y, x, w, stride, padding)
    close(y, want_y, dtype, "relu(conv)")
    for name, g, e in zip(("grad_x", "grad_w", "grad_b"), got, want):
        close(g, e, dtype, name)
    assert no_input[0] is None
    close(no_input[1], want[1], dtype, "grad_w without grad_x")
    for g, e in zip(params, want_params):
        close(g, e, dtype, "conv2d_backward_weights")
    if min(want_y.shape[2:]) >= 2:
        want_pooled, _ = on("numpy", F.conv2d_relu_avgpool2, x, w, b, stride, padding)
        grad_pooled = rng.standard_normal(want_pooled.shape).astype(dtype)
        want = on("numpy", F.conv2d_relu_avgpool2_backward, grad_pooled, want_y, x, w, stride, padding)
        with fastconv.use_backend("numba"):
            pooled, y = F.conv2d_relu_avgpool2(x, w, b, stride, padding)
            got = F.conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, stride, padding)
        close(pooled, want_pooled, dtype, "pooled")
        for name, g, e in zip(("grad_x", "grad_w", "grad_b"), got, want):
            close(g, e, dtype, f"{name} from the pooled gradient")


@pytest.mark.parametrize("group_bytes", [1, 3000, 1 << 18], ids=["1-image", "few-images", "large"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_direct_kernels_group_images_correctly(monkeypatch, group_bytes, threads, seed, dtype):
    """The direct kernels stack several images' planes into one loop: groups of one
    image, of a few (with a shorter last group) and the default must all agree."""
    monkeypatch.setattr(NB.direct, "_GROUP_BYTES", group_bytes)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 12))
    c_in, c_out = int(rng.integers(1, 4)), int(rng.integers(1, 6))
    x = rng.standard_normal((n, c_in, int(rng.integers(3, 10)), int(rng.integers(3, 10)))).astype(dtype)
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 6))
    padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    w = rng.standard_normal((c_out, c_in, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    want_y = on("numpy", F.conv2d_relu, x, w, b, 1, padding)
    grad_y = rng.standard_normal(want_y.shape).astype(dtype)
    want = on("numpy", F.conv2d_relu_backward, grad_y, want_y, x, w, 1, padding)
    pools = min(want_y.shape[2:]) >= 2
    if pools:
        want_pooled, _ = on("numpy", F.conv2d_relu_avgpool2, x, w, b, 1, padding)
        grad_pooled = rng.standard_normal(want_pooled.shape).astype(dtype)
        want_from_pooled = on("numpy", F.conv2d_relu_avgpool2_backward, grad_pooled, want_y, x, w, 1, padding)
    previous = NB.get_num_threads()
    NB.set_num_threads(threads)
    NB.set_conv_algorithm("direct")
    try:
        with fastconv.use_backend("numba"):
            y = F.conv2d_relu(x, w, b, 1, padding)
            got = F.conv2d_relu_backward(grad_y, y, x, w, 1, padding)
            if pools:
                pooled, y_fused = F.conv2d_relu_avgpool2(x, w, b, 1, padding)
                got_from_pooled = F.conv2d_relu_avgpool2_backward(grad_pooled, y_fused, x, w, 1, padding)
    finally:
        NB.set_conv_algorithm(None)
        NB.set_num_threads(previous)
    close(y, want_y, dtype, "y")
    for name, g, e in zip(("grad_x", "grad_w", "grad_b"), got, want):
        close(g, e, dtype, name)
    if pools:
        close(pooled, want_pooled, dtype, "pooled")
        close(y_fused, want_y, dtype, "y of the pooled op")
        for name, g, e in zip(("grad_x", "grad_w", "grad_b"), got_from_pooled, want_from_pooled):
            close(g, e, dtype, f"{name} from the pooled gradient")


@pytest.mark.parametrize("algorithm", ALGORITHMS, indirect=True)
@pytest.mark.parametrize("seed", range(4))
def test_conv_matches_plain_loops(algorithm, seed, dtype):
    """Ground truth independent of the NumPy backend, on small shapes."""
    x, w, b, stride, padding, rng = conv_case(seed + 40, dtype)
    want_y = loops.conv2d(x, w, b, stride, padding)
    grad_y = rng.standard_normal(want_y.shape).astype(dtype)
    want = loops.conv2d_backward(grad_y, x, w, stride, padding)
    with fastconv.use_backend("numba"):
        close(F.conv2d(x, w, b, stride, padding), want_y, dtype)
        for g, e in zip(F.conv2d_backward(grad_y, x, w, stride, padding), want):
            close(g, e, dtype)


@pytest.mark.parametrize("algorithm", ALGORITHMS, indirect=True)
@pytest.mark.parametrize("shape, w_shape, padding", [
    ((50, 1, 28, 28), (4, 1, 5, 5), 2),        # report 000, conv 1
    ((50, 4, 14, 14), (8, 4, 5, 5), 2),        # report 000, conv 2
    ((3, 32, 16, 16), (64, 32, 5, 5), 2),      # report 003 shapes, smaller batch
    ((3, 128, 8, 8), (128, 128, 3, 3), 1),
    ((5, 7, 9, 40), (3, 7, 1, 7), (0, 3)),     # wide rows, 1-row kernel
])
def test_report_shapes_agree(algorithm, shape, w_shape, padding):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) * 0.2).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    want_y = on("numpy", F.conv2d, x, w, b, 1, padding)
    grad_y = rng.standard_normal(want_y.shape).astype(np.float32)
    want = on("numpy", F.conv2d_backward, grad_y, x, w, 1, padding)
    with fastconv.use_backend("numba"):
        close(F.conv2d(x, w, b, 1, padding), want_y, np.float32)
        for g, e in zip(F.conv2d_backward(grad_y, x, w, 1, padding), want):
            close(g, e, np.float32)


# ------------------------------------------------------------------ im2col / col2im
@pytest.mark.parametrize("seed", SEEDS)
def test_im2col_col2im_agree_with_numpy(seed, dtype):
    x, w, _, stride, padding, rng = conv_case(seed, dtype)
    kernel = w.shape[2:]
    want = on("numpy", F.im2col, x, kernel, stride, padding)
    got = on("numba", F.im2col, x, kernel, stride, padding)
    np.testing.assert_array_equal(got, want)                  # a pure gather: exact
    cols = rng.standard_normal(want.shape).astype(dtype)
    close(on("numba", F.col2im, cols, x.shape[2:], kernel, stride, padding),
          on("numpy", F.col2im, cols, x.shape[2:], kernel, stride, padding), dtype)


# ------------------------------------------------------------------ pooling
def pool_case(seed, dtype):
    x, w, _, stride, padding, rng = conv_case(seed, dtype)
    kh, kw = w.shape[2:]
    padding = (min(padding[0], kh // 2), min(padding[1], kw // 2))
    kh = min(kh, x.shape[2] + 2 * padding[0])
    kw = min(kw, x.shape[3] + 2 * padding[1])
    stride = None if seed % 4 == 1 else stride
    return x, (kh, kw), stride, padding, rng


@pytest.mark.parametrize("seed", SEEDS)
def test_pooling_agrees_with_numpy(seed, dtype):
    x, kernel, stride, padding, rng = pool_case(seed, dtype)
    want_avg = on("numpy", F.avg_pool2d, x, kernel, stride, padding)
    want_max, want_idx = on("numpy", F.max_pool2d, x, kernel, stride, padding)
    grad_y = rng.standard_normal(want_avg.shape).astype(dtype)
    with fastconv.use_backend("numba"):
        close(F.avg_pool2d(x, kernel, stride, padding), want_avg, dtype)
        close(F.avg_pool2d_backward(grad_y, x.shape, kernel, stride, padding),
              on("numpy", F.avg_pool2d_backward, grad_y, x.shape, kernel, stride, padding), dtype)
        y, idx = F.max_pool2d(x, kernel, stride, padding)
        np.testing.assert_array_equal(y, want_max)
        assert idx.dtype == np.int64
        np.testing.assert_array_equal(idx, want_idx)
        close(F.max_pool2d_backward(grad_y, idx, x.shape, kernel, stride, padding),
              on("numpy", F.max_pool2d_backward, grad_y, want_idx, x.shape, kernel, stride, padding),
              dtype)


@pytest.mark.parametrize("seed", range(6))
def test_max_pool_indices_on_ties(seed, dtype):
    """Few distinct values: many ties, which must all go to the first maximum."""
    x, kernel, stride, padding, _ = pool_case(seed, dtype)
    rng = np.random.default_rng(seed)
    x = rng.integers(-1, 2, size=x.shape).astype(dtype)
    want_y, want_idx = on("numpy", F.max_pool2d, x, kernel, stride, padding)
    y, idx = on("numba", F.max_pool2d, x, kernel, stride, padding)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(y, want_y)
    loop_y, loop_idx = loops.max_pool2d(x, kernel, stride or kernel, padding)
    np.testing.assert_array_equal(idx, loop_idx)


@pytest.mark.parametrize("height,width", [(2, 2), (3, 5), (7, 9), (12, 12), (5, 31), (6, 32), (4, 33), (9, 47)])
def test_max_pool_2x2_short_and_long_rows(height, width, dtype):
    """The 2x2 stride-2 path, rows shorter and longer than a vector: odd sizes drop
    the last row / column; ties, NaN and inf."""
    rng = np.random.default_rng(height * 100 + width)
    x = rng.integers(-2, 3, size=(3, 2, height, width)).astype(dtype)
    x[rng.random(x.shape) < 0.05] = np.inf
    y, idx = on("numba", F.max_pool2d, x, 2)
    loop_y, loop_idx = loops.max_pool2d(x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(idx, loop_idx)
    np.testing.assert_array_equal(y, loop_y)
    x[rng.random(x.shape) < 0.05] = np.nan       # the first NaN of a window wins, as np.argmax
    want_y, want_idx = on("numpy", F.max_pool2d, x, 2)
    y, idx = on("numba", F.max_pool2d, x, 2)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(y, want_y)


def test_max_pool_nan_and_inf(dtype):
    x = np.array([[[[1, np.nan, 3, np.nan], [-np.inf, -np.inf, np.inf, 2],
                    [0, 0, -1, -2], [5, np.nan, 7, 7]]]], dtype=dtype)
    want_y, want_idx = on("numpy", F.max_pool2d, x, 2)
    y, idx = on("numba", F.max_pool2d, x, 2)
    np.testing.assert_array_equal(idx, want_idx)              # first NaN wins, as np.argmax
    np.testing.assert_array_equal(y, want_y)


# ------------------------------------------------------------------ loss
@pytest.mark.parametrize("seed", range(6))
def test_softmax_cross_entropy_agrees_with_numpy(seed, dtype):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 70)), int(rng.integers(2, 30))
    logits = (rng.standard_normal((n, k)) * 10 ** rng.uniform(-1, 2)).astype(dtype)
    labels = rng.integers(0, k, n) if seed % 2 else rng.dirichlet(np.ones(k), n)
    want_loss, want_grad = on("numpy", F.softmax_cross_entropy, logits, labels)
    loss, grad = on("numba", F.softmax_cross_entropy, logits, labels)
    close(loss, want_loss, dtype)
    close(grad, want_grad, dtype)
    assert grad.dtype == dtype


def test_softmax_cross_entropy_huge_logits(dtype):
    logits = np.array([[1e4, -1e4, 0], [3e4, 3e4, -3e4]], dtype=dtype)
    loss, grad = on("numba", F.softmax_cross_entropy, logits, np.array([1, 0]))
    assert np.isfinite(loss) and np.isfinite(grad).all()
    close(loss, on("numpy", F.softmax_cross_entropy, logits, np.array([1, 0]))[0], dtype)


# ------------------------------------------------------------------ specialisations
def test_one_specialisation_per_dtype():
    """Shapes, strides and read-only inputs never add a compiled specialisation."""
    rng = np.random.default_rng(3)
    with fastconv.use_backend("numba"):
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((2, 3, 9, 7)).astype(dtype)
            w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
            F.conv2d(x, w, None, 1, 1)
        before = NB.compiled_signatures()
        for shape, stride, padding in [((1, 3, 12, 5), 2, 0), ((3, 3, 6, 6), (1, 3), (2, 1))]:
            x = rng.standard_normal(shape).astype(np.float32)
            x.flags.writeable = False
            w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
            for algo in ALGORITHMS:
                NB.set_conv_algorithm(algo)
                try:
                    y = F.conv2d(x, w, None, stride, padding)
                    F.conv2d_backward(y, x, w, stride, padding)
                finally:
                    NB.set_conv_algorithm(None)
            F.max_pool2d(x, 2)
        after = NB.compiled_signatures()
    for name, count in after.items():
        assert count <= 2, (name, count)
        if name in before:
            assert count == before[name], name


# ------------------------------------------------------------------ algorithm choice
def test_algorithm_heuristic_for_the_reports(monkeypatch):
    # the rule itself: in "auto" an earlier test's tuned winner would answer instead
    monkeypatch.setenv("FASTCONV_CONV_ALGO", "heuristic")
    for x_shape, w_shape in [((50, 1, 28, 28), (4, 1, 5, 5)), ((50, 4, 14, 14), (8, 4, 5, 5))]:
        for pass_ in ("forward", "backward"):
            assert NB.conv_algorithm(x_shape, w_shape, 1, 2, np.float32, pass_) == "direct"
    for x_shape, w_shape, pad in [((64, 32, 32, 32), (64, 32, 5, 5), 2),
                                  ((64, 64, 16, 16), (64, 64, 3, 3), 1),
                                  ((64, 64, 16, 16), (128, 64, 3, 3), 1)]:
        for pass_ in ("forward", "backward"):
            assert NB.conv_algorithm(x_shape, w_shape, 1, pad, np.float32, pass_) == "shifted"
            assert NB.conv_algorithm(x_shape, w_shape, 2, pad, np.float32, pass_) == "gemm"
            if NB.get_num_threads() > 1:        # a batch smaller than the thread count
                batch_1 = (1, *x_shape[1:])
                assert NB.conv_algorithm(batch_1, w_shape, 1, pad, np.float32, pass_) == "gemm"
    for pass_ in ("forward", "backward"):           # 3x3, stride 1, >= 96 channels
        assert NB.conv_algorithm((64, 128, 8, 8), (128, 128, 3, 3), 1, 1, np.float32, pass_) == "winograd"
        assert NB.conv_algorithm((64, 128, 8, 8), (128, 128, 3, 3), 2, 1, np.float32, pass_) == "gemm"


def test_algorithm_override_by_env_and_setter(monkeypatch):
    shape, w_shape = (50, 1, 28, 28), (4, 1, 5, 5)
    monkeypatch.setenv("FASTCONV_CONV_ALGO", "gemm")           # read at call time
    assert NB.conv_algorithm(shape, w_shape, 1, 2) == "gemm"
    monkeypatch.setenv("FASTCONV_CONV_ALGO", "direct")
    assert NB.conv_algorithm(shape, w_shape, 1, 2) == "direct"
    NB.set_conv_algorithm("gemm")                               # the setter wins
    try:
        assert NB.conv_algorithm(shape, w_shape, 1, 2) == "gemm"
        assert NB.get_conv_algorithm_mode() == "gemm"
    finally:
        NB.set_conv_algorithm(None)
    monkeypatch.setenv("FASTCONV_CONV_ALGO", "fastest")
    with pytest.raises(EnvironmentVariableError, match="FASTCONV_CONV_ALGO"):
        NB.conv_algorithm(shape, w_shape, 1, 2)
    with pytest.raises(ValueError, match="valid: auto, benchmark, heuristic, direct, gemm, shifted, shifted_rows, winograd"):
        NB.set_conv_algorithm("fft")
    with pytest.raises(ValueError, match="pass_"):
        NB.conv_algorithm(shape, w_shape, 1, 2, pass_="sideways")


def test_benchmark_mode_times_once_and_records(monkeypatch):
    monkeypatch.setenv("FASTCONV_CONV_ALGO", "benchmark")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8, 16, 16)).astype(np.float32)      # big enough to be timed
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    before = NB.autotune_stats()["problems"]
    want = on("numpy", F.conv2d, x, w, None, 1, 1)
    close(on("numba", F.conv2d, x, w, None, 1, 1), want, np.float32)
    key = ("forward", x.shape, w.shape, (1, 1), (1, 1), "float32")
    chosen = NB.last_conv_algorithms[key]
    assert chosen in ALGORITHMS
    assert NB.conv_algorithm(x.shape, w.shape, 1, 1, np.float32) == chosen
    assert NB.autotune_stats()["problems"] == before + 1
    on("numba", F.conv2d, x, w, None, 1, 1)                           # timed once only
    assert NB.autotune_stats()["problems"] == before + 1


# ------------------------------------------------------------------ threads
def test_num_threads_round_trip():
    previous = NB.get_num_threads()
    try:
        assert NB.set_num_threads(1) == previous
        assert NB.get_num_threads() == 1
        x = np.random.default_rng(0).standard_normal((4, 2, 9, 9)).astype(np.float32)
        w = np.ones((3, 2, 3, 3), np.float32)
        close(on("numba", F.conv2d, x, w, None, 1, 1), on("numpy", F.conv2d, x, w, None, 1, 1),
              np.float32)
        with pytest.raises(ValueError):
            NB.set_num_threads(0)
        with pytest.raises(TypeError):
            NB.set_num_threads(1.5)
    finally:
        NB.set_num_threads(previous)
    assert NB.get_num_threads() == previous


# ------------------------------------------------------------------ batch norm
@pytest.mark.parametrize("shape", [(64, 32, 16, 16), (64, 256), (8, 3, 33, 7), (2, 130, 5)])
def test_batch_norm_agrees_with_numpy(shape, dtype):
    """Larger shapes than the loop tests: several channel chunks, float64 sums."""
    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 4 + 10).astype(dtype)      # a mean far from 0
    weight = rng.standard_normal(shape[1]).astype(dtype)
    bias = rng.standard_normal(shape[1]).astype(dtype)
    grad_y = rng.standard_normal(shape).astype(dtype)
    want = on("numpy", F.batch_norm, x, weight, bias)
    got = on("numba", F.batch_norm, x, weight, bias)
    for g, e, name in zip(got, want, ("y", "mean", "var")):
        close(g, e, dtype, name)
    want = on("numpy", F.batch_norm_backward, grad_y, x, want[1], want[2], weight)
    got = on("numba", F.batch_norm_backward, grad_y, x, got[1], got[2], weight)
    for g, e, name in zip(got, want, ("grad_x", "grad_weight", "grad_bias")):
        close(g, e, dtype, name)


@pytest.fixture
def counted_columns(monkeypatch):
    """Run the pool kernels as Python (``py_func``) with `_columns` counting its
    calls, one per visited window offset; more than 1,000 fails the test (a loop over
    a 2**40-wide window would otherwise run for hours)."""
    from fastconv.backends.numba_backend.kernels import pool as P

    calls = []
    real = P._columns.py_func

    def counting(*args):
        calls.append(args)
        if len(calls) > 1000:
            raise AssertionError("the pool loops walk the window, not the input")
        return real(*args)

    monkeypatch.setattr(P, "_columns", counting)
    return P, calls


def test_pool_loops_are_bounded_by_the_input_not_the_window(counted_columns):
    P, calls = counted_columns
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    big, half = 2**40, 2**39          # every window covers the whole (padded) input
    out = np.empty((1, 1, 5, 5), np.float32)
    where = np.empty((1, 1, 5, 5), np.int64)
    P.max_pool2d_forward.py_func(x, big, big, 1, 1, half, half, out, where, 1)
    assert np.all(out == x.max()) and np.all(where == x.argmax())
    P.avg_pool2d_forward.py_func(x, 1, big, 1, 1, 0, half, out[:, :, :4], 1)
    np.testing.assert_allclose(out[0, 0, :4], np.repeat(x[0, 0].sum(axis=1, keepdims=True) / big, 5, 1))
    grad_x = np.empty_like(x)
    P.avg_pool2d_backward.py_func(np.ones((1, 1, 4, 5), np.float32), 1, big, 1, 1, 0, half, grad_x, 1)
    np.testing.assert_allclose(grad_x, 5 / big)
    assert 0 < len(calls) <= 1000
