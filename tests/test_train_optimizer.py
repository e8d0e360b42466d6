"""`fastconv train --optimizer {sgd,adam,adamw}`: the optimiser is built by name, its
state (moments, step count) goes into the checkpoint, and a resumed Adam run is the
uninterrupted one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastconv.cli import main
from fastconv.optim import Adam, AdamW
from fastconv.train import load_checkpoint, train
from tests.test_train import assert_same_state, digits, quiet, tiny_model  # noqa: F401  (fixtures)


def test_adam_resume_reproduces_an_uninterrupted_run(tiny_model, digits, tmp_path):  # noqa: F811
    args = dict(optimizer="adam", progress=False, log=quiet)
    straight = train(tiny_model, digits, epochs=2, out_dir=tmp_path / "straight", **args)
    train(tiny_model, digits, epochs=1, out_dir=tmp_path / "split", **args)
    resumed = train(tiny_model, digits, epochs=2, out_dir=tmp_path / "split", resume=True,
                    progress=False, log=quiet)
    assert_same_state(resumed.model.state_dict(), straight.model.state_dict())
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert a.meta["hyperparameters"]["optimizer"] == "adam"
    assert a.meta["hyperparameters"]["lr"] == 1e-3            # Adam's default, not SGD's
    state = {k: np.asarray(v) for k, v in a.optimizer_state.items()}
    assert int(state["step"]) == 2 * 6 and "exp_avg.0" in state and "momentum_buffer.0" not in state
    assert_same_state(state, {k: np.asarray(v) for k, v in b.optimizer_state.items()})


def test_optimizer_choice_and_errors(digits, tmp_path):  # noqa: F811
    result = train("cnn", digits, epochs=1, out_dir=tmp_path / "w", optimizer="adamw", lr=2e-3,
                   weight_decay=0.05, progress=False, log=quiet)
    state = load_checkpoint(tmp_path / "w").optimizer_state
    assert float(state["weight_decay"]) == 0.05 and float(state["lr"]) == 2e-3
    assert not bool(state["amsgrad"])
    assert result.history[0]["lr"] == 2e-3
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        train("cnn", digits, epochs=1, out_dir=tmp_path / "x", optimizer="lbfgs", progress=False, log=quiet)


def test_cli_optimizer_flag(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--model", "cnn", "--dataset", "digits", "--limit", "100", "--backend", "numpy",
              "--out", str(run), "--no-progress"]
    assert main(["train", "--epochs", "1", "--optimizer", "adamw", *common]) == 0
    with np.load(run / "model.npz", allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        assert meta["hyperparameters"]["optimizer"] == "adamw"
        assert "optimizer/exp_avg_sq.0" in npz.files
    assert main(["train", "--epochs", "2", "--resume", *common]) == 0
    assert int(load_checkpoint(run).optimizer_state["step"]) == 2 * 2   # 100 images, batch 50
    assert main(["train", "--optimizer", "rmsprop", *common]) == 2       # a usage error
    assert "invalid choice" in capsys.readouterr().err
    assert AdamW.__mro__[1] is Adam
