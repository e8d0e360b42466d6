"""Shared fixtures: every kernel test runs on every backend that imports here."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fastconv

# Autotuning winners go to a throw-away cache, not the user's (and the tests start
# from an empty one, so what they check does not depend on earlier runs).
os.environ["FASTCONV_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastconv-test-cache-")
# Every candidate is compiled where it is timed, in the test's own process: a helper
# compiling in the background would leave processes behind the suite and make which
# algorithm a test runs depend on timing.  tests/test_background_compile.py turns it on.
os.environ["FASTCONV_BACKGROUND_COMPILE"] = "0"


@pytest.fixture(params=fastconv.available_backends())
def backend(request):
    """Run the test once per available backend, restoring the previous one after."""
    with fastconv.use_backend(request.param) as selected:
        yield selected


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)


def tolerance(dtype) -> dict:
    """rtol/atol for comparing two float computations of the same quantity."""
    return dict(rtol=1e-5, atol=1e-5) if np.dtype(dtype) == np.float32 else dict(rtol=1e-10, atol=1e-12)


def shared_data_dir() -> Path | None:
    """``FASTCONV_DATA`` (or ``../shared/data`` beside the checkout), if it exists."""
    candidates = [os.environ.get("FASTCONV_DATA"), Path(__file__).resolve().parents[2] / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """A real training checkpoint, made once per session (checkpoint files stay out
    of git): ``cnn`` on the offline digits, 100 images, 1 epoch, numpy backend."""
    from fastconv.train import CHECKPOINT_NAME, train

    run = tmp_path_factory.mktemp("small-run")
    train("cnn", "digits", epochs=1, limit=100, backend="numpy", out_dir=run, progress=False,
          plots=False, log=lambda message: None)
    return run / CHECKPOINT_NAME
