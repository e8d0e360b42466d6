"""Dilated convolution on sub-grids (``numba_backend/dilated.py``) and the plans an
ungrouped dilated problem is timed on (``general._dilated_plans``), against plain
loops on random stride-1 geometries: rectangular kernels 1x1-4x4, dilations 1-5 per
axis (one of them > 1), padding up to 6 (wider than the dilated kernel needs),
output sizes that are and are not multiples of the dilation, N=1, C=1, and no grad_x."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from fastconv.backends.numba_backend import dilated, general, select  # noqa: E402
from tests import loops  # noqa: E402
from tests.test_conv_algorithms import bound, relative_error  # noqa: E402


def random_problem(rng, dtype):
    kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
    dilation = tuple(int(v) for v in rng.integers(1, 6, size=2))
    if dilation == (1, 1):
        dilation = (1, int(rng.integers(2, 6)))
    ph, pw = (int(v) for v in rng.integers(0, 7, size=2))
    reach = [max(1, d * (k - 1) + 1 - 2 * p) for k, d, p in ((kh, dilation[0], ph), (kw, dilation[1], pw))]
    height, width = (int(rng.integers(low, low + 12)) for low in reach)
    n = 1 if rng.random() < 0.3 else int(rng.integers(2, 4))
    c_in = 1 if rng.random() < 0.3 else int(rng.integers(2, 6))
    c_out = 1 if rng.random() < 0.3 else int(rng.integers(2, 7))
    x = rng.standard_normal((n, c_in, height, width)).astype(dtype)
    w = rng.standard_normal((c_out, c_in, kh, kw)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b, (ph, pw), dilation


def want(x, w, b, grad_y, padding, dilation):
    x64, w64, b64, g64 = (a.astype(np.float64) for a in (x, w, b, grad_y))
    y = loops.conv2d_general(x64, w64, b64, (1, 1), padding, dilation, 1)
    return y, loops.conv2d_general_backward(g64, x64, w64, (1, 1), padding, dilation, 1)


@pytest.mark.parametrize("seed", range(12))
def test_sub_grids_match_loops(seed, dtype):
    rng = np.random.default_rng(seed)
    x, w, b, padding, dilation = random_problem(rng, dtype)
    y = dilated.forward(x, w, b, padding, dilation)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    want_y, (want_gx, want_gw, want_gb) = want(x, w, b, grad_y, padding, dilation)
    assert y.dtype == dtype and y.shape == want_y.shape
    assert relative_error(y, want_y) < bound(dtype)

    grad_x, grad_w, grad_b = dilated.backward(grad_y, x, w, padding, dilation, True)
    assert grad_x.shape == x.shape and grad_w.shape == w.shape and grad_b.shape == b.shape
    for got, expected in ((grad_x, want_gx), (grad_w, want_gw), (grad_b, want_gb)):
        assert got.dtype == dtype
        assert relative_error(got, expected) < bound(dtype)
    no_x = dilated.backward(grad_y, x, w, padding, dilation, False)
    assert no_x[0] is None
    assert relative_error(no_x[1], want_gw) < bound(dtype)
    assert relative_error(no_x[2], want_gb) < bound(dtype)


def test_plans_follow_the_problem(monkeypatch):
    monkeypatch.setattr(general.blocked, "worth_timing", lambda: True)
    monkeypatch.setattr(general.gemm, "available", lambda: True)
    assert general._dilated_plans((1, 1), (2, 2), 1) == ("blocked", "shifted", "composed")
    assert general._dilated_plans((2, 1), (2, 2), 1) == ("blocked", "shifted")   # sub-grids: stride 1 only
    assert general._dilated_plans((1, 1), (1, 1), 1) == ()                      # not dilated
    assert general._dilated_plans((1, 1), (2, 2), 2) == ()                      # grouped
    monkeypatch.setattr(general.blocked, "worth_timing", lambda: False)           # no AVX-512
    assert general._dilated_plans((1, 1), (1, 3), 1) == ("shifted", "composed")
    monkeypatch.setattr(general.gemm, "available", lambda: False)                 # no BLAS
    assert general._dilated_plans((1, 1), (3, 1), 1) == ("composed",)
    assert general._dilated_plans((3, 3), (3, 1), 1) == ()


@pytest.mark.parametrize("plan", ["blocked", "shifted", "composed"])
@pytest.mark.parametrize("seed", range(3))
def test_every_plan_runs_the_entry_points(monkeypatch, plan, seed, dtype):
    if plan == "blocked" and not general.blocked.worth_timing():
        pytest.skip("blocked is not timed on a CPU without AVX-512")
    monkeypatch.setattr(general, "_dilated_plans", lambda stride, dilation, groups: (plan,))
    rng = np.random.default_rng(100 + seed)
    x, w, b, padding, dilation = random_problem(rng, dtype)
    y = general.conv2d_general(x, w, b, (1, 1), padding, dilation, 1)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    want_y, expected = want(x, w, b, grad_y, padding, dilation)
    assert relative_error(y, want_y) < bound(dtype)
    got = general.conv2d_general_backward(grad_y, x, w, (1, 1), padding, dilation, 1, True)
    for g, e in zip(got, expected):
        assert relative_error(g, e) < bound(dtype)


def test_autotuning_picks_one_of_the_plans(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    select.set_conv_algorithm("auto")
    try:
        rng = np.random.default_rng(7)
        x = rng.standard_normal((2, 16, 20, 20)).astype(np.float32)
        w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
        select.last_conv_algorithms.clear()
        y = general.conv2d_general(x, w, None, (1, 1), (2, 2), (2, 2), 1)
        general.conv2d_general_backward(y, x, w, (1, 1), (2, 2), (2, 2), 1, True)
        # (the sub-grids' own convolution records its passes too)
        ran = {k[0]: v for k, v in select.last_conv_algorithms.items() if k[0].startswith("dilated")}
        plans = general._dilated_plans((1, 1), (2, 2), 1)
        assert set(ran) == {"dilated_forward/dilation(2, 2)", "dilated_backward/dilation(2, 2)"}
        assert all(select._split(v)[0] in plans for v in ran.values()), ran
    finally:
        select.set_conv_algorithm(None)
