"""The benchmark's sampling rules (counts only: no timing assertions)."""

from __future__ import annotations

import time

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
