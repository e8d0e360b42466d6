"""Data-parallel training on MPI: launched with ``mpiexec -n 2`` from here.

Every run is float64 on the numpy backend (no JIT compilation, so each launch takes
a few seconds) on 100 digits with a global batch of 35: batches of 35, 35, 30 split
18/17, 18/17, 15/15 between the ranks, so the share weighting is exercised.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastconv import distributed, models
from fastconv.cli import main
from fastconv.train import load_checkpoint
from tests import mpi_driver

REPO = Path(__file__).resolve().parents[1]
COMMON = ["train", "--limit", "100", "--batch-size", "35", "--dtype", "float64", "--backend", "numpy",
          "--no-progress"]


def have_mpi() -> str | None:
    """Why the MPI tests cannot run here, or None."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'fastconv[mpi]')"
    if shutil.which("mpiexec") is None:
        return "no mpiexec on PATH (pip install mpich)"
    return None


needs_mpi = pytest.mark.skipif(have_mpi() is not None, reason=str(have_mpi()))


def mpiexec(args, ranks=2, timeout=120, **env) -> subprocess.CompletedProcess:
    # numpy backend from the start: no numba import in each rank (a second saved per launch)
    environment = dict(os.environ, PYTHONPATH=str(REPO), FASTCONV_BACKEND="numpy", **env)
    command = ["mpiexec", "-n", str(ranks), sys.executable, str(REPO / "tests" / "mpi_driver.py"), *args]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)


def assert_ran(process: subprocess.CompletedProcess) -> str:
    assert process.returncode == 0, process.stdout + process.stderr
    return process.stdout


def weights(run: Path) -> dict[str, np.ndarray]:
    return load_checkpoint(run).model_state


def assert_same_weights(a: Path, b: Path, rtol: float = 1e-10) -> None:
    """Every parameter and buffer within ``rtol`` of the largest value in the model
    (per tensor would divide by zero: a conv bias before batch norm gets no gradient
    and stays at rounding noise around its start)."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    scale = max(np.abs(value).max() for value in wb.values())
    for key in wa:
        assert np.abs(wa[key] - wb[key]).max() <= rtol * scale, key


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One-process runs of the CNN: after 1 epoch and after 2."""
    root = tmp_path_factory.mktemp("one-process")
    for epochs in (1, 2):
        assert main([*COMMON, "--model", "cnn", "--epochs", str(epochs), "--out", str(root / f"e{epochs}")]) == 0
    return root


@needs_mpi
def test_two_ranks_train_what_one_process_trains_and_resume_across_rank_counts(reference, tmp_path):
    two = tmp_path / "two-ranks"
    out = assert_ran(mpiexec([*COMMON, "--model", "cnn", "--epochs", "1", "--out", str(two)]))
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert out.count("2 MPI ranks on 1 host(s)") == 1 and f"{threads} thread(s) per rank" in out
    assert out.count("epoch 1/1") == 1 and out.count("wrote ") == 1  # rank 0 alone reports
    assert_same_weights(two, reference / "e1")
    initial = models.build_model("cnn", dtype="float64").state_dict()
    assert not np.allclose(weights(two)["layers.3.weight"], initial["layers.3.weight"])
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in (reference / "e1").iterdir())

    # a 2-rank checkpoint continues in 1 process ...
    assert main([*COMMON, "--model", "cnn", "--epochs", "2", "--resume", "--out", str(two)]) == 0
    assert_same_weights(two, reference / "e2")
    # ... and a 1-process checkpoint on 2 ranks
    one = tmp_path / "one-then-two"
    shutil.copytree(reference / "e1", one)
    assert_ran(mpiexec([*COMMON, "--epochs", "2", "--resume", "--out", str(one)]))
    assert_same_weights(one, reference / "e2")
    metrics = ("train_loss", "train_acc", "test_loss", "test_acc", "lr")
    for got, expected in zip(load_checkpoint(one).meta["history"], load_checkpoint(reference / "e2").meta["history"]):
        assert [got[k] for k in metrics] == pytest.approx([expected[k] for k in metrics], rel=1e-10)


@needs_mpi
def test_synchronised_batch_norm_matches_one_process(tmp_path, monkeypatch):
    monkeypatch.setitem(models.MODELS, "tiny-bn", mpi_driver.tiny_bn)
    args = [*COMMON, "--model", "tiny-bn", "--epochs", "2", "--lr", "0.05", "--momentum", "0.9"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert_ran(mpiexec([*args, "--out", str(tmp_path / "two")]))
    assert_same_weights(tmp_path / "two", tmp_path / "one")
    state = weights(tmp_path / "two")
    assert "layers.1.running_var" in state and "layers.10.running_mean" in state  # BN buffers compared too


@needs_mpi
def test_a_failing_rank_ends_the_job_within_seconds(tmp_path):
    run = tmp_path / "run"
    started = time.monotonic()
    process = mpiexec([*COMMON, "--model", "cnn", "--epochs", "3", "--out", str(run)], timeout=60,
                      FASTCONV_TEST_FAIL_RANK="1", FASTCONV_TEST_FAIL_STEP="5")  # epoch 2, step 2
    elapsed = time.monotonic() - started
    assert process.returncode != 0
    assert "[rank 1]" in process.stderr and "injected failure in step 5" in process.stderr
    assert elapsed < 30, elapsed  # rank 0, waiting in the Allreduce, was aborted, not left hanging
    checkpoint = load_checkpoint(run)  # the last good checkpoint survives
    assert checkpoint.meta["progress"]["epochs_done"] == 1


# ------------------------------------------------------------------ without MPI
def test_mpiexec_without_mpi4py_refuses_with_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py fails
    assert main([*COMMON, "--model", "cnn", "--epochs", "1", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastconv: error: started by an MPI launcher (PMI_SIZE=2)")
    assert "pip install 'fastconv[mpi]'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_threads_per_rank_share_the_host(monkeypatch):
    monkeypatch.delenv("FASTCONV_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert [distributed.threads_per_rank(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    monkeypatch.setenv("FASTCONV_NUM_THREADS", "3")
    assert distributed.threads_per_rank(2) == 3


def test_a_single_process_is_a_local_world(monkeypatch):
    for name in distributed.LAUNCHER_SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.launch_world().size == 1
    assert distributed.launch_world({"OMPI_COMM_WORLD_SIZE": "1"}).size == 1
    assert distributed.launcher_size({"OMPI_COMM_WORLD_SIZE": "4"}) == ("OMPI_COMM_WORLD_SIZE", 4)
