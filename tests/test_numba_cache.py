"""Compiled kernels are cached on disk: a second process loads them instead of
recompiling.  Each test uses its own ``NUMBA_CACHE_DIR`` so the first process
really starts cold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[1]

# Two cheap-to-compile kernels (~2 s cold), reached through fastconv.functional.
FEW_KERNELS = textwrap.dedent("""
    import json, os, time
    import numpy as np
    import fastconv, fastconv.functional as F
    fastconv.set_backend("numba")
    from fastconv.backends import numba_backend as NB
    from fastconv.backends.numba_backend.kernels import pool as P
    x = np.random.default_rng(0).random((2, 3, 6, 6)).astype(np.float32)
    start = time.perf_counter()
    F.max_pool2d(x, 2)
    F.softmax_cross_entropy(x.reshape(2, -1), np.array([0, 1]))
    elapsed = time.perf_counter() - start
    stats = {name: getattr(P, name).stats for name in ("max_pool2d_forward", "softmax_cross_entropy")}
    print(json.dumps(dict(
        seconds=elapsed,
        hits={k: sum(s.cache_hits.values()) for k, s in stats.items()},
        misses={k: sum(s.cache_misses.values()) for k, s in stats.items()},
        threads=NB.get_num_threads(),
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
        spin_count=os.environ.get("GOMP_SPINCOUNT"),
    )))
""")

# Every kernel this CPU can use, float32, via the backend's warmup() on two processes.
ALL_KERNELS = textwrap.dedent("""
    import json, time
    start = time.perf_counter()
    from fastconv.backends import numba_backend as NB
    imported = time.perf_counter() - start
    from fastconv.backends.numba_backend.warmup import group_ready
    ready_before = group_ready("float32", "direct")
    seconds = NB.warmup(jobs=2)
    import numba
    hits = misses = 0
    for module in NB.KERNEL_MODULES:
        for name in dir(module):
            obj = getattr(module, name)
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.signatures:
                hits += sum(obj.stats.cache_hits.values())
                misses += sum(obj.stats.cache_misses.values())
    print(json.dumps(dict(import_seconds=imported, warmup_seconds=seconds, hits=hits, misses=misses,
                          ready_before=ready_before, ready_after=group_ready("float32", "direct"))))
""")


def run_python(code, cache_dir, **env):
    environ = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), **env)
    for name in ("FASTCONV_BACKEND", "FASTCONV_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        if name not in env:
            environ.pop(name, None)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_second_process_loads_kernels_from_cache(tmp_path):
    cold = run_python(FEW_KERNELS, tmp_path)
    assert all(count == 0 for count in cold["hits"].values()), cold
    assert any(tmp_path.rglob("*.nbi")), "no numba index file written"
    # FASTCONV_NUM_THREADS is applied at import; an explicit OMP_WAIT_POLICY is kept
    # (and then no spin count is imposed).
    warm = run_python(FEW_KERNELS, tmp_path, FASTCONV_NUM_THREADS="1", OMP_WAIT_POLICY="ACTIVE")
    assert all(count >= 1 for count in warm["hits"].values()), warm
    assert all(count == 0 for count in warm["misses"].values()), warm
    assert warm["seconds"] < cold["seconds"]
    assert warm["threads"] == 1
    assert warm["omp_wait_policy"] == "ACTIVE" and warm["spin_count"] is None
    assert cold["spin_count"] == "10000"                   # the backend's default


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("FASTCONV_COMPILE_TESTS"),
                    reason="a minute or more of cold compilation; set FASTCONV_COMPILE_TESTS=1 to run")
def test_all_kernels_cold_then_warm(tmp_path):
    """Cold compile of every kernel (float32) vs loading them all from the cache."""
    cold = run_python(ALL_KERNELS, tmp_path)
    warm = run_python(ALL_KERNELS, tmp_path)
    print(f"\ncold warmup {cold['warmup_seconds']:.1f} s, warm {warm['warmup_seconds']:.2f} s "
          f"(import {warm['import_seconds']:.2f} s)")
    assert cold["misses"] > 0          # compiled here (and what the helper compiled: loaded)
    assert not cold["ready_before"] and cold["ready_after"] and warm["ready_before"]
    assert warm["misses"] == 0 and warm["hits"] > 0
    assert warm["warmup_seconds"] < 5
