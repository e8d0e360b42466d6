"""Before a run: compile only what the model needs, announce a cold compile with a
progress lines, fail fast on a bad configuration, advise on a busy machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fastconv import nn, startup
from fastconv.system import load as machine_load
from fastconv.models import build_model

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ which kernels
def test_ops_of_the_report_models():
    assert startup.ops_of(build_model("mlp1")) == {"linear", "relu", "softmax_cross_entropy"}
    assert startup.ops_of(build_model("cnn")) == {"conv2d_relu_avgpool2", "linear", "softmax_cross_entropy",
                                                  ("conv2d", (5, 5), (1, 1), (2, 2))}
    letters = startup.ops_of(build_model("letters-cnn"))
    assert {"conv2d", "batch_norm", "max_pool2d", ("conv2d", (3, 3), (1, 1), (1, 1))} <= letters


def test_unknown_layer_means_every_kernel():
    class Custom(nn.Module):
        def forward(self, x):
            return x

    assert startup.ops_of(nn.Sequential(nn.Linear(2, 2), Custom())) is None


def _warmup_module():
    import importlib

    # the module (the package's ``warmup`` attribute is the function)
    return importlib.import_module("fastconv.backends.numba_backend.warmup")


def test_groups_follow_the_ops_and_the_algorithm_registry(monkeypatch):
    pytest.importorskip("numba")
    from fastconv.backends.numba_backend import select

    warmup = _warmup_module()
    runnable = {name for name, module in select.ALGORITHMS.items()
                if getattr(module, "worth_timing", lambda: True)()}
    assert warmup.groups_for({"softmax_cross_entropy"}) == ("loss",)
    cnn = warmup.groups_for(startup.ops_of(build_model("cnn")))      # 5x5 layers: no Winograd
    assert set(cnn) == runnable - {"winograd"} | {"pool", "loss", "dense"}
    letters = warmup.groups_for(startup.ops_of(build_model("letters-cnn")))   # 3x3 stride 1 too
    assert runnable <= set(letters) and "norm" in letters
    assert warmup.groups_for(None) == warmup.groups() == tuple(
        name for name in select.ALGORITHMS if name in runnable) + (
        "loss", "pool", "norm", "dense", "elementwise", "unfold", "general")
    assert warmup.groups_for({"some_new_op"}) == warmup.groups()
    assert warmup.groups_for({"conv_transpose2d"}) == ("general",)
    # a layer's geometry: only the algorithms that can run it
    one_by_one = set(warmup.groups_for({("conv2d", (1, 1), (1, 1), (0, 0))}))
    assert "shifted_rows" not in one_by_one and "winograd" not in one_by_one and "direct" in one_by_one
    assert "winograd" not in warmup.groups_for({("conv2d", (3, 3), (2, 2), (1, 1))})
    # an algorithm added later joins the groups without any list here changing
    monkeypatch.setitem(select.ALGORITHMS, "fft", select.ALGORITHMS["gemm"])
    assert "fft" in warmup.groups() and "fft" in warmup.groups_for({"conv2d"})
    assert "winograd" not in warmup.groups_for({"conv2d"})
    assert "winograd" in warmup.groups_for({"conv2d", "conv2d_3x3_stride1"})


def test_an_algorithm_that_cannot_win_here_is_not_compiled(monkeypatch):
    pytest.importorskip("numba")
    from fastconv.backends.numba_backend import blocked

    warmup = _warmup_module()
    monkeypatch.setattr(blocked, "worth_timing", lambda: False)
    assert "blocked" not in warmup.groups()
    assert "blocked" not in warmup.groups_for(startup.ops_of(build_model("cnn")))
    monkeypatch.setenv("FASTCONV_CONV_ALGO", "blocked")     # unless forced
    assert warmup.groups_for({("conv2d", (5, 5), (1, 1), (2, 2))}) == ("blocked",)


def test_a_forced_algorithm_compiles_alone(monkeypatch):
    pytest.importorskip("numba")
    warmup = _warmup_module()
    monkeypatch.setenv("FASTCONV_CONV_ALGO", "gemm")
    assert warmup.groups_for({("conv2d", (3, 3), (1, 1), (1, 1)), "linear"}) == ("gemm", "dense")
    monkeypatch.setenv("FASTCONV_CONV_ALGO", "winograd")    # cannot run 5x5: the first algorithm too
    assert set(warmup.groups_for({("conv2d", (5, 5), (1, 1), (2, 2))})) == {"winograd", "direct"}


def test_compile_plan_puts_one_algorithm_first_and_the_rest_in_the_background():
    pytest.importorskip("numba")
    warmup = _warmup_module()
    ops = startup.ops_of(build_model("cnn"))
    now, later = warmup.compile_plan(ops, background=True)
    assert set(now) == {"direct", "loss", "dense"}
    # the fused conv-ReLU-pool block needs the pooling kernels only off the direct path
    assert "pool" in later and "gemm" in later and not set(now) & set(later)
    assert set(now) | set(later) == set(warmup.groups_for(ops))
    assert warmup.compile_plan(ops, background=False) == (warmup.groups_for(ops), ())
    letters_now, _ = warmup.compile_plan(startup.ops_of(build_model("letters-cnn")), background=True)
    assert "pool" in letters_now                        # its max pooling layers need it
    mlp = startup.ops_of(build_model("mlp1"))
    assert warmup.compile_plan(mlp, background=True) == (("loss", "dense", "elementwise"), ())


# ------------------------------------------------------------------ notice and bar
class FakeBackend:
    name = "fake"

    def __init__(self, cached, estimate=25.0):
        self.cached, self.estimate, self.calls = cached, estimate, []

    def kernels_cached(self, dtypes, ops):
        return self.cached

    def estimated_seconds(self, dtypes, ops, jobs):
        return self.estimate

    def warmup(self, dtypes, jobs, ops=None, progress=None):
        self.calls.append((dtypes, jobs, ops))
        if progress is not None:
            progress(0, 2, None)
            progress(1, 2, "float32:a")
            progress(2, 2, "float32:b")
        return 1.5


def test_cold_cache_is_announced_before_compiling_with_progress_lines(capsys):
    backend, messages = FakeBackend(cached=False), []
    seconds = startup.compile_kernels(backend, build_model("mlp1"), np.float32, messages.append)
    assert seconds == 1.5
    assert backend.calls == [((np.dtype(np.float32),), 2, {"linear", "relu", "softmax_cross_entropy"})]
    notice, *lines = messages
    for words in ("First run", "the fake kernels this model needs first", "float32", "about 25 s", "once",
                  "later runs load them"):
        assert words in notice, notice
    # plain lines (a log file shows them too), one per group ready, nothing on a bar
    assert lines == ["  float32:a ready (1/2, 0 s)", "  float32:b ready (2/2, 0 s)"]
    assert capsys.readouterr().err == ""


def test_progress_ticks_while_nothing_else_is_said(monkeypatch):
    lines = []
    monkeypatch.setattr(startup._Progress, "TICK", 0.2)
    reporter = startup._Progress(lines.append, estimate=100.0)
    reporter(0, 3, None)
    import time

    time.sleep(1.2)
    reporter.close()
    ticks = [line for line in lines if "so far" in line]
    assert len(ticks) >= 2, lines
    assert ticks[0].startswith("  compiling: 0/3 kernel groups ready") and "s left" in ticks[0]
    silent = []
    quiet = startup._Progress(silent.append, estimate=1.0, enabled=False)
    quiet(1, 1, "float32:a")
    quiet.close()
    assert silent == []


def test_warm_cache_or_short_compile_is_silent(capsys):
    for backend in (FakeBackend(cached=True), FakeBackend(cached=False, estimate=0.3)):
        messages = []
        assert startup.compile_kernels(backend, None, np.float32, messages.append) == 1.5
        assert messages == [] and capsys.readouterr().err == ""


def test_backend_without_warmup_compiles_nothing():
    assert startup.compile_kernels(object(), None) is None


def test_real_warmup_reports_progress_per_group():
    pytest.importorskip("numba")
    from fastconv.backends import numba_backend as NB

    events = []
    NB.warmup(ops={"softmax_cross_entropy"}, progress=lambda *event: events.append(event))
    assert events == [(0, 1, None), (1, 1, "float32:loss")]
    assert NB.kernels_cached((np.float32,), {"softmax_cross_entropy"})


def test_bad_conv_algorithm_fails_before_compiling(monkeypatch):
    pytest.importorskip("numba")
    import fastconv
    from fastconv.system.env import EnvironmentVariableError

    monkeypatch.setenv("FASTCONV_CONV_ALGO", "fastest")
    with fastconv.use_backend("numba") as backend:
        monkeypatch.setattr(backend, "warmup", lambda **kw: pytest.fail("compiled anyway"))
        with pytest.raises(EnvironmentVariableError, match="FASTCONV_CONV_ALGO"):
            startup.prepare_backend(build_model("cnn"), log=lambda text: None)


def test_train_prepares_the_backend_before_any_kernel_runs(monkeypatch, tmp_path):
    pytest.importorskip("numba")
    import fastconv.train
    from fastconv.data import load_dataset
    from fastconv.nn import Linear

    order = []
    monkeypatch.setattr(startup, "prepare_backend", lambda *a, **k: order.append("prepare") or 0.0)
    real_forward = Linear.forward
    monkeypatch.setattr(Linear, "forward", lambda self, x: order.append(
        f"forward on {fastconv.get_backend().name}") or real_forward(self, x))
    data = load_dataset("digits", limit=40)
    fastconv.train.train("mlp1", data, epochs=1, progress=False, log=lambda text: None, plots=False,
                         out_dir=tmp_path / "run", backend="numba")
    # the shape check before compiling runs on the reference backend; training after it
    first_on_numba = next(i for i, step in enumerate(order) if step == "forward on numba")
    assert "prepare" in order[:first_on_numba]
    assert all(step == "forward on numpy" for step in order[:order.index("prepare")])


MLP_IN_A_COLD_CACHE = textwrap.dedent("""
    import json, sys
    import fastconv
    from fastconv.data import load_dataset
    from fastconv.train import train
    from fastconv.backends import numba_backend as NB
    train("mlp1", load_dataset("digits", limit=60), epochs=1, progress=False, plots=False,
          out_dir=sys.argv[1], backend="numba", log=lambda text: None)
    print(json.dumps(dict(signatures=NB.compiled_signatures())))
