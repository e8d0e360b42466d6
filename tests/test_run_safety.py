"""A run never loses another run, never saves NaN, never resumes with settings it
was not trained with, and never leaves logs ahead of its checkpoint."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest

from fastconv.cli import main
from fastconv.data import Dataset, load_dataset
from fastconv.train import CHECKPOINT_NAME, TrainingDivergedError, load_checkpoint, train


def quiet(message):
    pass


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits", seed=0)
    return Dataset("digits", data.train_x[:300], data.train_y[:300], data.test_x[:60],
                   data.test_y[:60], data.classes)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastconv: error: "), err
    return lines[0]


def cli_args(out, *extra):
    return ["train", "--model", "mlp1", "--dataset", "digits", "--limit", "100", "--epochs", "1",
            "--backend", "numpy", "--no-progress", "--out", str(out), *extra]


# ------------------------------------------------------------------ item 1: the folder lock
def test_a_second_run_on_the_same_folder_is_refused_while_the_first_runs(tmp_path, capsys):
    out = tmp_path / "run"
    second = []

    def start_second_run(info):
        if info["iteration"] == 1:
            second.append(main(cli_args(out, "--overwrite")))

    result = train("mlp1", "digits", epochs=1, limit=100, out_dir=out, backend="numpy", progress=False,
                   plots=False, log=quiet, on_batch_end=start_second_run)
    assert second == [1]
    assert "in use by another fastconv train" in one_line_error(capsys)
    assert not result.interrupted and load_checkpoint(out).meta["progress"]["epochs_done"] == 1
    # the lock ends with the run
    assert main(cli_args(out, "--epochs", "2", "--resume")) == 0  # later flags win


# ------------------------------------------------------------------ item 2: settings and NaN
@pytest.mark.parametrize("flag, value", [("--lr", "inf"), ("--lr", "1e30"), ("--lr", "nan"), ("--lr", "0"),
                                         ("--weight-decay", "inf"), ("--weight-decay", "-1"),
                                         ("--lr-gamma", "1e10"), ("--lr-gamma", "0"),
                                         ("--momentum", "5"), ("--momentum", "1")])
def test_out_of_range_settings_are_usage_errors(flag, value, tmp_path, capsys):
    assert main(cli_args(tmp_path / "run", flag, value)) == 2
    err = capsys.readouterr().err
    assert f"argument {flag}:" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("setting, value", [("lr", float("inf")), ("lr", 1e30), ("momentum", 5.0),
                                            ("weight_decay", float("inf")), ("lr_gamma", 1e10),
                                            ("batch_size", 0)])
def test_library_rejects_settings_before_loading_data(setting, value, tmp_path):
    with pytest.raises(ValueError, match=setting):
        train("cnn", "no-such-dataset", epochs=1, out_dir=tmp_path, log=quiet, **{setting: value})


def poison_weights_at_step(monkeypatch, step: int):
    """Make SGD write NaN into the first parameter at optimiser step ``step``."""
    from fastconv import optim

    real_step, calls = optim.SGD.step, {"n": 0}

    def step_then_poison(self):
        real_step(self)
        calls["n"] += 1
        if calls["n"] == step:
            self.params[0].data[...] = np.nan

    monkeypatch.setattr(optim.SGD, "step", step_then_poison)


def test_a_loss_turning_nan_stops_the_run_and_keeps_the_last_checkpoint(digits, tmp_path, monkeypatch):
    poison_weights_at_step(monkeypatch, 8)  # epoch 2 (6 batches per epoch), batch 2
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at epoch 2, batch 3.*after epoch 1"):
        train("cnn", digits, epochs=3, out_dir=tmp_path, progress=False, log=quiet)
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.meta["progress"]["epochs_done"] == 1
    assert all(np.isfinite(value).all() for value in checkpoint.model_state.values())
    assert len(json.loads((tmp_path / "history.json").read_text())) == 1


def test_non_finite_weights_are_never_saved(digits, tmp_path, monkeypatch):
    poison_weights_at_step(monkeypatch, 6)  # the last step of epoch 1: its loss was finite
    with pytest.raises(TrainingDivergedError, match="weights are not finite.*nothing was saved"):
        train("cnn", digits, epochs=2, out_dir=tmp_path, progress=False, log=quiet)
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_cli_reports_divergence_in_one_line(tmp_path, capsys, monkeypatch):
    poison_weights_at_step(monkeypatch, 3)  # limit 100, batch 100: one step per epoch
    assert main(cli_args(tmp_path / "run", "--epochs", "5")) == 1
    assert "weights are not finite after epoch 3" in one_line_error(capsys)
    assert load_checkpoint(tmp_path / "run").meta["progress"]["epochs_done"] == 2


# ------------------------------------------------------------------ item 10: resume
@pytest.mark.parametrize("flag, value", [("--lr", "0.05"), ("--batch-size", "10"), ("--momentum", "0.9"),
                                         ("--seed", "3"), ("--dtype", "float64"), ("--limit", "50")])
def test_resume_refuses_flags_that_conflict_with_the_checkpoint(flag, value, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(cli_args(out)) == 0
    capsys.readouterr()
    before = (out / CHECKPOINT_NAME).read_bytes()
    assert main(cli_args(out, "--epochs", "2", "--resume", flag, value)) == 1
    line = one_line_error(capsys)
    assert "cannot resume" in line and f"leave out {flag}" in line
    assert (out / CHECKPOINT_NAME).read_bytes() == before
    # the same value as stored is no conflict
    assert main(cli_args(out, "--epochs", "2", "--resume", "--lr", "0.1")) == 0


def test_resume_needs_no_model_or_dataset_flags(tmp_path):
    out = tmp_path / "run"
    assert main(cli_args(out)) == 0
    assert main(["train", "--resume", "--epochs", "2", "--out", str(out), "--no-progress"]) == 0
    assert load_checkpoint(out).meta["progress"]["epochs_done"] == 2


def test_leftover_temporary_files_are_removed_on_the_next_start(digits, tmp_path):
    train("mlp1", digits, epochs=1, out_dir=tmp_path, progress=False, plots=False, log=quiet)
    leftovers = [tmp_path / ".model.npz.k1ll3d.tmp", tmp_path / ".history.json.x9.tmp",
                 tmp_path / ".iterations.json.a.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    unrelated = tmp_path / ".notes.txt.tmp"
    unrelated.write_text("mine")
    train("mlp1", digits, epochs=2, out_dir=tmp_path, resume=True, progress=False, plots=False, log=quiet)
    assert not any(path.exists() for path in leftovers)
    assert unrelated.exists()


def test_history_never_runs_ahead_of_the_checkpoint(digits, tmp_path, monkeypatch):
    real_savez, calls = np.savez, {"n": 0}

    def savez_fails_the_second_time(file, **arrays):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_savez(file, **arrays)

    monkeypatch.setattr(np, "savez", savez_fails_the_second_time)
    with pytest.raises(OSError, match="model.npz"):
        train("mlp1", digits, epochs=2, out_dir=tmp_path, progress=False, plots=False, log=quiet)
    history = json.loads((tmp_path / "history.json").read_text())
    iterations = json.loads((tmp_path / "iterations.json").read_text())
    checkpoint = load_checkpoint(tmp_path)
    assert len(history) == checkpoint.meta["progress"]["epochs_done"] == 1
    assert len(iterations["loss"]) == len(checkpoint.iteration_log["loss"]) == 3  # 300 images, batch 100
