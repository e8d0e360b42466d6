"""The numba backend's issue-13 kernels (direct depthwise, per-group GEMM, dilated
unfold, transposed convolution) against the NumPy reference on larger shapes than
the loop tests, plus specialisation counts, odd inputs and random bad arguments."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("numba")

import fastconv  # noqa: E402
import fastconv.functional as F  # noqa: E402
from fastconv.backends import numba_backend as NB  # noqa: E402
from fastconv.backends.numba_backend import depthwise as depthwise_plan  # noqa: E402
from fastconv.backends.numba_backend import gemm  # noqa: E402
from fastconv.backends.numba_backend import grouped as grouped_plan  # noqa: E402
from fastconv.backends.numba_backend.kernels import depthwise, grouped, phases, unfold_dilated  # noqa: E402
from tests import loops  # noqa: E402

GENERAL_KERNEL_MODULES = (depthwise, grouped, phases, unfold_dilated)


@pytest.fixture(scope="module", autouse=True)
def compiled_kernels():
    NB.warmup((np.float32, np.float64), jobs=2)


def close(got, want, dtype, what=""):
    rtol = 2e-5 if np.dtype(dtype) == np.float32 else 1e-10
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


def both(fn, *args, **kwargs):
    """(numba result, numpy result) of one functional call."""
    out = []
    for name in ("numba", "numpy"):
        with fastconv.use_backend(name):
            out.append(fn(*args, **kwargs))
    return out


CONV_CASES = [
    # x shape, w shape, stride, padding, dilation, groups
    ((3, 16, 20, 18), (16, 1, 3, 3), 1, 1, 1, 16),          # MobileNet depthwise
    ((2, 8, 17, 15), (16, 1, 3, 3), 2, 1, 1, 8),            # stride 2, multiplier 2
    ((2, 6, 16, 19), (12, 1, 5, 3), 1, (2, 1), (2, 3), 6),  # dilated depthwise, 5x3
    ((5, 12, 11, 13), (12, 3, 3, 3), 1, 1, 1, 4),           # grouped
    ((2, 8, 15, 14), (10, 8, 3, 3), (2, 1), 2, 2, 1),       # dilated, groups 1
    ((1, 6, 9, 10), (4, 3, 2, 4), 3, 0, (1, 2), 2),         # N = 1, stride 3
    ((3, 8, 7, 9), (12, 2, 1, 1), 1, 0, 1, 4),              # grouped 1x1: no unfold
    ((2, 8, 7, 9), (12, 4, 1, 1), 2, 1, 1, 2),              # grouped 1x1, strided and padded
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[f"case{i}" for i in range(len(CONV_CASES))])
def test_conv_matches_numpy(dtype, case):
    x_shape, w_shape, stride, padding, dilation, groups = case
    rng = np.random.default_rng(len(x_shape) + w_shape[0])
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    args = (stride, padding, dilation, groups)
    y, want = both(F.conv2d, x, w, b, *args)
    close(y, want, dtype, "y")
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    for got, wnt, name in zip(*both(F.conv2d_backward, grad_y, x, w, *args), ("grad_x", "grad_w", "grad_b")):
        close(got, wnt, dtype, name)
    got, wnt = both(F.conv2d_backward_weights, grad_y, x, w, *args)
    close(got[0], wnt[0], dtype, "weights only")


TRANSPOSE_CASES = [
    # x shape, w shape, stride, padding, output_padding, dilation, groups
    ((4, 32, 8, 8), (32, 16, 4, 4), 2, 1, 0, 1, 1),          # DCGAN generator layer
    ((2, 12, 7, 9), (12, 1, 3, 3), 2, 1, 1, 1, 12),          # depthwise-transposed
    ((2, 12, 7, 9), (12, 1, 3, 3), 1, 1, 0, 2, 6),           # multiplier 2, dilated
    ((3, 8, 6, 5), (8, 3, 3, 2), (2, 3), (1, 0), (1, 2), (2, 1), 2),
    ((1, 4, 5, 5), (4, 2, 2, 2), 1, 0, 1, 2, 1),             # output_padding from dilation
]


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=[f"case{i}" for i in range(len(TRANSPOSE_CASES))])
def test_conv_transpose_matches_numpy(dtype, case):
    x_shape, w_shape, *args = case
    rng = np.random.default_rng(w_shape[0])
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * args[-1]).astype(dtype)
    y, want = both(F.conv_transpose2d, x, w, b, *args)
    close(y, want, dtype, "y")
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    for got, wnt, name in zip(*both(F.conv_transpose2d_backward, grad_y, x, w, *args),
                              ("grad_x", "grad_w", "grad_b")):
        close(got, wnt, dtype, name)


@pytest.mark.parametrize("seed", range(16))
def test_depthwise_stacks_against_loops(monkeypatch, seed, dtype):
    """Depthwise on stacks of a few planes (``_STACK_POSITIONS`` shrunk): many channel
    blocks, a short last one, a thread's range of (block, image) items that starts or
    ends inside a block, multipliers 1-3, any kernel, padding, dilation, stride 1
    (shared padding), (2, 2) (its flat grid) and others up to 3 (stride phases,
    column stride 2 in vectors)."""
    rng = np.random.default_rng(300 + seed)
    kh, kw = (int(v) for v in rng.integers(1, 6, size=2))
    dh, dw = (int(v) for v in rng.integers(1, 3, size=2))
    stride = [(2, 2), (1, 1), tuple(int(v) for v in rng.integers(1, 4, size=2)), (1, 1)][seed % 4]
    ph, pw = int(rng.integers(0, dh * (kh - 1) + 3)), int(rng.integers(0, dw * (kw - 1) + 3))
    height = int(rng.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 11))
    width = int(rng.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 40 if seed % 4 == 0 else 11))
    n, c_in, mult = int(rng.integers(1, 4)), int(rng.integers(3, 12)), int(rng.integers(1, 4))
    layout = depthwise_plan._stack_layout((height, width), (kh, kw), stride, (ph, pw), (dh, dw),
                                          np.dtype(dtype).itemsize)
    entry = max(layout.in_stride, layout.out_stride * mult)
    monkeypatch.setattr(depthwise_plan, "_STACK_POSITIONS", entry * int(rng.integers(1, 3)))
    # three ranges of items whatever the work: some start or end inside a block
    monkeypatch.setattr(depthwise_plan.rt, "chunks", lambda items, work, min_work=0: min(items, 3))
    x = rng.standard_normal((n, c_in, height, width)).astype(dtype)
    w = rng.standard_normal((c_in * mult, 1, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_in * mult).astype(dtype)
    args = (stride, (ph, pw), (dh, dw), c_in)
    grad_y, want = _depthwise_against_loops(rng, x, w, b, args, dtype)
    with fastconv.use_backend("numba"):
        if mult == 1:      # the transposed convolution of a depthwise kernel: its input gradient + bias
            # the output_padding that gives back x's size (always < stride)
            output_padding = tuple((size + 2 * p - d * (k - 1) - 1) % s_ for size, k, s_, p, d in
                                   zip((height, width), (kh, kw), stride, (ph, pw), (dh, dw)))
            got = F.conv_transpose2d(grad_y, w, b, stride, (ph, pw), output_padding, (dh, dw), c_in)
            close(got, want[0] + b.astype(np.float64)[:, None, None], dtype, "transposed")


@pytest.mark.parametrize("height, width", [(9, 37), (6, 70), (5, 12)])
def test_stride2_depthwise_by_rows_against_loops(height, width, dtype):
    """Stride (2, 2) runs over each output row's vectors where they fit in a grid row
    (an odd or even number per row: the backward's two dot chains), else over the
    flat grid; both against loops."""
    lanes = depthwise_plan._lanes(np.dtype(dtype).itemsize)
    layout = depthwise_plan._stack_layout((height, width), (3, 3), (2, 2), (1, 1), (1, 1),
                                          np.dtype(dtype).itemsize)
    if width >= 4 * lanes:      # outputs half a grid row long, whole vectors of them: by rows
        assert layout.pair_vec == (height + 1) // 2 * layout.row_vec < layout.out_stride // lanes
    rng = np.random.default_rng(height * width)
    x = rng.standard_normal((2, 3, height, width)).astype(dtype)
    w = rng.standard_normal((6, 1, 3, 3)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    _depthwise_against_loops(rng, x, w, b, ((2, 2), (1, 1), (1, 1), 3), dtype)


def _depthwise_against_loops(rng, x, w, b, args, dtype):
    """Forward and backward on numba against loops; returns (grad_y, the loops' gradients)."""
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    with fastconv.use_backend("numba"):
        y = F.conv2d(x, w, b, *args)
        close(y, loops.conv2d_general(x64, w64, b64, *args), dtype, "y")
        grad_y = rng.standard_normal(y.shape).astype(dtype)
        want = loops.conv2d_general_backward(grad_y.astype(np.float64), x64, w64, *args)
        for got, wnt, name in zip(F.conv2d_backward(grad_y, x, w, *args), want, ("grad_x", "grad_w", "grad_b")):
            close(got, wnt, dtype, name)
    return grad_y, want


@pytest.mark.parametrize("seed", range(12))
def test_transposed_batches_and_channel_blocks_against_loops(monkeypatch, seed, dtype):
    """The transposed convolution's work items: several images per GEMM (a short last
    batch), the channels split into blocks (a short last one), three ranges of items
    that start and end inside a batch, groups, strides, dilation, output_padding, and
    both orientations of the weight gradient."""
    rng = np.random.default_rng(400 + seed)
    groups = int(rng.integers(1, 3))
    n, c_in, c_out = int(rng.integers(1, 10)), groups * int(rng.integers(2, 6)), groups * int(rng.integers(2, 6))
    kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
    stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
    dilation = tuple(int(v) for v in rng.integers(1, 3, size=2))
    padding = tuple(int(rng.integers(0, d * (k - 1) + 1)) for k, d in zip((kh, kw), dilation))
    output_padding = tuple(int(rng.integers(0, max(s_, d))) for s_, d in zip(stride, dilation))
    x = rng.standard_normal((n, c_in, *(int(v) for v in rng.integers(1, 7, size=2)))).astype(dtype)
    w = rng.standard_normal((c_in, c_out // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)

    def random_plan(n, groups, channels, grid):
        batch, block = int(rng.integers(1, n + 1)), int(rng.integers(1, channels + 1))
        return batch, block, groups * -(-n // batch) * -(-channels // block)

    monkeypatch.setattr(grouped_plan, "_transpose_plan", random_plan)
    monkeypatch.setattr(grouped_plan, "_chunks", lambda items, flops: min(items, 3))
    # the weight gradient's two orientations (as cols @ x.T, then summed back transposed)
    monkeypatch.setattr(grouped_plan, "_TRANSPOSED_WEIGHT_GRAD_COLUMNS", (0, 10 ** 9)[seed % 2])
    args = (stride, padding, output_padding, dilation, groups)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    want = loops.conv_transpose2d(x64, w64, b64, *args)
    if want.size == 0:
        pytest.skip("empty output")
    with fastconv.use_backend("numba"):
        close(F.conv_transpose2d(x, w, b, *args), want, dtype, "y")
        grad_y = rng.standard_normal(want.shape).astype(dtype)
        wants = loops.conv_transpose2d_backward(grad_y.astype(np.float64), x64, w64, *args)
        for got, wnt, name in zip(F.conv_transpose2d_backward(grad_y, x, w, *args), wants,
                                  ("grad_x", "grad_w", "grad_b")):
            close(got, wnt, dtype, name)


@pytest.mark.parametrize("seed", range(8))
def test_transposed_backward_plans_against_loops(seed, dtype):
    """Both plans of the transposed backward (`select.PLANS`): the fused kernel and
    the composition of a convolution and a weight gradient, grouped and dilated ones
    included, wherever the composition applies (output_padding < stride)."""
    from fastconv.backends.numba_backend import general

    rng = np.random.default_rng(500 + seed)
    groups = int(rng.integers(1, 3))
    n, c_in, c_out = int(rng.integers(1, 5)), groups * int(rng.integers(1, 5)), groups * int(rng.integers(2, 5))
    kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
    stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
    dilation = (1, 1) if seed % 2 else tuple(int(v) for v in rng.integers(1, 3, size=2))
    padding = tuple(int(rng.integers(0, d * (k - 1) + 1)) for k, d in zip((kh, kw), dilation))
    output_padding = tuple(int(rng.integers(0, s_)) for s_ in stride)
    x = rng.standard_normal((n, c_in, *(int(v) for v in rng.integers(2, 9, size=2)))).astype(dtype)
    w = rng.standard_normal((c_in, c_out // groups, kh, kw)).astype(dtype)
    args = (stride, padding, output_padding, dilation, groups)
    out_shape = loops.conv_transpose2d(x.astype(np.float64), w.astype(np.float64), None, *args).shape
    grad_y = rng.standard_normal(out_shape).astype(dtype)
    wants = loops.conv_transpose2d_backward(grad_y.astype(np.float64), x.astype(np.float64),
                                            w.astype(np.float64), *args)
    with fastconv.use_backend("numba"):
        plans = {"fused": grouped_plan.transpose_backward(grad_y, x, w, stride, padding, dilation, groups),
                 "composed": general._composed_transpose_backward(grad_y, x, w, stride, padding,
                                                                  dilation, groups)}
    for plan, grads in plans.items():
        for got, wnt, name in zip(grads, wants, ("grad_x", "grad_w", "grad_b")):
            assert got.dtype == dtype
            close(got, wnt, dtype, f"{plan} {name}")


@pytest.mark.parametrize("seed", range(8))
def test_stride1_transposed_forward_plans_against_loops(seed, dtype):
    """Both plans of a stride-1 transposed convolution: the fused kernel and the
    convolution by the flipped, per-group transposed kernel with padding d*(k-1) - p
    (on the convolution engine; grouped and dilated ones on the general kernels)."""
    from fastconv.backends.numba_backend import general

    rng = np.random.default_rng(600 + seed)
    groups = int(rng.integers(1, 4))
    n, c_in, c_out = int(rng.integers(1, 4)), groups * int(rng.integers(1, 5)), groups * int(rng.integers(1, 5))
    kh, kw = (int(v) for v in rng.integers(1, 6, size=2))
    dilation = (1, 1) if seed % 2 else tuple(int(v) for v in rng.integers(1, 3, size=2))
    padding = tuple(int(rng.integers(0, d * (k - 1) + 1)) for k, d in zip((kh, kw), dilation))
    x = rng.standard_normal((n, c_in, *(int(v) for v in rng.integers(1, 12, size=2)))).astype(dtype)
    w = rng.standard_normal((c_in, c_out // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    args = ((1, 1), padding, (0, 0), dilation, groups)
    want = loops.conv_transpose2d(*(a.astype(np.float64) for a in (x, w, b)), *args)
    conv_padding = general._stride1_conv_padding(w.shape, *args[:4])
    assert conv_padding == tuple(d * (k - 1) - p for k, p, d in zip((kh, kw), padding, dilation))
    with fastconv.use_backend("numba"):
        composed = general._composed_transpose(x, general._as_conv_weights(w, groups), b, conv_padding,
                                               dilation, groups)
        fused = grouped_plan.transpose(x, w, b, (1, 1), padding, dilation, groups, want.shape[2:])
    for name, got in (("composed", composed), ("fused", fused)):
        assert got.dtype == dtype
        close(got, want, dtype, name)
    # no convolution to compose: a stride, an output_padding, a padding past the kernel
    assert general._stride1_conv_padding(w.shape, (2, 1), padding, (0, 0), dilation) is None
    assert general._stride1_conv_padding(w.shape, (1, 1), padding, (0, 1), (2, 2)) is None
    assert general._stride1_conv_padding(w.shape, (1, 1), (dilation[0] * (kh - 1) + 1, 0), (0, 0),
                                         dilation) is None


def test_transposed_backward_plan_is_tuned_once_and_cached(monkeypatch, tmp_path):
    """In ``auto`` mode the first call of a problem times both plans and keeps the
    winner in the cache file; ``heuristic`` mode runs the fused kernel; an
    output_padding the composition cannot give runs it without any timing.  The
    same for the forward at stride 1; at stride 2 it has one plan."""
    from fastconv.backends.numba_backend import select

    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    select.clear_autotune_cache(memory_only=True)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 32, 8, 8)).astype(np.float32)       # 4 MFLOP: worth timing
    w = rng.standard_normal((32, 16, 4, 4)).astype(np.float32)
    grad_y = rng.standard_normal((4, 16, 16, 16)).astype(np.float32)
    k = select.key("transpose_backward", grad_y.shape, w.shape, (2, 2), (1, 1), np.float32)
    calls = []
    real = select._time_candidates

    def timed(names, run):             # the plans' timings (not their convolutions' own)
        if set(names) <= set(select.PLANS):
            calls.append(names)
        return real(names, run)

    monkeypatch.setattr(select, "_time_candidates", timed)
    with fastconv.use_backend("numba"):
        for _ in range(2):
            F.conv_transpose2d_backward(grad_y, x, w, 2, 1)
        assert calls == [["fused", "composed"]]
        winner = select.last_conv_algorithms[k]
        assert winner in select.PLANS
        assert winner in select._read_cache(select.autotune_cache()).values()
        select.set_conv_algorithm("heuristic")
        try:
            F.conv_transpose2d_backward(grad_y, x, w, 2, 1)
            assert select.last_conv_algorithms[k] == "fused"
        finally:
            select.set_conv_algorithm(None)
        grad_y = rng.standard_normal((4, 16, 15, 15)).astype(np.float32)
        grads = F.conv_transpose2d_backward(grad_y, x, w, 1, 0, 1, 2)     # output_padding 1 >= stride 1
        assert len(calls) == 1 and grads[0].shape == x.shape
        F.conv_transpose2d(x, w, None, 2, 1)        # stride 2: the fused kernel, untimed
        assert len(calls) == 1
        for _ in range(2):                          # stride 1: both plans timed, once
            F.conv_transpose2d(x, w, None, 1, 1)
        assert calls[1:] == [["fused", "composed"]]
        k = select.key("transpose_forward", x.shape, (16, 32, 4, 4), (1, 1), (2, 2), np.float32)
        assert select.last_conv_algorithms[k] in select.PLANS
    select.clear_autotune_cache(memory_only=True)


def test_large_multipliers_leave_the_depthwise_kernels(monkeypatch):
    """Depthwise layers with many outputs per input channel run the GEMMs per group
    (and the numpy backend's results): forward and transposed, with and without BLAS."""
    from fastconv.backends.numba_backend import general

    assert general._depthwise_runs((1, 4, 9, 9), (32, 1, 3, 3), 4)          # multiplier 8
    assert not general._depthwise_runs((1, 4, 9, 9), (36, 1, 3, 3), 4)      # 9
    assert general._depthwise_transpose_runs((8, 1, 4, 4), 4)                # 2
    assert not general._depthwise_transpose_runs((12, 1, 4, 4), 4)           # 3
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 10))
    w = rng.standard_normal((36, 1, 3, 3))
    y, want = both(F.conv2d, x, w, None, 1, 1, 1, 3)
    close(y, want, np.float64, "y")
    for got, wnt in zip(*both(F.conv2d_backward, y, x, w, 1, 1, 1, 3)):
        close(got, wnt, np.float64)
    xt = rng.standard_normal((2, 12, 5, 6))
    wt = rng.standard_normal((12, 1, 4, 4))
    yt, want = both(F.conv_transpose2d, xt, wt, None, 2, 1, 0, 1, 4)
    close(yt, want, np.float64, "transposed")
    for got, wnt in zip(*both(F.conv_transpose2d_backward, yt, xt, wt, 2, 1, 0, 1, 4)):
        close(got, wnt, np.float64)
    monkeypatch.setattr(gemm, "available", lambda: False)
    assert general._depthwise_runs((1, 4, 9, 9), (36, 1, 3, 3), 4)
    assert general._depthwise_transpose_runs((12, 1, 4, 4), 4)


@pytest.mark.parametrize("seed", range(4))
def test_weight_gradient_parts_sum_back_transposed(seed, dtype):
    """`sum_parts_transposed`: the threads' (K, Og) parts summed into (Og, K), for
    sizes across and inside its 32 x 32 tiles, split over 1-3 chunks."""
    rng = np.random.default_rng(seed)
    chunks, groups = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    depth, og = int(rng.integers(1, 100)), int(rng.integers(1, 70))
    parts = rng.standard_normal((chunks, groups, depth, og)).astype(dtype)
    out = np.full((groups, og, depth), np.nan, dtype=dtype)
    grouped.sum_parts_transposed(parts, out, int(rng.integers(1, 4)))
    np.testing.assert_allclose(out, parts.sum(axis=0).transpose(0, 2, 1), rtol=1e-6)


def test_transpose_plan_widens_gemms_and_fills_threads(monkeypatch):
    """Images batched just far enough for ``_MIN_GEMM_COLUMNS`` columns; channel blocks
    only when (group, batch) pairs are fewer than threads, then enough for them all."""
    monkeypatch.setattr(grouped_plan.rt, "get_num_threads", lambda: 4)
    minimum = grouped_plan._MIN_GEMM_COLUMNS
    for n, groups, channels, grid in itertools.product((1, 2, 7, 32), (1, 3), (1, 5, 64), (20, 72, 272, 900)):
        batch, block, items = grouped_plan._transpose_plan(n, groups, channels, grid)
        pairs = groups * -(-n // batch)
        assert 1 <= batch <= n and (batch == n or batch * grid >= minimum > (batch - 1) * grid)
        assert items == pairs * -(-channels // block) and 1 <= block <= channels
        assert block == channels if pairs >= 4 else items >= min(4, pairs * channels)


def test_grouped_layers_run_blocked_where_its_blocks_fill(monkeypatch):
    from fastconv.backends.numba_backend import blocked, general

    monkeypatch.setattr(blocked, "worth_timing", lambda: True)
    assert general._blocked_runs((64, 64, 3, 3), 1)           # dilated, no groups
    assert general._blocked_runs((32, 8, 3, 3), 4)            # 4 groups of 8 -> 8
    assert not general._blocked_runs((8, 8, 3, 3), 4)         # 2 outputs per group
    assert not general._blocked_runs((32, 2, 3, 3), 4)        # 2 inputs per group
    assert not general._blocked_runs((32, 8, 1, 1), 4)        # grouped 1x1: GEMMs
    monkeypatch.setattr(blocked, "worth_timing", lambda: False)
    assert not general._blocked_runs((64, 64, 3, 3), 1)


def test_without_blas_the_composition_runs(monkeypatch, dtype):
    """No BLAS: grouped/dilated/transposed fall back to `compose` on numba's
    unfold kernels (depthwise keeps its direct kernels)."""
    monkeypatch.setattr(gemm, "available", lambda: False)
    for x_shape, w_shape, stride, padding, dilation, groups in CONV_CASES[3:5]:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        y, want = both(F.conv2d, x, w, None, stride, padding, dilation, groups)
        close(y, want, dtype)
        grads, wants = both(F.conv2d_backward, y, x, w, stride, padding, dilation, groups)
        for got, wnt in zip(grads, wants):
            close(got, wnt, dtype)
    x_shape, w_shape, *args = TRANSPOSE_CASES[0]
    x = np.random.default_rng(1).standard_normal(x_shape).astype(dtype)
    w = np.random.default_rng(2).standard_normal(w_shape).astype(dtype)
    close(*both(F.conv_transpose2d, x, w, None, *args), dtype)


def test_one_specialisation_per_dtype():
    """Shapes, hyper-parameters and read-only inputs never add a specialisation."""
    rng = np.random.default_rng(5)
    with fastconv.use_backend("numba"):
        before = NB.compiled_signatures()
        for x_shape, w_shape, stride, padding, dilation, groups in CONV_CASES:
            x = rng.standard_normal(x_shape).astype(np.float32)
            x.flags.writeable = False
            w = rng.standard_normal(w_shape).astype(np.float32)
            y = F.conv2d(x, w, None, stride, padding, dilation, groups)
            F.conv2d_backward(y, x, w, stride, padding, dilation, groups)
            x_t = F.conv_transpose2d(y, w, None, stride, padding, 0, dilation, groups)
            F.conv_transpose2d_backward(x_t, y, w, stride, padding, 0, dilation, groups)
            F.col2im(F.im2col(x, w_shape[2:], stride, padding, dilation), x_shape[2:],
                     w_shape[2:], stride, padding, dilation)
        after = NB.compiled_signatures()
    names = [name for module in GENERAL_KERNEL_MODULES for name in dir(module) if name in after]
    assert {"depthwise_forward", "depthwise_backward", "grouped_forward", "grouped_backward",
            "grouped_transpose", "grouped_transpose_backward", "im2col_dilated_into",
            "col2im_dilated_from"} <= set(names)
    for name in names:
        assert after[name] <= 2, (name, after[name])
        if before.get(name):
            assert after[name] == before[name], name


def test_odd_layouts_and_read_only_inputs(dtype):
    rng = np.random.default_rng(6)
    base = rng.standard_normal((3, 8, 13, 11)).astype(dtype)
    views = {"strided": base[:, :, ::2, 1::2], "fortran": np.asfortranarray(base)}
    read_only = base.copy()
    read_only.flags.writeable = False
    views["read-only"] = read_only
    w = np.asfortranarray(rng.standard_normal((8, 1, 3, 3)).astype(dtype))
    wg = rng.standard_normal((8, 4, 3, 3)).astype(dtype)[:, :, ::-1]
    for name, x in views.items():
        for weights, groups in ((w, 8), (wg, 2)):
            got, want = both(F.conv2d, x, weights, None, 1, 1, 2, groups)
            close(got, want, dtype, name)
            close(*both(lambda *a: F.conv2d_backward(*a)[1], got, x, weights, 1, 1, 2, groups), dtype, name)
            close(*both(F.conv_transpose2d, x, weights, None, 2, 1, 1, 1, groups), dtype, name)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((2, 8, 9, 9), (8, 1, 3, 3), (8, 4, 3, 3))]
    copies = [a.copy() for a in arrays]
    x, w_dw, w_g = arrays
    with fastconv.use_backend("numba"):
        for w, groups in ((w_dw, 8), (w_g, 2)):
            y = F.conv2d(x, w, None, 1, 1, 2, groups)
            grad = y.copy()
            F.conv2d_backward(y, x, w, 1, 1, 2, groups)
            np.testing.assert_array_equal(y, grad)
            F.conv_transpose2d_backward(F.conv_transpose2d(x, w, None, 2, 1, 1, 1, groups), x, w, 2, 1, 1, 1, groups)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((8, 16, 12, 12))
    cases = [(rng.standard_normal((32, 1, 3, 3)), 16), (rng.standard_normal((16, 4, 3, 3)), 4)]
    with fastconv.use_backend("numba"):
        results = []
        for threads in (1, NB.get_num_threads()):
            previous = NB.set_num_threads(threads)
            try:
                results.append([F.conv2d_backward(F.conv2d(x, w, None, 1, 1, 1, g), x, w, 1, 1, 1, g)
                                for w, g in cases])
            finally:
                NB.set_num_threads(previous)
    for one, many in zip(*results):
        for a, b in zip(one, many):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_random_hyper_parameters_never_crash(seed):
    """Random, often invalid, groups / dilation / padding modes / output_padding:
    numba raises numpy's error or returns numpy's result, never crashes."""
    rng = np.random.default_rng(100 + seed)
    groups = int(rng.integers(0 if seed % 9 == 0 else 1, 4))
    c_in = int(rng.integers(1, 4)) * max(groups, 1) + (1 if seed % 5 == 0 else 0)
    x = rng.standard_normal((int(rng.integers(1, 3)), c_in, *rng.integers(1, 8, size=2))).astype(np.float32)
    kernel = tuple(int(v) for v in rng.integers(1, 5, size=2))
    cg = max(c_in // max(groups, 1), 1)
    w = rng.standard_normal((int(rng.integers(1, 3)) * max(groups, 1), cg, *kernel)).astype(np.float32)
    wt = rng.standard_normal((c_in, int(rng.integers(1, 3)), *kernel)).astype(np.float32)
    dilation = tuple(int(v) for v in rng.integers(0 if seed % 7 == 0 else 1, 4, size=2))
    stride = tuple(int(v) for v in rng.integers(1, 3, size=2))
    padding = ["same", "valid", (int(rng.integers(0, 3)), int(rng.integers(0, 3)))][seed % 3]
    output_padding = tuple(int(v) for v in rng.integers(0, 3, size=2))
    calls = [
        lambda: F.conv2d(x, w, None, stride, padding, dilation, groups),
        lambda: F.conv_transpose2d(x, wt, None, stride, padding if seed % 3 == 2 else 0,
                                   output_padding, dilation, groups),
        lambda: F.im2col(x, kernel, stride, 0, dilation),
    ]
    for call in calls:
        outcome = {}
        for name in ("numpy", "numba"):
            with fastconv.use_backend(name):
                try:
                    outcome[name] = call()
                except (ValueError, TypeError) as error:
                    outcome[name] = (type(error), str(error))
        if isinstance(outcome["numpy"], tuple) or isinstance(outcome["numba"], tuple):
            assert outcome["numba"] == outcome["numpy"]
        else:
            np.testing.assert_allclose(outcome["numba"], outcome["numpy"], rtol=1e-4, atol=1e-4)
