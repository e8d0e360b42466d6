"""``python tests/mpi_driver.py ARGS...``: the ``fastconv`` command with a test model
registered, for tests that start it under ``mpiexec`` (and once without, to compare).

``tiny-bn``: a small network with BatchNorm2d and BatchNorm1d for 28x28 digits.
``FASTCONV_TEST_FAIL_RANK`` / ``FASTCONV_TEST_FAIL_STEP``: that rank raises in that
optimiser step (1-based, counted over the run), to test how the job ends.
On every rank but 0, whatever writes run output (atomic files, the folder lock,
plots) raises: a run that completes proves rank 0 alone wrote.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def tiny_bn(num_classes: int = 10, dtype=np.float32, seed: int = 0):
    from fastconv import nn

    rng = nn.as_generator(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, dtype=dtype, rng=rng), nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1, dtype=dtype, rng=rng), nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(),
        nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(4 * 7 * 7, 16, dtype=dtype, rng=rng), nn.BatchNorm1d(16, dtype=dtype), nn.ReLU(),
        nn.Linear(16, num_classes, dtype=dtype, rng=rng),
    )


def register() -> None:
    from fastconv import models

    models.MODELS["tiny-bn"] = tiny_bn


def fail_on_request() -> None:
    rank, step = os.environ.get("FASTCONV_TEST_FAIL_RANK"), os.environ.get("FASTCONV_TEST_FAIL_STEP")
    if rank is None or os.environ.get("PMI_RANK", "0") != rank:
        return
    from fastconv import optim

    real_step, calls = optim.SGD.step, {"n": 0}

    def failing_step(self):
        calls["n"] += 1
        if calls["n"] == int(step):
            raise RuntimeError(f"injected failure in step {step}")
        real_step(self)

    optim.SGD.step = failing_step


def forbid_writes_off_rank_0() -> None:
    if os.environ.get("PMI_RANK", "0") == "0":
        return
    from fastconv import viz
    from fastconv.checkpoint import files
    from fastconv.training import runs

    def refuse(*args, **kwargs):
        raise RuntimeError(f"rank {os.environ['PMI_RANK']} tried to write run output")

    files.atomic_target = runs.locked_folder = files.locked_folder = viz._save = refuse


if __name__ == "__main__":
    register()
    fail_on_request()
    forbid_writes_off_rank_0()
    from fastconv.cli import main

    sys.exit(main(sys.argv[1:]))
