"""Per-kernel benchmarks on the reports' layer shapes (report 000 batch 50, report 003 batch 64)."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv.benchmark.runner import kernel_calls

CALLS = list(kernel_calls(np.float32, quick=False))


@pytest.mark.parametrize("kernel, layer, flops, call", CALLS,
                         ids=[f"{c[0]}-{c[1].network}-{c[1].label}" for c in CALLS])
def test_kernel(benchmark, backend, kernel, layer, flops, call):
    benchmark.group = f"{kernel} {layer.network} {layer.label} [{layer.shape_text}]"
    if backend.name == "numpy" and layer.network == "report003" and kernel.startswith(("conv", "col2im")):
        # seconds per call on the reference backend: a few rounds are enough
        benchmark.pedantic(call, rounds=2, iterations=1, warmup_rounds=0)
    else:
        benchmark(call)
    if flops:
        benchmark.extra_info["gflops_at_median"] = flops / benchmark.stats.stats.median / 1e9
