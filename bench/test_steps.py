"""Whole training-step benchmarks: fastconv on each backend, and native PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv.backends import blas_thread_limit
from fastconv.benchmark.runner import STEP_NETWORKS, fastconv_step, torch_native_step


@pytest.mark.parametrize("network, model_name, batch", STEP_NETWORKS, ids=[n[0] for n in STEP_NETWORKS])
def test_training_step(benchmark, backend, network, model_name, batch):
    benchmark.group = f"training step {network} (batch {batch})"
    step = fastconv_step(model_name, batch, np.float32)
    with blas_thread_limit():           # as the trainer runs it
        if backend.name == "numpy" and network == "report003":
            benchmark.pedantic(step, rounds=2, iterations=1, warmup_rounds=0)
        else:
            benchmark(step)


@pytest.mark.parametrize("network, model_name, batch", STEP_NETWORKS, ids=[n[0] for n in STEP_NETWORKS])
def test_training_step_torch_native(benchmark, network, model_name, batch):
    pytest.importorskip("torch", reason="PyTorch not installed: no native anchor")
    benchmark.group = f"training step {network} (batch {batch})"
    benchmark(torch_native_step(model_name, batch))
