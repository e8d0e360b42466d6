"""The training loop: end-to-end runs, checkpoints, resume, atomic writes, Ctrl-C.

Small on purpose (a few hundred images, 1-2 epochs): each test says something that
would break if the loop, the checkpoint format or the resume logic were wrong.
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from fastconv import models, nn
from fastconv.data import Dataset, load_dataset
from fastconv.train import (
    CHECKPOINT_NAME,
    default_hyperparameters,
    epoch_seed,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    train,
)


def quiet(message):  # keep test output short
    pass


@pytest.fixture(scope="module")
def digits():
    """300 train / 120 test images of scikit-learn's digits at 28x28: real
    handwriting, no download, ~0.3 s per epoch of report 000's CNN on numpy."""
    data = load_dataset("digits", seed=0)
    keep_train, keep_test = slice(0, 300), slice(0, 120)
    return Dataset("digits", data.train_x[keep_train], data.train_y[keep_train],
                   data.test_x[keep_test], data.test_y[keep_test], data.classes)


@pytest.fixture(scope="module")
def tiny_letters(tmp_path_factory):
    """A tiny synthetic letters set, loaded through the image-folder (PATH) route:
    26 classes of 32x32 glyphs, 3 per class."""
    from fastconv.data.letters import generate_letters

    root = tmp_path_factory.mktemp("letters")
    generate_letters(root, per_class=3, seed=0)
    return str(root)


def tiny_dropout_net(dtype=np.float32, seed: int = 0) -> nn.Sequential:
    """BN + dropout + residual in a network cheap enough for resume tests: every kind
    of state a checkpoint must carry (momentum buffers, running stats, RNG)."""
    rng = nn.as_generator(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, dtype=dtype, rng=rng), nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(),
        nn.AvgPool2d(4),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, dtype=dtype, rng=rng), nn.ReLU(),
                                  nn.Dropout(0.3, rng=rng))),
        nn.Flatten(), nn.Linear(4 * 7 * 7, 10, dtype=dtype, rng=rng),
    )


@pytest.fixture
def tiny_model(monkeypatch):
    monkeypatch.setitem(models.MODELS, "tiny-dropout", tiny_dropout_net)
    return "tiny-dropout"


