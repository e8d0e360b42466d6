"""A kernel whose first use compiles for seconds is named while it compiles."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

pytest.importorskip("numba")

from fastconv.backends.numba_backend import compile_watch  # noqa: E402


def _event(name):
    def py_func():
        pass

    py_func.__qualname__ = name
    return SimpleNamespace(data={"dispatcher": SimpleNamespace(py_func=py_func)})


@pytest.fixture
def fast_clock(monkeypatch):
    monkeypatch.setattr(compile_watch, "ANNOUNCE_SECONDS", 0.3)
    monkeypatch.setattr(compile_watch, "TICK_SECONDS", 0.6)


def test_a_long_compile_is_announced_ticked_and_timed(fast_clock):
    lines = []
    watch = compile_watch._Watch(lines.append)
    watch.on_start(_event("conv2d_direct_backward_strided"))
    watch.on_start(_event("_gradient_plane"))          # a callee: part of the same wait
    watch.on_end(None)
    time.sleep(1.6)
    watch.on_end(None)
    assert lines[0].startswith("compiling the numba kernel conv2d_direct_backward_strided")
    assert any(line.startswith("  still compiling conv2d_direct_backward_strided") for line in lines)
    assert lines[-1].startswith("  compiled conv2d_direct_backward_strided in")
    assert not any("_gradient_plane" in line for line in lines)


def test_a_short_compile_or_a_quiet_one_says_nothing(fast_clock, monkeypatch):
    lines = []
    watch = compile_watch._Watch(lines.append)
    watch.on_start(_event("quick"))
    watch.on_end(None)
    time.sleep(0.8)
    assert lines == []
    monkeypatch.setattr(compile_watch, "_watch", watch)
    with compile_watch.quiet():                        # the warm-up reports its own progress
        watch.on_start(_event("slow"))
        time.sleep(0.8)
        watch.on_end(None)
    assert lines == []
