"""Every ``FASTCONV_*`` variable a command reads is checked before it creates or loads
anything (one line, status 2, no run folder), and warnings are one clean line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastconv.cli import main

ROOT = Path(__file__).resolve().parents[1]

BAD = [("FASTCONV_NUM_THREADS", "many", "FASTCONV_NUM_THREADS must be a positive integer"),
       ("FASTCONV_CONV_EXACT", "maybe", "FASTCONV_CONV_EXACT must be 0 or 1"),
       ("FASTCONV_BACKGROUND_COMPILE", "later", "FASTCONV_BACKGROUND_COMPILE must be 0 or 1"),
       ("FASTCONV_BACKEND", "cuda", "FASTCONV_BACKEND='cuda': unknown backend 'cuda'"),
       ("FASTCONV_CONV_ALGO", "fastest", "FASTCONV_CONV_ALGO: unknown value 'fastest'"),
       ("FASTCONV_BLAS", "atlas", "FASTCONV_BLAS: unknown value 'atlas'"),
       ("FASTCONV_CACHE_DIR", "A-FILE", "FASTCONV_CACHE_DIR must name a folder")]


@pytest.mark.parametrize("name, value, message", BAD, ids=[name for name, _, _ in BAD])
def test_a_bad_variable_fails_before_the_data_or_the_run_folder(capsys, monkeypatch, tmp_path, name, value,
                                                                 message):
    if value == "A-FILE":
        value = str(tmp_path / "a-file")
        Path(value).write_text("")
    monkeypatch.setenv(name, value)
    run = tmp_path / "run"
    # a data set that does not exist: the variable is named, not the data
    assert main(["train", "--dataset", str(tmp_path / "no-such-data"), "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastconv: error: ") and message in err, err
    assert not run.exists()
    bench = tmp_path / "bench"
    assert main(["bench", "--quick", "--out", str(bench)]) == 2
    assert message in capsys.readouterr().err and not bench.exists()


def test_help_still_works_with_a_bad_variable(capsys, monkeypatch):
    monkeypatch.setenv("FASTCONV_NUM_THREADS", "0")
    assert main(["bench", "--help"]) == 0
    assert main(["train", "--help"]) == 0
    assert "usage:" in capsys.readouterr().out


def test_thread_cap_notice_is_one_clean_line():
    """More threads than numba's pool: one ``fastconv: warning:`` line, not a Python
    warning with its file, line number and source line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTCONV_")}
    env.update(FASTCONV_NUM_THREADS="512", PYTHONPATH=str(ROOT))
    code = "import sys; from fastconv.cli import main; sys.exit(main(['info']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastconv: warning: 512 threads requested"), done.stderr


def test_train_checks_the_environment_before_the_data(monkeypatch, tmp_path):
    from fastconv.system.env import EnvironmentVariableError
    from fastconv.train import train

    monkeypatch.setenv("FASTCONV_NUM_THREADS", "-3")
    with pytest.raises(EnvironmentVariableError, match="FASTCONV_NUM_THREADS"):
        train("cnn", str(tmp_path / "no-such-data"), epochs=1, out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_new_run_that_fails_before_writing_leaves_no_folder(monkeypatch, tmp_path):
    from fastconv.train import train
    from fastconv.training import runs

    def fail(*args):
        raise RuntimeError("failed after the lock")

    monkeypatch.setattr(runs, "_log_start", fail)
    options = dict(epochs=1, limit=20, backend="numpy", progress=False, plots=False, log=lambda text: None)
    with pytest.raises(RuntimeError, match="after the lock"):
        train("cnn", "digits", out_dir=tmp_path / "run", **options)
    assert not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()                  # a folder that was there before stays
    with pytest.raises(RuntimeError, match="after the lock"):
        train("cnn", "digits", out_dir=tmp_path / "kept", **options)
    assert (tmp_path / "kept").is_dir()
