"""A first call computes with an algorithm that is compiled while a helper process
compiles the problem's other candidates; they are timed, and the winner saved, once
the helper reports them.  A helper that dies costs time, never a result."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")

import fastconv  # noqa: E402
import fastconv.functional as F  # noqa: E402
from fastconv.backends.numba_backend import background, readiness, select  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class FakeHelper:
    """Stands in for the helper process; the test says when it is done."""

    made: list = []

    def __init__(self, items, on_ready=None, on_exit=None, nice=0):
        self.items, self.ready, self.returncode = list(items), [], None
        self._on_ready, self._on_exit = on_ready, on_exit
        FakeHelper.made.append(self)

    def finish(self, delivered: bool = True) -> None:
        if delivered:
            for item in self.items:
                self.ready.append(item)
                self._on_ready(item)
        self.returncode = 0 if delivered else -9
        self._on_exit(self)

    def missing(self):
        return [item for item in self.items if item not in self.ready]

    def wait(self, timeout=None):
        return True


@pytest.fixture
def compiled(monkeypatch):
    """Background compilation on, helpers faked, and only the algorithms in the
    returned set count as compiled."""
    FakeHelper.made = []
    names = {"direct"}
    monkeypatch.setattr(background, "Helper", FakeHelper)
    monkeypatch.setattr(readiness, "algorithm_ready", lambda algorithm, dtype: algorithm.NAME in names)
    saved = []
    real_save = select._save_winner
    monkeypatch.setattr(select, "_save_winner", lambda key, name: saved.append(json.loads(key)) or
                        real_save(key, name))
    background.reset()
    background.set_enabled(True)
    select.clear_autotune_cache()
    with fastconv.use_backend("numba"):
        yield names, saved
    background.set_enabled(None)
    background.reset()
    background._running = None
    select.clear_autotune_cache()


def _problem(batch=4, channels=16, size=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
    w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)
    b = rng.standard_normal(channels).astype(np.float32)
    return x, w, b


def _reference(x, w, b):
    with fastconv.use_backend("numpy"):
        return F.conv2d(x, w, b, stride=1, padding=1)


def _algorithm(x, w):
    return select.last_conv_algorithms[select.key("forward", x.shape, w.shape, (1, 1), (1, 1), x.dtype)]


def test_first_call_runs_on_the_compiled_algorithm_and_asks_for_the_others(compiled):
    names, saved = compiled
    x, w, b = _problem()
    candidates = select.candidates(x.shape, w.shape, (1, 1), (1, 1))
    assert len(candidates) > 1
    y = F.conv2d(x, w, b, stride=1, padding=1)
    assert _algorithm(x, w) == "direct"
    np.testing.assert_allclose(y, _reference(x, w, b), rtol=1e-4, atol=1e-4)
    (helper,) = FakeHelper.made
    assert set(helper.items) == {f"float32:{name}" for name in candidates if name != "direct"}
    F.conv2d(x, w, b, stride=1, padding=1)               # nothing new: no second helper
    assert len(FakeHelper.made) == 1 and _algorithm(x, w) == "direct"
    assert saved == []                                  # a choice among some candidates is not kept

    names.update(candidates)
    problems = select.autotune_stats()["problems"]
    helper.finish()
    y2 = F.conv2d(x, w, b, stride=1, padding=1)         # the helper's report: timed again, all of them
    assert select.autotune_stats()["problems"] == problems + 1
    assert _algorithm(x, w) in candidates
    assert [key[-1] for key in saved] == [sorted(candidates)]
    np.testing.assert_allclose(y2, _reference(x, w, b), rtol=1e-4, atol=1e-4)


def test_a_helper_that_dies_leaves_the_candidates_to_this_process(compiled):
    names, saved = compiled
    x, w, b = _problem(seed=1)
    candidates = select.candidates(x.shape, w.shape, (1, 1), (1, 1))
    F.conv2d(x, w, b, stride=1, padding=1)
    (helper,) = FakeHelper.made
    helper.finish(delivered=False)                      # killed before reporting anything
    y = F.conv2d(x, w, b, stride=1, padding=1)          # compiled and timed here instead
    assert [key[-1] for key in saved] == [sorted(candidates)]
    np.testing.assert_allclose(y, _reference(x, w, b), rtol=1e-4, atol=1e-4)
    F.conv2d(*_problem(seed=2)[:2], None, stride=1, padding=1)    # asked for once only
    assert len(FakeHelper.made) == 1


def test_a_helper_that_cannot_start_costs_nothing_but_time(compiled, monkeypatch):
    def cannot_start(*args, **kwargs):
        raise OSError("no processes left")

    monkeypatch.setattr(background, "Helper", cannot_start)
    _, saved = compiled
    x, w, b = _problem(seed=3)
    y = F.conv2d(x, w, b, stride=1, padding=1)
    assert len(saved) == 1
    np.testing.assert_allclose(y, _reference(x, w, b), rtol=1e-4, atol=1e-4)


def test_a_problem_too_small_to_time_asks_for_nothing(compiled):
    x, w, b = _problem(batch=1, channels=2, size=6)
    F.conv2d(x, w, b, stride=1, padding=1)
    assert FakeHelper.made == []


def test_without_background_compilation_every_candidate_is_timed_at_once(compiled):
    _, saved = compiled
    background.set_enabled(False)
    x, w, b = _problem(seed=4)
    F.conv2d(x, w, b, stride=1, padding=1)
    assert FakeHelper.made == [] and len(saved) == 1


# ------------------------------------------------------------------ real processes
def _run(code, tmp_path, timeout=900):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTCONV_", "NUMBA_"))}
    env.update(NUMBA_CACHE_DIR=str(tmp_path / "numba"), FASTCONV_CACHE_DIR=str(tmp_path / "fastconv"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_warmup_gives_a_helper_its_share_and_the_helper_does_it(tmp_path):
    """Cold cache, jobs=2: the helper process compiles some groups (it reports each)
    and this process the others; nothing is compiled twice."""
    result = _run("""
        import importlib, json
        warmup = importlib.import_module("fastconv.backends.numba_backend.warmup")
        warmup.warmup(jobs=2, ops={"softmax_cross_entropy", "linear", "batch_norm"})
        print(json.dumps(warmup.last_run))
    """, tmp_path)
    assert result["helper"] and result["here"], result
    assert result["helper_exit"] == 0 and sorted(result["helper_ready"]) == sorted(result["helper"])
    assert not set(result["helper"]) & set(result["here"])
    assert sorted(result["helper"] + result["here"]) == ["float32:dense", "float32:loss", "float32:norm"]
    helper_log = tmp_path / "fastconv" / "compile-helper.log"
    assert not helper_log.exists() or "Traceback" not in helper_log.read_text()


def test_two_processes_share_one_algorithm_by_its_forward_and_backward(tmp_path):
    """One cold convolution algorithm and jobs=2: the helper compiles one of its parts
    and this process the other (instead of one process compiling it all while the
    other idles); the group is then ready, and each part's seconds are kept."""
    result = _run("""
        import importlib, json
        from fastconv.backends.numba_backend import compile_clock, select
        for name in list(select.ALGORITHMS):
            if name != "direct":
                del select.ALGORITHMS[name]
        warmup = importlib.import_module("fastconv.backends.numba_backend.warmup")
        warmup.warmup(jobs=2, ops={("conv2d", (3, 3), (1, 1), (1, 1))}, background=False)
        print(json.dumps(dict(warmup.last_run, ready=warmup.group_ready("float32", "direct"),
                              seconds=compile_clock.seconds("float32:direct"))))
    """, tmp_path)
    parts = ["float32:direct:backward", "float32:direct:forward"]
    assert sorted(result["helper"] + result["here"]) == parts and len(result["helper"]) == 1, result
    assert result["helper_exit"] == 0 and result["helper_ready"] == result["helper"]
    assert result["ready"] is True
    assert result["seconds"][1] is True and result["seconds"][0] > 0     # the parts' sum, measured