def files_in(path):
    return sorted(p.name for p in path.iterdir())


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ------------------------------------------------------------------ end to end
def test_cnn_learns_digits_and_writes_outputs(backend, digits, tmp_path):
    result = train("cnn", digits, epochs=2, out_dir=tmp_path, seed=0, progress=False, log=quiet)
    assert not result.interrupted and len(result.history) == 2
    iterations = json.loads((tmp_path / "iterations.json").read_text())
    losses = iterations["loss"]
    assert len(losses) == 2 * 6  # 300 images / batch 50, two epochs
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    history = json.loads((tmp_path / "history.json").read_text())
    for key in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "lr", "backend"):
        assert key in history[0]
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[-1]["test_acc"] > 0.3  # chance is 0.1
    assert history[0]["backend"] == backend.name
    assert history[0]["lr"] == 0.1
    with np.load(tmp_path / CHECKPOINT_NAME, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        assert meta["model"] == "cnn" and meta["dataset"] == "digits"
        assert meta["classes"] == [str(d) for d in range(10)]
        assert meta["progress"]["epochs_done"] == 2 and meta["progress"]["complete"]
        assert npz["model/layers.0.weight"].shape == (4, 1, 5, 5)
    assert {"curves_epoch.png", "curves_iteration.png"} <= set(files_in(tmp_path))
    assert not [name for name in files_in(tmp_path) if name.endswith(".tmp")]


def test_mlp2_trains_with_euclidean_loss(backend, digits, tmp_path):
    # lr 0.02, not the report's 0.1: with He initialisation the Euclidean loss on these
    # upscaled digits (far more ink per image than MNIST) diverges at 0.1; on MNIST
    # 0.1 trains fine (0.88 test accuracy after 2 epochs of the 8k split).
    result = train("mlp2", digits, epochs=2, lr=0.02, out_dir=tmp_path, progress=False, log=quiet)
    assert result.num_parameters == 386_718
    # Euclidean loss of one-hot targets starts near 0.5 * (1 + noise) and must fall
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.history[-1]["test_acc"] > 0.3


def test_letters_cnn_on_an_image_folder(backend, tiny_letters, tmp_path):
    result = train("letters-cnn", tiny_letters, epochs=1, limit=8, batch_size=4, dropout=0.3,
                   out_dir=tmp_path, progress=False, log=quiet)
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.meta["model_config"]["num_classes"] == 26
    assert checkpoint.meta["model_config"]["dropout"] == 0.3
    assert checkpoint.meta["dataset"] == os.path.realpath(tiny_letters)
    assert len(checkpoint.meta["classes"]) == 26
    assert np.isfinite(result.history[0]["train_loss"])
    assert len(checkpoint.iteration_log["loss"]) == 2


def test_backend_warmup_runs_before_the_first_batch(digits, tmp_path, monkeypatch):
    """JIT compilation belongs to no epoch: a backend's ``warmup`` hook runs, for the
    model's dtype, before any batch is trained (and not when nothing is left to train)."""
    import fastconv

    events = []
    backend = fastconv.get_backend()
    monkeypatch.setattr(backend, "warmup", lambda dtypes, jobs, **options: events.append(("warmup", dtypes))
                        or 0.0, raising=False)
    train("mlp1", digits, epochs=1, limit=50, dtype="float64", out_dir=tmp_path, progress=False,
          log=quiet, on_batch_end=lambda info: events.append("batch"))
    assert events[0] == ("warmup", (np.dtype(np.float64),))
    assert events[1:] and set(events[1:]) == {"batch"}
    events.clear()
    train("mlp1", digits, epochs=1, limit=50, out_dir=tmp_path, resume=True, progress=False, log=quiet)
    assert events == []


def test_float64_training(digits, tmp_path):
    result = train("cnn", digits, epochs=1, dtype="float64", out_dir=tmp_path, progress=False, log=quiet)
    model = model_from_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert model.parameters()[0].data.dtype == np.float64
    assert result.history[0]["test_acc"] > 0.2


def test_report000_defaults_and_halving_schedule(digits, tmp_path):
    hyper = default_hyperparameters("cnn")
    assert (hyper.batch_size, hyper.lr, hyper.momentum, hyper.weight_decay) == (50, 0.1, 1e-4, 2e-4)
    assert (hyper.lr_step, hyper.lr_gamma) == (5, 0.5)
    result = train("mlp1", digits, epochs=3, lr_step=1, limit=50, out_dir=tmp_path, progress=False, log=quiet)
    assert [r["lr"] for r in result.history] == [0.1, 0.05, 0.025]


def test_model_and_data_must_fit(tiny_letters, digits, tmp_path):
    with pytest.raises(ValueError, match="cannot take"):
        train("cnn", tiny_letters, epochs=1, out_dir=tmp_path, progress=False, log=quiet)
    with pytest.raises(ValueError, match="no batch_norm option"):
        train("cnn", digits, epochs=1, batch_norm=False, out_dir=tmp_path, progress=False, log=quiet)
    with pytest.raises(ValueError, match="unknown dataset"):
        train("cnn", "no-such-dataset", epochs=1, out_dir=tmp_path, progress=False, log=quiet)


# ------------------------------------------------------------------ checkpoints and resume
def test_checkpoint_round_trip_predicts_the_same(digits, tmp_path):
    result = train("cnn", digits, epochs=1, out_dir=tmp_path, progress=False, log=quiet)
    rebuilt = model_from_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert_same_state(rebuilt.state_dict(), result.model.state_dict())
    x = digits.test_x[:20]
    np.testing.assert_array_equal(rebuilt.eval().forward(x), result.model.eval().forward(x))


def test_resume_reproduces_an_uninterrupted_run(tiny_model, digits, tmp_path):
    straight = train(tiny_model, digits, epochs=2, out_dir=tmp_path / "straight", progress=False, log=quiet)
    first = train(tiny_model, digits, epochs=1, out_dir=tmp_path / "split", progress=False, log=quiet)
    assert len(first.history) == 1
    with pytest.raises(ValueError, match="in-memory"):  # "digits" by name is the full set
        train(tiny_model, "digits", epochs=2, out_dir=tmp_path / "split", resume=True, log=quiet)
    resumed = train(tiny_model, digits, epochs=2, out_dir=tmp_path / "split", resume=True,
                    progress=False, log=quiet)
    assert len(resumed.history) == 2
    assert_same_state(resumed.model.state_dict(), straight.model.state_dict())
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "split")
    assert_same_state({k: np.asarray(v) for k, v in a.optimizer_state.items()},
                      {k: np.asarray(v) for k, v in b.optimizer_state.items()})
    assert a.meta["rng"] == b.meta["rng"]  # dropout generator continued, not reseeded
    np.testing.assert_array_equal(a.iteration_log["loss"], b.iteration_log["loss"])
    assert [r["test_acc"] for r in straight.history] == [r["test_acc"] for r in resumed.history]


def test_epoch_seeds_differ_per_epoch_and_repeat_per_seed():
    assert epoch_seed(0, 0) == epoch_seed(0, 0)
    assert len({epoch_seed(0, e) for e in range(20)} | {epoch_seed(1, 0)}) == 21


def test_resume_refuses_another_model_and_overwrite_needs_asking(digits, tmp_path):
    train("cnn", digits, epochs=1, limit=50, out_dir=tmp_path, progress=False, log=quiet)
    with pytest.raises(ValueError, match="trained with model 'cnn'"):
        train("mlp1", digits, epochs=2, out_dir=tmp_path, resume=True, progress=False, log=quiet)
    with pytest.raises(FileExistsError, match="--resume"):
        train("cnn", digits, epochs=1, out_dir=tmp_path, progress=False, log=quiet)
    with pytest.raises(FileNotFoundError):
        train("cnn", digits, epochs=1, out_dir=tmp_path / "empty", resume=True, progress=False, log=quiet)


