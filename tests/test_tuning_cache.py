"""The autotuning cache file cannot hang, crash or slow a run, whatever is found at its
path (`numba_backend.tuning_cache`, used through `select`'s names)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba")

from fastconv.backends import numba_backend as NB  # noqa: E402
from fastconv.backends.numba_backend import select  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = ((2, 16, 12, 12), (24, 16, 3, 3), 1, 1)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("FASTCONV_CONV_ALGO", raising=False)
    NB.clear_autotune_cache(memory_only=True)
    yield tmp_path
    NB.clear_autotune_cache(memory_only=True)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_deeply_nested_json_is_ignored_in_one_line(cache_dir, caplog):
    Path(NB.autotune_cache()).write_text("[" * 200_000)
    assert NB.conv_algorithm(*PROBLEM) in NB.ALGORITHMS
    said = warnings_of(caplog)
    assert len(said) == 1 and "ignoring the autotuning cache" in said[0] and "\n" not in said[0]


def test_a_fifo_is_neither_read_nor_written(cache_dir):
    """Opening a FIFO for reading waits for a writer: forever (in a subprocess with a timeout)."""
    path = NB.autotune_cache()
    os.mkfifo(path)
    code = textwrap.dedent("""
        from fastconv.backends.numba_backend import select
        print(select.conv_algorithm((2, 16, 12, 12), (24, 16, 3, 3), 1, 1))
        select._save_winner('["forward"]', "gemm")
    """)
    env = dict(os.environ, FASTCONV_CACHE_DIR=str(cache_dir))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in NB.ALGORITHMS
    assert [line for line in done.stderr.splitlines() if "autotuning cache" in line] == [
        f"ignoring the autotuning cache {path}: it is not a regular file; starting from an empty one"]
    assert sorted(os.listdir(cache_dir)) == [os.path.basename(path)]


def test_a_directory_at_the_path_leaves_no_temp_files(cache_dir, caplog):
    path = NB.autotune_cache()
    os.mkdir(path)
    for n in range(3):
        select._save_winner(json.dumps(["forward", n]), "gemm")
    assert os.listdir(cache_dir) == [os.path.basename(path)] and os.listdir(path) == []
    assert select._load_winners()[json.dumps(["forward", 2])] == "gemm"     # kept for this process
    NB.clear_autotune_cache()                                               # leaves the directory alone
    assert os.path.isdir(path)
    assert len(warnings_of(caplog)) == 1


def test_a_huge_file_is_not_read_and_is_replaced_by_a_small_one(cache_dir, caplog, monkeypatch):
    from fastconv.backends.numba_backend import tuning_cache

    monkeypatch.setattr(tuning_cache, "MAX_BYTES", 64 << 10)
    path = Path(NB.autotune_cache())
    entries = {json.dumps(["forward", n]): "gemm" for n in range(5000)}
    path.write_text(json.dumps(entries))
    assert path.stat().st_size > tuning_cache.MAX_BYTES
    assert select._load_winners() == {}
    assert "larger than" in warnings_of(caplog)[0]
    select._save_winner(json.dumps(["forward", "new"]), "direct")
    assert json.loads(path.read_text()) == {json.dumps(["forward", "new"]): "direct"}


def test_the_file_is_read_once_and_each_save_writes_it_without_reading(cache_dir, monkeypatch):
    path = Path(NB.autotune_cache())
    path.write_text(json.dumps({json.dumps(["forward", "old"]): "gemm"}))
    reads = []
    real_loads = json.loads
    monkeypatch.setattr(json, "loads", lambda text, *a, **k: (reads.append(1), real_loads(text, *a, **k))[1])
    monkeypatch.setattr(json, "load", lambda f, *a, **k: (reads.append(1), real_loads(f.read(), *a, **k))[1])
    for n in range(5):
        select._load_winners()
        select._save_winner(json.dumps(["forward", n]), "direct")
    assert len(reads) == 1
    assert len(real_loads(path.read_text())) == 6


def test_entries_are_capped_oldest_first(cache_dir, monkeypatch):
    from fastconv.backends.numba_backend import tuning_cache

    monkeypatch.setattr(tuning_cache, "MAX_ENTRIES", 4)
    for n in range(7):
        select._save_winner(json.dumps(["forward", n]), "gemm")
    stored = json.loads(Path(NB.autotune_cache()).read_text())
    assert list(stored) == [json.dumps(["forward", n]) for n in range(3, 7)]


def test_a_failed_write_leaves_no_temp_file(cache_dir, monkeypatch, caplog):
    def refuse(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    select._save_winner(json.dumps(["forward", 1]), "gemm")
    select._save_winner(json.dumps(["forward", 2]), "gemm")
    assert os.listdir(cache_dir) == []
    said = warnings_of(caplog)
    assert len(said) == 1 and "cannot save the autotuning cache" in said[0]
    monkeypatch.undo()
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(cache_dir))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        select._save_winner(json.dumps(["forward", 3]), "gemm")
    assert os.listdir(cache_dir) == []


def test_two_processes_merge_their_winners(cache_dir):
    """Another process saving after this one read the file: this one sees its winner
    without re-reading every time, and its own next save keeps both."""
    mine, theirs = json.dumps(["forward", "mine"]), json.dumps(["forward", "theirs"])
    assert select._load_winners() == {}
    code = f"from fastconv.backends.numba_backend import select; select._save_winner({theirs!r}, 'winograd')"
    env = dict(os.environ, FASTCONV_CACHE_DIR=str(cache_dir))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT, timeout=120)
    assert select._load_winners().get(theirs) == "winograd"
    select._save_winner(mine, "gemm")
    assert json.loads(Path(NB.autotune_cache()).read_text()) == {theirs: "winograd", mine: "gemm"}
