"""``fastconv train`` / ``viz`` / ``compare`` on bad files, full disks and first use:
one line naming the file or flag and a non-zero exit."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastconv.cli import main
from fastconv.train import load_checkpoint

def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastconv: error: "), err
    return lines[0]


@pytest.fixture
def run_dir(small_checkpoint, tmp_path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(small_checkpoint, run / "model.npz")
    return run


def resume(run: Path, *extra) -> list[str]:
    return ["train", "--resume", "--epochs", "2", "--backend", "numpy", "--no-progress", "--out", str(run), *extra]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip_a_bit])
def test_a_damaged_checkpoint_is_one_line_on_resume_and_viz(damage, run_dir, tmp_path, capsys):
    checkpoint = run_dir / "model.npz"
    damage(checkpoint)
    assert main(resume(run_dir)) == 1
    assert str(checkpoint) in one_line_error(capsys)
    assert main(["viz", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "fig")]) == 1
    assert str(checkpoint) in one_line_error(capsys)
    with pytest.raises(ValueError):  # --debug: the traceback, for a bug report
        main(["--debug", *resume(run_dir)])


def test_wrong_typed_metadata_is_one_line(run_dir, capsys):
    import zipfile

    checkpoint = run_dir / "model.npz"
    with np.load(checkpoint) as npz:
        arrays = dict(npz)
    meta = json.loads(str(arrays["meta"]))
    meta["hyperparameters"]["batch_size"] = 0  # was a ZeroDivisionError
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(checkpoint, **arrays)
    assert zipfile.is_zipfile(checkpoint)
    assert main(resume(run_dir)) == 1
    line = one_line_error(capsys)
    assert str(checkpoint) in line and "batch_size" in line


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    def savez_on_a_full_disk(file, **arrays):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", savez_on_a_full_disk)
    out = tmp_path / "run"
    assert main(["train", "--model", "mlp1", "--limit", "50", "--epochs", "1", "--backend", "numpy",
                 "--no-progress", "--out", str(out)]) == 1
    line = one_line_error(capsys)
    assert "No space left on device" in line and str(out / "model.npz") in line
    assert not out.exists()         # no temp file left, nor the folder (it held nothing else)


def test_a_too_long_path_is_one_line(tmp_path, capsys):
    out = tmp_path / ("x" * 300)
    assert main(["train", "--model", "mlp1", "--limit", "50", "--epochs", "1", "--backend", "numpy",
                 "--no-progress", "--out", str(out)]) == 1
    assert "File name too long" in one_line_error(capsys)


@pytest.mark.parametrize("flag", ["--models", "--backends"])
def test_compare_with_an_empty_list_is_one_line(flag, tmp_path, capsys):
    assert main(["compare", flag, ",", "--out", str(tmp_path)]) == 1
    assert f"{flag} ',' names nothing" in one_line_error(capsys)


# ------------------------------------------------------------------ item 15: first use
def test_train_without_dataset_uses_the_offline_digits(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--limit", "100", "--backend", "numpy", "--no-progress",
                 "--out", str(out)]) == 0
    assert "training on 'digits', which needs no download" in capsys.readouterr().out
    assert load_checkpoint(out).meta["dataset"] == "digits"


def test_missing_data_says_which_flag_downloads_it(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setenv("FASTCONV_CACHE", str(tmp_path / "cache"))
    from fastconv.data import sources

    if sources.find_dataset_dir("mnist", "test") is not None:
        pytest.skip("MNIST is installed system-wide here")
    assert main(["train", "--dataset", "mnist", "--data-root", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    assert "add --download" in capsys.readouterr().err


def test_a_failed_download_leaves_no_empty_cache_folder(tmp_path, capsys, monkeypatch):
    from fastconv.data import sources

    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("FASTCONV_CACHE", str(cache))
    monkeypatch.setitem(sources.MIRRORS, "fashion-mnist", ["http://127.0.0.1:9/"])  # nothing listens
    if sources.find_dataset_dir("fashion-mnist", "test") is not None:
        pytest.skip("Fashion-MNIST is installed system-wide here")
    assert main(["train", "--dataset", "fashion-mnist", "--download", "--out", str(tmp_path / "r")]) == 1
    assert "could not download" in capsys.readouterr().err
    assert not cache.exists()