def test_parts_split_only_the_convolution_algorithms(monkeypatch, tmp_path):
    from fastconv.backends.numba_backend import compile_clock

    warmup = importlib.import_module("fastconv.backends.numba_backend.warmup")
    assert warmup._parts(["float32:direct", "float64:loss"]) == [
        "float32:direct:forward", "float32:direct:backward", "float64:loss"]
    monkeypatch.setattr(compile_clock, "_measured", {"float32:gemm:forward": 3.0, "float32:gemm:backward": 4.5,
                                                     "float32:winograd:forward": 2.0})
    monkeypatch.setattr(compile_clock, "_speed", [])
    assert compile_clock.seconds("float32:gemm") == (7.5, True)
    reference = compile_clock.REFERENCE_SECONDS["winograd"]
    assert compile_clock.seconds("float32:winograd") == (reference, False)    # one part is not enough
    assert compile_clock.seconds("float32:winograd:backward") == (reference / 2, False)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("FASTCONV_COMPILE_TESTS"),
                    reason="~40 s of cold compilation; set FASTCONV_COMPILE_TESTS=1 to run")
def test_a_cold_first_call_then_the_helpers_kernels_are_tuned(tmp_path):
    result = _run("""
        import json
        import numpy as np
        import fastconv, fastconv.functional as F
        from fastconv.backends.numba_backend import background, select
        for name in list(select.ALGORITHMS):          # two candidates keep the test short
            if name not in ("direct", "gemm"):
                del select.ALGORITHMS[name]
        background.set_enabled(True)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((4, 16, 16, 16)).astype(np.float32)
        w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
        with fastconv.use_backend("numpy"):
            reference = F.conv2d(x, w, None, stride=1, padding=1)
        fastconv.set_backend("numba")
        key = select.key("forward", x.shape, w.shape, (1, 1), (1, 1), x.dtype)
        first = F.conv2d(x, w, None, stride=1, padding=1)
        out = dict(first=select.last_conv_algorithms[key], asked=background._running.items)
        assert background.wait(600)
        second = F.conv2d(x, w, None, stride=1, padding=1)
        out.update(ready=sorted(background._done), tuned=select.autotune_stats()["problems"],
                   errors=[float(np.abs(y - reference).max()) for y in (first, second)],
                   scale=float(np.abs(reference).max()))
        print(json.dumps(out))
    """, tmp_path)
    assert result["first"] == "direct" and result["asked"] == ["float32:gemm"]
    assert result["ready"] == ["float32:gemm"] and result["tuned"] == 1
    assert max(result["errors"]) <= 1e-5 * result["scale"], result


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="no scheduler autogroups on this OS")
def test_a_background_helper_is_niced_with_its_session():
    """The helper runs in a session of its own; where the scheduler groups tasks by
    session, its nice must be its autogroup's too, or it takes half the run's cores."""
    code = ("from fastconv.backends.numba_backend import background; background.lower_priority(7); "
            "print(open('/proc/self/autogroup').read().split()[-1], __import__('os').nice(0))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            start_new_session=True, timeout=60, check=True)
    autogroup_nice, task_nice = result.stdout.split()
    assert int(task_nice) >= 7
    assert int(autogroup_nice) == 7


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_a_niced_helper_is_not_load():
    """A background helper (here one left by an earlier run) yields its core: the
    busy-machine check must not advise one thread because of it."""
    from fastconv.system import load

    assert load.COMPILE_HELPER == background.__name__
    spin = "import os, sys, time\nos.nice(10)\nend = time.time() + 30\nwhile time.time() < end: pass\n"
    helper = subprocess.Popen([sys.executable, "-c", spin, load.COMPILE_HELPER])
    try:
        import time

        time.sleep(0.5)
        assert load._helper_cpu_seconds() > 0.2
        assert load.busy_cores(1.0) < 0.5
    finally:
        helper.kill()
        helper.wait()
