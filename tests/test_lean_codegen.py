"""numba's code generation without the work it throws away (`numba_backend.lean_codegen`):
machine code only for what is called or cached, no second optimisation of a parfor's
gufunc wrappers; results, the on-disk cache and ``@guvectorize`` as before.  The
compiles run in fresh processes on a small parallel module of their own (named like a
fastconv module, as the kernels are), each switched on and off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("numba")

from fastconv.backends.numba_backend import lean_codegen  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

KERNELS = textwrap.dedent("""
    import numpy as np
    from numba import guvectorize, njit, prange

    from fastconv.backends.numba_backend.lean_codegen import plain


    @njit(cache=True)
    def _square(v):
        return v * v


    @njit(cache=True, parallel=True)
    def chunked_squares(x, out, n_chunks):
        n = x.shape[0]
        for chunk in prange(n_chunks):
            for i in range(n * chunk // n_chunks, n * (chunk + 1) // n_chunks):
                out[i] = _square(x[i]) + chunk


    @plain
    @njit(cache=True, parallel=True)
    def plain_doubles(x, out):
        for i in prange(x.shape[0]):
            out[i] = 2.0 * x[i]


    @guvectorize(["void(float64[:], float64[:])"], "(n)->()", target="parallel")
    def row_sums(row, total):
        total[0] = 0.0
        for v in row:
            total[0] += v
""")

# Counts numba's machine-code passes and full module optimisations (hooked before
# fastconv installs its own, so a skipped one is not counted), loads the module above
# as ``fastconv._probe_parallel`` after the backend, as a program does, runs both kernels.
RUN = textwrap.dedent("""
    import importlib.util, json, sys
    import numpy as np
    from numba.core import codegen
    if "moved-internals" in sys.argv:
        codegen.CPUCodeLibrary.serialize_using_object_code = None
    calls = {"finalize_object": 0, "full_optimisations": []}
    plain_finalize = codegen.JitEngine.finalize_object
    def counted(self):
        calls["finalize_object"] += 1
        return plain_finalize(self)
    codegen.JitEngine.finalize_object = counted
    optimise = codegen.CPUCodeLibrary._optimize_final_module
    def recorded(self):
        calls["full_optimisations"].append(self.name)
        return optimise(self)
    codegen.CPUCodeLibrary._optimize_final_module = recorded
    import fastconv.backends.numba_backend
    from fastconv.backends.numba_backend import lean_codegen
    spec = importlib.util.spec_from_file_location("fastconv._probe_parallel", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    x = np.arange(10.0)
    out = np.empty_like(x)
    module.chunked_squares(x, out, 3)
    stats = module.chunked_squares.stats
    rows = module.row_sums(np.arange(12.0).reshape(3, 4))
    doubled = np.empty_like(x)
    module.plain_doubles(x, doubled)
    print(json.dumps(dict(out=out.tolist(), rows=rows.tolist(), doubled=doubled.tolist(),
                          installed=lean_codegen._installed,
                          hits=sum(stats.cache_hits.values()), misses=sum(stats.cache_misses.values()),
                          **calls)))
""")

def _run(tmp_path, lean: bool, *flags) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "probe_parallel.py"
    if not source.exists():
        source.write_text(KERNELS)
    script = tmp_path / "run.py"
    script.write_text(RUN)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"),
               FASTCONV_LEAN_CODEGEN="1" if lean else "0", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(script), str(source), *flags], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _expected_chunks():
    # chunk c of 3 covers i in [10c//3, 10(c+1)//3): 0..2 -> 0, 3..5 -> 1, 6..9 -> 2
    return [i * i + (0 if i < 3 else 1 if i < 6 else 2) for i in range(10)]


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "plain"])
def test_results_and_cache_round_trip(tmp_path, lean):
    cold = _run(tmp_path, lean)
    warm = _run(tmp_path, lean)
    assert cold["installed"] is lean and warm["installed"] is lean
    for run in (cold, warm):
        assert run["out"] == _expected_chunks()
        assert run["rows"] == [6.0, 22.0, 38.0]
        assert run["doubled"] == [2.0 * i for i in range(10)]
    assert (cold["misses"], cold["hits"]) == (1, 0)
    assert (warm["misses"], warm["hits"]) == (0, 1)      # saved by the cold run, loaded here


def test_numba_internals_moved_leave_numba_as_it_is(tmp_path):
    run = _run(tmp_path, True, "moved-internals")
    assert run["installed"] is False
    assert run["out"] == _expected_chunks() and run["doubled"] == [2.0 * i for i in range(10)]
    assert run["finalize_object"] >= 6                    # numba's eager machine code


def test_machine_code_only_on_demand(tmp_path):
    lean, plain = _run(tmp_path / "lean", True), _run(tmp_path / "plain", False)
    # plain numba emits every finished library at once: each of a parfor's four, each
    # callee, each gufunc wrapper; the lean way emits only when asked (the cache's
    # save, numba's entry points) -- far fewer passes, none per finished library
    assert plain["finalize_object"] >= 6
    assert lean["finalize_object"] < plain["finalize_object"] / 2


def test_parfor_wrappers_are_optimised_once(tmp_path):
    lean, plain = _run(tmp_path / "lean", True), _run(tmp_path / "plain", False)

    def count(run, prefix):
        return sum(name.startswith(prefix) for name in run["full_optimisations"])

    wrappers = ("parallelgufuncwrapper", lean_codegen._GUFUNC_WRAPPER)
    for run in (lean, plain):
        assert count(run, "chunked_squares") == 1 and count(run, "plain_doubles") == 1
        assert count(run, lean_codegen._PARFOR_BODY) == 2
    # two wrappers each for the two parfors and for @guvectorize(target="parallel");
    # the lean way skips those of the parfor not marked `plain` (the kernel's library
    # optimises them once linked)
    assert sum(count(plain, prefix) for prefix in wrappers) == 6
    assert sum(count(lean, prefix) for prefix in wrappers) == 4


def _library(name, *linked):
    return SimpleNamespace(name=name, _linking_libraries=list(linked))


def test_only_a_parfor_s_wrappers_skip_their_optimisation():
    body = _library("__numba_parfor_gufunc_0x7f00")
    gufunc = _library("<numba.np.ufunc.wrappers._GufuncWrapper object at 0x1>", body)
    parallel = _library("parallelgufuncwrapper", gufunc)
    assert lean_codegen._wraps_parfor(gufunc) and lean_codegen._wraps_parfor(parallel)
    user_kernel = _library("row_sums")
    user_gufunc = _library("<numba.np.ufunc.wrappers._GufuncWrapper object at 0x2>", user_kernel)
    assert not lean_codegen._wraps_parfor(user_gufunc)
    assert not lean_codegen._wraps_parfor(_library("parallelgufuncwrapper", user_gufunc))
    assert not lean_codegen._wraps_parfor(body)          # the body itself is optimised
    assert not lean_codegen._wraps_parfor(_library("chunked_squares", parallel))


def test_switched_off_by_the_environment_and_bad_values_named(monkeypatch):
    from fastconv.system import env

    monkeypatch.setenv("FASTCONV_LEAN_CODEGEN", "0")
    assert env.lean_codegen() is False
    monkeypatch.setenv("FASTCONV_LEAN_CODEGEN", "maybe")
    with pytest.raises(env.EnvironmentVariableError, match="FASTCONV_LEAN_CODEGEN"):
        env.check()
    monkeypatch.delenv("FASTCONV_LEAN_CODEGEN")
    assert env.lean_codegen() is True
