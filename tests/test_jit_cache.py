"""numba's compile cache cannot break a run (`numba_backend.jit_cache`): an unreadable
entry is discarded and recompiled with one line, and without any writable cache
folder the kernels are cached in a folder fastconv chooses, or compiled in every
process.  Each case runs in fresh processes on a small kernel module of its own
(compiled in about a second), named like a fastconv module since only those are
guarded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parents[1]

KERNELS = textwrap.dedent("""
    from numba import njit


    @njit(cache=True)
    def scaled_sum(x, factor):
        total = 0.0
        for value in x:
            total += value * factor
        return total
""")

# Loads the module above as ``fastconv._probe_kernels`` and calls its kernel.
RUN = textwrap.dedent("""
    import importlib.util, json, sys
    import numpy as np
    import numba.core.caching
    if "moved-internals" in sys.argv:            # (numba's dispatcher keeps its own reference)
        numba.core.caching.FunctionCache = None
    if "fewer-internals" in sys.argv:            # (numba's locator list keeps its own)
        del numba.core.caching.UserWideCacheLocator
    import fastconv.backends.numba_backend
    try:
        from fastconv.backends.numba_backend import jit_cache
    except ImportError:                          # (a fastconv without the guard)
        jit_cache = None
    if "no-fallback" in sys.argv:
        jit_cache._candidates = lambda: []
    spec = importlib.util.spec_from_file_location("fastconv._probe_kernels", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    result = module.scaled_sum(np.arange(5.0), 2.0)
    stats = module.scaled_sum.stats
    print(json.dumps(dict(result=result, hits=sum(stats.cache_hits.values()),
                          misses=sum(stats.cache_misses.values()), guarded=jit_cache and jit_cache.install())))
""")


def run(module: Path, *args, **variables):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTCONV_", "NUMBA_"))}
    env.update(variables, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", RUN, str(module), *args], capture_output=True, text=True,
                          env=env, cwd=module.parent, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["result"] == 20.0
    return out, [line for line in done.stderr.splitlines() if line.strip()]


@pytest.fixture
def kernel_module(tmp_path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    module = folder / "probe_kernels.py"
    module.write_text(KERNELS)
    return module


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path):
    path.write_bytes(b"")


def _garble_middle(path: Path):
    data = bytearray(path.read_bytes())
    start = len(data) // 3
    data[start:start + 64] = bytes((b ^ 0x5A) for b in data[start:start + 64])
    path.write_bytes(bytes(data))


def _garble_all(path: Path):
    path.write_bytes(os.urandom(path.stat().st_size))


DAMAGE = [("nbi", _truncate), ("nbi", _empty), ("nbi", _garble_all), ("nbc", _truncate),
          ("nbc", _garble_middle), ("nbc", _garble_all)]


@pytest.mark.parametrize("suffix, damage", DAMAGE, ids=[f"{s}-{d.__name__.strip('_')}" for s, d in DAMAGE])
def test_a_damaged_cache_entry_is_recompiled_with_one_line(kernel_module, tmp_path, suffix, damage):
    cache = tmp_path / "numba-cache"
    first, said = run(kernel_module, NUMBA_CACHE_DIR=str(cache))
    assert first["misses"] == 1 and said == []
    files = list(cache.rglob(f"*.{suffix}"))
    assert len(files) == 1, files
    damage(files[0])
    again, said = run(kernel_module, NUMBA_CACHE_DIR=str(cache))
    assert again["hits"] == 0 and len(said) == 1, said
    assert "scaled_sum" in said[0] and "compiling it again" in said[0]
    healed, said = run(kernel_module, NUMBA_CACHE_DIR=str(cache))      # saved afresh: loads again
    assert healed["hits"] == 1 and said == []


def _unwritable(tmp_path: Path, module: Path) -> dict:
    """Environment in which numba finds no writable cache folder of its own, even
    for root: every candidate lies under a file, and the module's __pycache__ is one."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    (module.parent / "__pycache__").write_text("")
    return dict(NUMBA_CACHE_DIR=str(blocker / "numba"), HOME=str(blocker / "home"),
                XDG_CACHE_HOME=str(blocker / "cache"), FASTCONV_CACHE_DIR=str(blocker / "fastconv"))


def test_without_a_writable_cache_folder_kernels_cache_in_a_private_temp_folder(kernel_module, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    variables = dict(_unwritable(tmp_path, kernel_module), TMPDIR=str(temp))
    first, said = run(kernel_module, **variables)
    assert said == [] and first["misses"] == 1
    folder, = temp.glob("fastconv-numba-cache-*")
    assert list(folder.rglob("*.nbi")) and oct(folder.stat().st_mode & 0o777) == "0o700"
    second, said = run(kernel_module, **variables)
    assert said == [] and second["hits"] == 1


def test_with_nothing_writable_kernels_compile_without_the_cache_and_say_so(kernel_module, tmp_path):
    out, said = run(kernel_module, "no-fallback", **_unwritable(tmp_path, kernel_module))
    assert out["misses"] == 1 and len(said) == 1, said
    assert "no writable folder" in said[0] and "compiling them in every process" in said[0]


def test_a_read_only_install_lists_its_backends_and_runs_info(tmp_path):
    """The package copied to a place where nothing can be written (as a system
    install run by a user without a writable home): importing the numba backend,
    which decorates every kernel, works."""
    copy = tmp_path / "site"
    shutil.copytree(ROOT / "fastconv", copy / "fastconv",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for package in (copy / "fastconv").rglob("__init__.py"):
        (package.parent / "__pycache__").write_text("")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTCONV_", "NUMBA_"))}
    env.update(PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", NUMBA_CACHE_DIR=str(blocker / "numba"),
               HOME=str(blocker / "home"), XDG_CACHE_HOME=str(blocker / "cache"), TMPDIR=str(tmp_path))
    code = ("import fastconv, sys; print(fastconv.available_backends()); "
            "from fastconv.cli import main; sys.exit(main(['info']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "numba" in done.stdout.splitlines()[0] and "Traceback" not in done.stderr, done.stderr


def test_moved_numba_internals_leave_numbas_plain_behaviour(kernel_module, tmp_path):
    """numba's ``FunctionCache`` not where it is expected: nothing is installed,
    nothing raises, and numba caches as it always did."""
    first, said = run(kernel_module, "moved-internals", NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert not first["guarded"] and first["misses"] == 1 and said == []
    second, _ = run(kernel_module, "moved-internals", NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert second["hits"] == 1


def test_without_the_optional_internals_the_guard_still_works(kernel_module, tmp_path):
    """No user-wide locator to build the fallback on: the rest is guarded all the same."""
    cache = tmp_path / "cache"
    first, said = run(kernel_module, "fewer-internals", NUMBA_CACHE_DIR=str(cache))
    assert first["guarded"] and said == []
    _truncate(next(cache.rglob("*.nbc")))
    again, said = run(kernel_module, "fewer-internals", NUMBA_CACHE_DIR=str(cache))
    assert again["misses"] == 1 and len(said) == 1 and "compiling it again" in said[0]