""")


def test_a_model_without_convolutions_compiles_no_conv_kernels(tmp_path):
    """mlp1 in an empty numba cache: only the loss, fully connected and elementwise
    kernels (the optimizer's step among them) are compiled (seconds), not the minutes
    of every kernel."""
    pytest.importorskip("numba")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTCONV_")}
    env.update(NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", MLP_IN_A_COLD_CACHE, str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    compiled = {name for name, count in result["signatures"].items() if count}
    assert compiled == {"softmax_cross_entropy", "linear_forward", "linear_backward", "relu_forward",
                        "relu_backward", "clamp_forward", "clamp_backward", "add", "channel_affine",
                        "sgd_step"}, compiled


def test_cold_cache_is_detected_in_a_fresh_process(tmp_path):
    pytest.importorskip("numba")
    code = "from fastconv.backends import numba_backend as NB; print(NB.kernels_cached())"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# ------------------------------------------------------------------ busy machine
def test_advice_only_when_threads_would_share_cores():
    text = machine_load.advice(2, 1.0, 2)
    assert "FASTCONV_NUM_THREADS=1" in text and "busy" in text
    assert machine_load.advice(2, 0.2, 2) is None        # background noise
    assert machine_load.advice(1, 2.0, 2) is None        # one thread: nothing to wait for
    assert machine_load.advice(4, 2.0, 8) is None        # enough free cores
    assert "FASTCONV_NUM_THREADS=6" in machine_load.advice(8, 2.0, 8)
    assert machine_load.advice(2, None, 2) is None       # unknown (no /proc/stat)


@pytest.mark.parametrize("own_seconds, want", [
    (0.0, 1.0 + 0.1),       # cpu0 fully busy, cpu1 10 %, over one second (100 ticks)
    # This process's own threads (a BLAS pool spinning after a matmul) are not
    # "other processes": 0.8 s of its CPU time over that second leaves 0.3.
    (0.8, 0.3),
])
def test_busy_cores_from_proc_stat(tmp_path, monkeypatch, own_seconds, want):
    stat = tmp_path / "stat"
    samples = iter([
        "cpu  0 0 0 0 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0\ncpu1 0 0 0 200 0 0 0 0\n",
        "cpu  0 0 0 0 0 0 0 0\ncpu0 200 0 0 100 0 0 0 0\ncpu1 0 0 10 290 0 0 0 0\n",
    ])
    stat.write_text(next(samples))
    monkeypatch.setattr(machine_load, "_PROC_STAT", str(stat))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(machine_load.time, "sleep", lambda seconds: stat.write_text(next(samples)))
    monkeypatch.setattr(os, "sysconf", lambda name: 100)            # 100 ticks per second
    own = iter([5.0, 5.0 + own_seconds])
    monkeypatch.setattr(machine_load, "_own_cpu_seconds", lambda: next(own))
    assert machine_load.busy_cores() == pytest.approx(want)


def test_busy_machine_gets_one_line_of_advice(monkeypatch):
    class Threaded:
        def get_num_threads(self):
            return 2

    monkeypatch.setattr(machine_load, "busy_cores", lambda seconds: 1.0)
    monkeypatch.setattr(machine_load, "available_cores", lambda: 2)
    monkeypatch.delenv("FASTCONV_NUM_THREADS", raising=False)
    messages = []
    startup._advise_if_busy(Threaded(), messages.append)
    assert len(messages) == 1 and messages[0].startswith("note: this machine is busy")
    monkeypatch.setenv("FASTCONV_NUM_THREADS", "2")       # the user chose: no advice
    startup._advise_if_busy(Threaded(), messages.append)
    assert len(messages) == 1


def test_fastconv_compile_compiles_everything_up_front(monkeypatch, capsys):
    """`fastconv compile` asks for every kernel of the dtypes, now, not in the background."""
    pytest.importorskip("numba")
    from fastconv import cli

    calls = []
    monkeypatch.setattr(startup, "prepare_backend", lambda model, dtypes, **kw: calls.append((model, dtypes, kw))
                        or 1.25)
    assert cli.main(["compile", "--dtype", "both", "--jobs", "1"]) == 0
    ((model, dtypes, options),) = calls
    assert model is None and dtypes == ("float32", "float64")
    assert options["background"] is False and options["jobs"] == 1
    assert "numba kernels (float32/float64) ready in 1.2 s" in capsys.readouterr().out
