"""Bad FASTCONV_* environment variables: ``--help`` and ``info`` still work, and a
command fails with one line naming the variable, status 2, before it loads anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastconv.system import env

ROOT = Path(__file__).resolve().parents[1]
# The console script, in a fresh process; "block torch" makes `import torch` fail.
CLI = "import sys; from fastconv.cli import main; sys.exit(main(sys.argv[1:]))"
CLI_WITHOUT_TORCH = "import sys; sys.modules['torch'] = None; " + CLI


def fastconv(*args, code=CLI, **variables):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTCONV_")}
    env.update(variables, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=ROOT)


def one_line(done, status: int = 1) -> str:
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastconv: error: "), done.stderr
    return lines[0]


TRAIN = ("train", "--dataset", "digits", "--limit", "60", "--epochs", "1", "--no-progress")
BAD = [
    ({"FASTCONV_NUM_THREADS": "abc"}, "FASTCONV_NUM_THREADS must be a positive integer, got 'abc'"),
    ({"FASTCONV_NUM_THREADS": "0"}, "FASTCONV_NUM_THREADS must be a positive integer, got '0'"),
    ({"FASTCONV_BACKEND": "cuda"}, "FASTCONV_BACKEND='cuda': unknown backend 'cuda'"),
]


@pytest.mark.parametrize("variables, message", BAD, ids=[str(v) for v, _ in BAD])
def test_help_and_info_work_and_commands_name_the_variable(tmp_path, variables, message):
    done = fastconv("--help", **variables)
    assert done.returncode == 0 and done.stdout.startswith("usage: fastconv"), done.stderr
    done = fastconv("info", **variables)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert message in done.stdout
    assert message in one_line(fastconv(*TRAIN, "--out", str(tmp_path / "run"), **variables), status=2)


def test_bad_thread_count_fails_bench_in_one_line(tmp_path):
    line = one_line(fastconv("bench", "--quick", "--out", str(tmp_path), FASTCONV_NUM_THREADS="x"), status=2)
    assert "FASTCONV_NUM_THREADS must be a positive integer, got 'x'" in line


def test_bad_conv_algorithm_is_not_blamed_on_the_data(tmp_path):
    line = one_line(fastconv(*TRAIN, "--backend", "numba", "--out", str(tmp_path / "run"),
                             FASTCONV_CONV_ALGO="fastest"), status=2)
    assert "FASTCONV_CONV_ALGO: unknown value 'fastest'" in line
    assert "cannot take" not in line


def test_backend_list_leaves_out_a_missing_torch(tmp_path):
    done = fastconv("info", code=CLI_WITHOUT_TORCH)
    assert done.returncode == 0, done.stderr
    backends = next(line for line in done.stdout.splitlines() if line.startswith("backends:"))
    assert "torch" not in backends.split("(")[0]
    assert "torch: not usable: backend 'torch' is not available here" in done.stdout
    line = one_line(fastconv(*TRAIN, "--backend", "cuda", code=CLI_WITHOUT_TORCH))
    assert "valid backends are: numba, numpy (not usable here: torch:" in line
    line = one_line(fastconv(*TRAIN, "--backend", "torch", code=CLI_WITHOUT_TORCH))
    assert "backend 'torch' is not available here" in line


def test_snapshot_follows_every_change_of_the_environment(monkeypatch):
    """`env.snapshot` keys per-call memos: a variable set, changed or removed after
    the first call must change it, as ``os.environ.get`` would."""
    monkeypatch.delenv(env.CONV_ALGO, raising=False)
    unset = env.snapshot(env.CONV_ALGO, env.CONV_EXACT)
    assert unset[0] is None
    monkeypatch.setenv(env.CONV_ALGO, "gemm")
    gemm = env.snapshot(env.CONV_ALGO, env.CONV_EXACT)
    monkeypatch.setenv(env.CONV_ALGO, "direct")
    direct = env.snapshot(env.CONV_ALGO, env.CONV_EXACT)
    assert len({unset, gemm, direct}) == 3
    assert gemm[1] == direct[1] == unset[1]
    monkeypatch.delenv(env.CONV_ALGO)
    assert env.snapshot(env.CONV_ALGO, env.CONV_EXACT) == unset


def test_snapshot_without_cpythons_mapping(monkeypatch):
    monkeypatch.setattr(os, "environ", {env.CONV_ALGO: "gemm"})
    assert env.snapshot(env.CONV_ALGO, env.CONV_EXACT) == ("gemm", None)
