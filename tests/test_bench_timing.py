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