def test_failed_checkpoint_write_keeps_the_previous_one(digits, tmp_path, monkeypatch):
    result = train("cnn", digits, epochs=1, limit=50, out_dir=tmp_path, progress=False, log=quiet)
    path = tmp_path / CHECKPOINT_NAME
    before = path.read_bytes()

    def savez_that_dies(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")  # some bytes reach the temp file...
        raise OSError("disk full")  # ...then the write fails

    monkeypatch.setattr(np, "savez", savez_that_dies)
    model = result.model
    from fastconv.optim import SGD, StepLR

    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.5)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, optimizer, StepLR(optimizer, 5), {"progress": {}}, {})
    assert path.read_bytes() == before
    assert files_in(tmp_path) == sorted([".fastconv.lock", "curves_epoch.png", "curves_iteration.png",
                                         "history.json", "iterations.json", CHECKPOINT_NAME])
    monkeypatch.undo()
    assert load_checkpoint(path).meta["progress"]["epochs_done"] == 1


def test_checkpoint_is_pickle_free_and_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastconv checkpoint"):
        load_checkpoint(tmp_path / "other.npz")


# ------------------------------------------------------------------ Ctrl-C
def interrupt_at(iteration: int, how: str):
    def on_batch_end(info):
        if info["iteration"] == iteration:
            if how == "signal":
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
            else:
                raise KeyboardInterrupt
    return on_batch_end


@pytest.fixture
def default_sigint():
    """Python's own Ctrl-C handler for the test, whatever the runner's (a runner started
    in the background or under nohup has SIGINT ignored), restored afterwards."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("how", ["signal", "exception"])
def test_interrupt_mid_epoch_saves_and_resumes_exactly(how, tiny_model, digits, tmp_path, default_sigint):
    straight = train(tiny_model, digits, epochs=2, out_dir=tmp_path / "straight", progress=False, log=quiet)
    messages = []
    stopped = train(tiny_model, digits, epochs=2, out_dir=tmp_path / "run", progress=False,
                    log=messages.append, on_batch_end=interrupt_at(8, how))  # epoch 2, batch 2
    assert stopped.interrupted
    assert "interrupted" in messages[-1] and "--resume" in messages[-1]
    assert "batch 2/6" in messages[-1]
    checkpoint = load_checkpoint(tmp_path / "run")
    assert not checkpoint.complete
    assert checkpoint.meta["progress"]["epochs_done"] == 1 and checkpoint.meta["progress"]["batches_done"] == 2
    assert len(checkpoint.iteration_log["loss"]) == 8
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    resumed = train(tiny_model, digits, epochs=2, out_dir=tmp_path / "run", resume=True,
                    progress=False, log=quiet)
    assert not resumed.interrupted
    assert_same_state(resumed.model.state_dict(), straight.model.state_dict())
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in straight.history])


def test_ignored_sigint_stays_ignored(tiny_model, digits, tmp_path):
    """Started with SIGINT ignored (nohup, a background job), training installs no
    handler of its own: a SIGINT neither stops it nor survives as a handler."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run = train(tiny_model, digits, epochs=1, out_dir=tmp_path / "run", progress=False, log=quiet,
                    on_batch_end=interrupt_at(2, "signal"))
        assert not run.interrupted and load_checkpoint(tmp_path / "run").complete
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_interrupt_inside_an_update_keeps_the_last_complete_epoch(digits, tmp_path, monkeypatch):
    from fastconv import optim

    real_step = optim.SGD.step
    calls = {"n": 0}

    def step_interrupted_in_epoch_2(self):
        calls["n"] += 1
        if calls["n"] == 9:  # epoch 2 (6 batches per epoch), mid-update
            self.params[0].data += 1.0  # half-applied update
            raise KeyboardInterrupt
        real_step(self)

    monkeypatch.setattr(optim.SGD, "step", step_interrupted_in_epoch_2)
    messages = []
    result = train("cnn", digits, epochs=3, out_dir=tmp_path, progress=False, log=messages.append)
    assert result.interrupted
    assert any("not saved" in m for m in messages)
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint.complete and checkpoint.meta["progress"]["epochs_done"] == 1
    assert len(json.loads((tmp_path / "history.json").read_text())) == 1
    assert not [name for name in files_in(tmp_path) if name.endswith(".tmp")]


def _imported_modules(path) -> set[str]:
    """Every module a source file imports, at any depth (function-level imports too)."""
    import ast

    tree = ast.parse(open(path, encoding="utf-8").read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_import_cycle_between_training_and_plots():
    """Plots and checkpoints never import the training loop (it imports them)."""
    import fastconv

    package = os.path.dirname(fastconv.__file__)
    checkpoint = [os.path.join("checkpoint", name) for name in ("__init__.py", "meta.py", "files.py", "npz.py")]
    for module in ("viz.py", *checkpoint, os.path.join("data", "resolve.py")):
        imported = _imported_modules(os.path.join(package, module))
        assert not {name for name in imported
                    if name.startswith(("fastconv.train", "fastconv.training"))}, module
