"""The benchmark's sampling rules (counts only: no timing assertions)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fastconv.benchmark import timing


def test_measure_takes_repeat_samples_after_warmup():
    calls = []
    result = timing.measure(lambda: calls.append(1), repeat=5, warmup=2)
    assert result.repeats == 5 and len(calls) == 7
    assert result.minimum <= result.q1 <= result.median <= result.q3 <= result.maximum


def test_measure_keeps_sampling_fast_calls_for_min_seconds():
    result = timing.measure(lambda: time.sleep(0.001), repeat=5, min_seconds=0.05)
    assert result.repeats > 5


def test_measure_stops_slow_calls_at_the_budget_with_three_samples():
    result = timing.measure(lambda: time.sleep(0.04), repeat=100, budget=0.05)
    assert result.repeats == 3


def _kernel_row(kernel, network, backend, median_ms, flops):
    return dict(kernel=kernel, network=network, backend=backend, median_ms=median_ms, flops=flops)


def test_conv_totals_sum_each_networks_conv_passes_per_backend():
    from fastconv.benchmark.report import conv_totals

    rows = [_kernel_row("conv2d", "net", "numpy", 6.0, 2e9),
            _kernel_row("conv2d_backward", "net", "numpy", 14.0, 4e9),
            _kernel_row("conv2d", "net", "numba", 1.0, 2e9),
            _kernel_row("conv2d_backward", "net", "numba", 3.0, 4e9),
            _kernel_row("im2col", "net", "numba", 50.0, None),        # not a conv pass
            _kernel_row("conv2d", "other", "numba", 2.0, 1e9)]
    totals = {(r["network"], r["backend"]): r for r in conv_totals(rows)}
    assert set(totals) == {("net", "numpy"), ("net", "numba"), ("other", "numba")}
    fast = totals["net", "numba"]
    assert fast["median_ms"] == 4.0 and fast["flops"] == 6e9
    assert fast["gflops"] == 6e9 / 4e-3 / 1e9
    assert fast["speedup_vs_numpy"] == 20.0 / 4.0 and fast["vs_torch"] is None
    assert totals["other", "numba"]["speedup_vs_numpy"] is None


def test_measure_interleaved_takes_turns_in_bursts_inside_each_context():
    import contextlib

    log = []

    @contextlib.contextmanager
    def entered(label):
        log.append(f"enter {label}")
        yield

    variants = {label: (lambda label=label: log.append(label), dict(repeat=6, warmup=2),
                        lambda label=label: entered(label)) for label in ("a", "b")}
    result = timing.measure_interleaved(variants, rounds=3)
    # warm-up only in the first burst; two timed calls per burst; turns a, b, a, b, ...
    burst_a, burst_b = ["enter a", "a", "a"], ["enter b", "b", "b"]
    assert log == ["enter a", "a", "a", "a", "a", "enter b", "b", "b", "b", "b"] + (burst_a + burst_b) * 2
    assert result["a"].repeats == result["b"].repeats == 6


def test_measure_interleaved_gives_each_variant_its_own_times():
    result = timing.measure_interleaved({"fast": (lambda: None, {}),
                                         "slow": (lambda: time.sleep(0.005), dict(repeat=3))})
    assert result["slow"].minimum >= 0.005 > result["fast"].maximum
    assert result["slow"].repeats == 3


# ------------------------------------------------------------------ peak and load
def test_peak_is_the_best_of_several_rounds(monkeypatch):
    minima = iter([0.4, 0.2, 0.3])
    monkeypatch.setattr(timing, "measure", lambda fn, **kw: timing.Timing(1, 1, 1, next(minima), 1, 1))
    monkeypatch.setattr(timing, "kernel_blas_peak_gflops", lambda *args: 0.0)
    assert timing.matmul_peak_gflops(size=100, rounds=3) == 2.0 * 100 ** 3 / 0.2 / 1e9


def test_peak_is_the_faster_of_numpy_and_the_kernels_blas(monkeypatch):
    monkeypatch.setattr(timing, "measure", lambda fn, **kw: timing.Timing(1, 1, 1, 0.2, 1, 1))
    monkeypatch.setattr(timing, "kernel_blas_peak_gflops", lambda *args: 1e6)
    assert timing.matmul_peak_gflops(size=100, rounds=3) == 1e6


def test_kernel_blas_peak_counts_every_thread():
    """A real measurement on a small product: positive, and each thread's product is
    right (the kernel the peak times is not timing garbage)."""
    pytest.importorskip("numba")
    from fastconv.backends.numba_backend.kernels.blas import gemm_on_each_thread

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((64, 64)).astype(np.float32) for _ in range(2))
    assert timing.kernel_blas_peak_gflops(a, b, 3, 1) > 0
    out = np.zeros((2, 64, 64), np.float32)
    gemm_on_each_thread(a, b, out, 2)
    np.testing.assert_allclose(out, np.broadcast_to(a @ b, out.shape), rtol=1e-4, atol=1e-4)


def test_bench_measures_the_peak_after_compilation_and_its_helper_processes(monkeypatch, tmp_path):
    """The yardstick of "% of peak" is taken once compiling (and the fresh processes
    timing it) are over, never while they take a core."""
    import fastconv.benchmark as bench
    from fastconv import startup
    from fastconv.benchmark import report, runner

    order = []

    def step(name, value=None):
        return lambda *args, **kwargs: order.append((name, kwargs.get("rounds"))) or value

    monkeypatch.setattr(startup, "prepare_backend", step("compile"))
    monkeypatch.setattr(runner, "first_step_latency", step("compile in fresh processes", {}))
    monkeypatch.setattr(timing, "matmul_peak_gflops", step("peak", 100.0))
    monkeypatch.setattr(runner, "run_kernels", step("kernels", []))
    monkeypatch.setattr(runner, "run_steps", step("steps", []))
    monkeypatch.setattr(runner, "run_under_load", step("under load", []))
    monkeypatch.setattr(report, "write_results", step("write", []))
    monkeypatch.setattr(report, "markdown", step("markdown", ""))
    assert bench.main(["--backends", "numba", "--threads", "2", "--no-scaling", "--out", str(tmp_path)]) == 0
    names = [name for name, _ in order]
    assert names.index("peak") > max(i for i, name in enumerate(names) if name.startswith("compile"))
    assert names.index("peak") < names.index("kernels")
    assert dict(order)["peak"] >= 3
    assert "under load" in names


def test_results_above_the_peak_are_flagged_as_noise():
    from fastconv.benchmark import report, runner

    rows = [dict(backend="numba", flops=2.1e9), dict(backend="numpy", flops=2.1e9)]
    times = {"numba": timing.Timing(0.02, 0.02, 0.02, 0.02, 0.02, 5),
             "numpy": timing.Timing(0.5, 0.5, 0.5, 0.5, 0.5, 5)}
    runner._add_ratios(rows, times, peak_gflops=100.0)
    assert rows[0]["pct_peak"] == pytest.approx(105.0) and rows[0]["above_peak"]
    assert not rows[1]["above_peak"]
    for row in rows:
        row.update(kernel="conv2d", network="report003", layer="conv1", shape="s", algorithm="gemm",
                   median_ms=1.0, q1_ms=1.0, q3_ms=1.0, vs_torch=None)
    assert report.format_row(rows[0]).rstrip().endswith("105.0* gemm")
    results = dict(date="d", command="c", dtype="float32", peak_size=2048, peak_gflops=100.0,
                   machine=dict(cpu="cpu", cores=2, threads=2, python="3", numpy="2", blas="b",
                                numba="n", torch=None),
                   steps=[], kernels=rows, scaling=[], under_load=[])
    text = report.markdown(results)
    assert "| 105* |" in text and report.ABOVE_PEAK_NOTE in text


def test_busy_process_runs_only_inside_the_block():
    from fastconv.benchmark import runner

    with runner.busy_process() as process:
        assert process.poll() is None
    assert process.poll() is not None


def test_under_load_times_one_and_all_threads_idle_and_beside_a_busy_process(monkeypatch):
    import contextlib

    from fastconv.benchmark import report, runner

    busy = []

    @contextlib.contextmanager
    def fake_busy_process():
        busy.append(True)
        yield None
        busy.append(False)

    seen = []

    def fake_measure(variants, rounds):
        seen.append((sorted(variants), bool(busy) and busy[-1]))
        return {count: timing.Timing(count, count, count, count, count, 3) for count in variants}

    monkeypatch.setattr(runner, "busy_process", fake_busy_process)
    monkeypatch.setattr(runner, "measure_interleaved", fake_measure)
    monkeypatch.setattr(runner, "fastconv_step", lambda *args: None)
    rows = runner.run_under_load(np.float32, 3, True, 2, runner.ThreadSettings(2), lambda text: None)
    assert seen == [([1, 2], False), ([1, 2], True)]
    assert [(r["load"], r["threads"]) for r in rows] == [("idle", 1), ("idle", 2),
                                                         ("one busy process", 1), ("one busy process", 2)]
    text = "\n".join(report._under_load_lines(rows))
    assert "## Under load" in text and "FASTCONV_NUM_THREADS" in text


def test_scaling_charts_have_titles_and_say_what_numba_means(monkeypatch, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastconv.benchmark import report

    axes = []
    real_subplots = plt.subplots

    def recording_subplots(*args, **kwargs):
        fig, ax = real_subplots(*args, **kwargs)
        axes.append(ax)
        return fig, ax

    monkeypatch.setattr(plt, "subplots", recording_subplots)
    scaling = [dict(sweep=sweep, value=value, backend=backend, threads=2, median_ms=1.0, gflops=1.0)
               for sweep in ("batch", "channels") for value in (1, 2)
               for backend in ("numpy", "numba (direct)", "numba")]
    results = dict(dtype="float32", peak_gflops=100.0, machine=dict(threads=2), kernels=[], scaling=scaling)
    report.plot_charts(results, tmp_path)
    assert len(axes) == 2
    for ax in axes:
        assert "3x3 conv layer" in ax.get_title()
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert "numba (auto: chosen per shape)" in legend and "numba (direct)" in legend
