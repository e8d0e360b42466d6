"""`train`: set up a run (new, or resumed from its checkpoint), hand it to a `Trainer`.

Order of checks, so that mistakes cost nothing: the ``FASTCONV_*`` variables and
the backend, settings and model options first, then (for a new run) the data and the
model; the output folder is locked only after that, and everything that reads or
writes it happens under the lock.  A new run that fails before writing anything
leaves no folder behind.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

import fastconv
from fastconv.system import env
from fastconv.checkpoint import CHECKPOINT_NAME, load_checkpoint, restore_rng_states
from fastconv.checkpoint.meta import MalformedCheckpointError
from fastconv.data.dataset import Dataset
from fastconv.data.resolve import dataset_spec, is_reference, resolve_dataset
from fastconv.checkpoint.files import LOCK_NAME, locked_folder, remove_stale_temp_files
from fastconv.training.hyperparameters import (Hyperparameters, check_hyperparameters, check_setting,
                                               default_hyperparameters, with_optimizer_lr)
from fastconv.training.model_setup import check_model_fits, check_model_options, model_config
from fastconv.training.state import Progress, Run, TrainResult
from fastconv.training.trainer import HISTORY_NAME, ITERATIONS_NAME, Trainer
from fastconv.training.world import LocalWorld

OUTPUT_NAMES = (CHECKPOINT_NAME, HISTORY_NAME, ITERATIONS_NAME)
SETTINGS = ("batch_size", "lr", "momentum", "weight_decay", "lr_step", "lr_gamma")


def _log_default(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stdout)


def train(model_name: str, dataset, epochs: int = 10, batch_size: int | None = None,
          lr: float | None = None, momentum: float | None = None,
          weight_decay: float | None = None, lr_step: int | None = None,
          lr_gamma: float | None = None, batch_norm: bool | None = None,
          dropout: float | None = None, out_dir="runs/latest", seed: int | None = None,
          resume: bool = False, overwrite: bool = False, progress: bool = True,
          limit: int | None = None, data_root=None, download: bool = False,
          dtype=None, backend: str | None = None, eval_batch_size: int = 500,
          on_batch_end: Callable[[dict], None] | None = None, plots: bool = True,
          log: Callable[[str], None] | None = None, world=None, optimizer: str | None = None) -> TrainResult:
    """Train ``model_name`` on ``dataset`` for ``epochs`` epochs (in total: with
    ``resume`` it continues an earlier run in ``out_dir`` up to that many).

    ``dataset`` is a name (``mnist``, ``fashion-mnist``, ``digits``, ``letters``), a
    path, or a loaded `fastconv.data.Dataset`.  Hyper-parameters left as None take
    `default_hyperparameters` (ranges: `fastconv.training.hyperparameters`);
    ``optimizer`` is ``sgd`` (default), ``adam`` or ``adamw`` (then ``lr`` defaults to
    `fastconv.optim.DEFAULT_LR`);
    ``batch_norm`` / ``dropout`` apply to ``letters-cnn``; ``seed`` defaults to 0 and
    ``dtype`` to float32.  ``backend`` selects a backend for this call only.
    ``on_batch_end(info)`` is called after every optimiser step with ``epoch``,
    ``batch``, ``iteration``, ``loss``, ``acc``.  With ``resume`` the model, data set
    and settings come from the checkpoint (``model_name`` and ``dataset`` may be
    None); a setting passed that differs from it is an error.  ``out_dir`` must not
    already hold a checkpoint unless ``resume`` or ``overwrite``, and is locked while
    the run lasts.  ``world``: the processes that train together
    (`fastconv.distributed`; default this one alone).
    """
    env.check()                  # a bad FASTCONV_* value: before the data or the folder
    world = world or LocalWorld()
    log = (log or (_log_default if progress else print)) if world.is_writer else (lambda message: None)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    chosen = dict(batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                  lr_step=lr_step, lr_gamma=lr_gamma, optimizer=optimizer)
    for name, value in chosen.items():
        if value is not None:
            check_setting(name, value)
    options = dict(batch_norm=batch_norm, dropout=dropout, seed=seed, limit=limit, dtype=dtype)
    out_dir = Path(out_dir)
    context = fastconv.use_backend(backend) if backend else contextlib.nullcontext()
    with context, contextlib.ExitStack() as held:
        fastconv.get_backend()   # the default one is chosen (and FASTCONV_BACKEND checked) here
        if resume:
            run = _resumed_run(model_name, dataset, chosen, options, out_dir, data_root, download,
                               world, log, held)
        else:
            run = _new_run(model_name, dataset, chosen, options, out_dir, overwrite, data_root,
                           download, world, held)
        world.prepare_model(run.model)
        _log_start(run, world, log)
        trainer = Trainer(run, world, log, progress, on_batch_end, eval_batch_size)
        interrupted, message = trainer.fit(epochs)
        if plots and world.is_writer and (run.history or run.iteration_log["loss"]):
            from fastconv.viz import plot_training_curves

            plot_training_curves(out_dir)
    saved = run.checkpoint_path if trainer.saved is not None else None
    return TrainResult(out_dir=out_dir, history=run.history, interrupted=interrupted, checkpoint=saved,
                       model=run.model, num_parameters=run.model.num_parameters(), message=message,
                       dataset_name=run.data.name, train_images=len(run.data.train_y),
                       test_images=len(run.data.test_y))


# ------------------------------------------------------------------ the output folder
@contextlib.contextmanager
def _held(out_dir: Path, world):
    """The lock on ``out_dir`` (rank 0 only: the other ranks never touch it), with the
    temporary files of a killed run removed."""
    if not world.is_writer:
        yield
        return
    created = not out_dir.exists()
    with locked_folder(out_dir, "another fastconv train"):
        remove_stale_temp_files(out_dir, OUTPUT_NAMES)
        try:
            yield
        except BaseException:
            if created:
                _remove_if_unused(out_dir)
            raise


def _remove_if_unused(out_dir: Path) -> None:
    """Remove a folder this run created and left holding nothing but its lock (done
    while the lock is held: no other run can be using it)."""
    try:
        if set(os.listdir(out_dir)) <= {LOCK_NAME}:
            (out_dir / LOCK_NAME).unlink(missing_ok=True)
            out_dir.rmdir()
    except OSError:
        pass                     # (Windows keeps an open file; a file appeared): leave it


def _refuse_existing(out_dir: Path, overwrite: bool) -> None:
    if (out_dir / CHECKPOINT_NAME).exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a checkpoint; resume it (--resume), "
                              "overwrite it (--overwrite) or choose another output folder")


# ------------------------------------------------------------------ a new run
def _new_run(model_name, dataset, chosen, options, out_dir, overwrite, data_root, download, world,
             held: contextlib.ExitStack) -> Run:
    _refuse_existing(out_dir, overwrite)  # fail fast; checked again under the lock
    check_model_options(model_name, options["batch_norm"], options["dropout"])
    batch_norm = options["batch_norm"]
    defaults = default_hyperparameters(model_name, True if batch_norm is None else batch_norm)
    hyper = Hyperparameters(**{k: (getattr(defaults, k) if v is None else v) for k, v in chosen.items()})
    hyper = with_optimizer_lr(hyper, lr_given=chosen["lr"] is not None)
    check_hyperparameters(hyper)
    seed = 0 if options["seed"] is None else int(options["seed"])
    dtype = np.dtype(options["dtype"] or "float32")
    data = world.writer_first(lambda: resolve_dataset(dataset, data_root, download, seed, options["limit"]))
    config = model_config(model_name, data, batch_norm, options["dropout"], dtype, seed)
    meta_base = {"model": model_name, "model_config": config, "dataset": dataset_spec(dataset, data),
                 # A Dataset object passed in: "dataset" is only its name, maybe not loadable.
                 "dataset_in_memory": not is_reference(dataset)}
    run = _assemble(model_name, config, data, hyper, seed, options["limit"], out_dir, meta_base)
    held.enter_context(_held(out_dir, world))
    if world.is_writer:
        _refuse_existing(out_dir, overwrite)
    return run


# ------------------------------------------------------------------ a resumed run
def _resumed_run(model_name, dataset, chosen, options, out_dir, data_root, download, world, log,
                 held: contextlib.ExitStack) -> Run:
    if world.is_writer and not (out_dir / CHECKPOINT_NAME).is_file():
        raise FileNotFoundError(f"no checkpoint at {out_dir / CHECKPOINT_NAME} to resume")
    held.enter_context(_held(out_dir, world))
    checkpoint = world.broadcast_object(load_checkpoint(out_dir / CHECKPOINT_NAME)
                                        if world.is_writer else None)
    _check_resumable(checkpoint, model_name, dataset, chosen, options)
    meta = checkpoint.meta
    hyper = Hyperparameters(**meta["hyperparameters"])
    seed, limit = meta["seed"], meta.get("limit")
    source = dataset if isinstance(dataset, Dataset) else meta["dataset"]
    data = world.writer_first(lambda: resolve_dataset(source, data_root, download, seed, limit))
    base = {"model": meta["model"], "model_config": meta["model_config"], "dataset": meta["dataset"],
            "dataset_in_memory": meta.get("dataset_in_memory", False)}
    run = _assemble(meta["model"], meta["model_config"], data, hyper, seed, limit, out_dir, base)
    _restore(run, checkpoint)
    log(f"resuming {run.model_name} on {data.name} from {checkpoint.path} ({_where(run.progress)})")
    return run


def _where(progress: Progress) -> str:
    if progress.complete:
        return f"after epoch {progress.epochs_done}"
    return f"in epoch {progress.epochs_done + 1} after batch {progress.batches_done}"


def _check_resumable(checkpoint, model_name, dataset, chosen: dict, options: dict) -> None:
    """Refuse a checkpoint that is not a training run, or that was trained with a
    different model, data set or setting than one passed now."""
    meta, path = checkpoint.meta, checkpoint.path
    if not checkpoint.is_training_run:
        raise ValueError(f"{path} holds a model saved by fastconv.save, not a training run to resume")
    if model_name is not None and model_name != meta["model"]:
        raise ValueError(f"{path} was trained with model {meta['model']!r}, not {model_name!r}")
    if meta.get("dataset_in_memory") and not isinstance(dataset, Dataset):
        raise ValueError(f"{path} was trained on an in-memory data set "
                         f"({meta['dataset_name']!r}); pass that Dataset object to resume")
    if is_reference(dataset):
        wanted = str(dataset)
        if wanted not in (meta["dataset"], meta["dataset_name"]) and \
                str(Path(wanted).resolve()) != meta["dataset"]:
            raise ValueError(f"{path} was trained on {meta['dataset']!r}, not {wanted!r}")
    config = meta["model_config"]
    stored = dict({"optimizer": Hyperparameters.optimizer}, **meta["hyperparameters"], seed=meta["seed"], limit=meta.get("limit"),
                  dtype=config.get("dtype", "float32"), batch_norm=config.get("batch_norm"),
                  dropout=config.get("dropout"))
    asked = dict(chosen, **options)
    if asked["dtype"] is not None:
        asked["dtype"] = np.dtype(asked["dtype"]).name
    for name, value in asked.items():
        if value is not None and value != stored.get(name):
            flag = "--no-bn" if name == "batch_norm" else f"--{name.replace('_', '-')}"
            raise ValueError(f"cannot resume {path} with {name} {value!r}: it was trained with "
                             f"{stored.get(name)!r} (leave out {flag} to continue it, or start a "
                             f"new run in another folder)")
    try:
        check_hyperparameters(Hyperparameters(**meta["hyperparameters"]))
    except ValueError as exc:
        raise ValueError(f"{path} cannot be resumed: {exc}") from None


def _restore(run: Run, checkpoint) -> None:
    """The checkpoint's weights, optimiser, schedule, RNG, logs and progress into ``run``."""
    try:
        run.model.load_state_dict(checkpoint.model_state)
        run.optimizer.load_state_dict(checkpoint.optimizer_state)
        run.scheduler.load_state_dict(checkpoint.scheduler_state)
        restore_rng_states(run.model, checkpoint.meta.get("rng", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedCheckpointError(f"{checkpoint.path}: malformed checkpoint: {exc}") from None
    run.history = list(checkpoint.meta["history"])
    run.iteration_log = {key: np.asarray(checkpoint.iteration_log.get(key, [])).tolist()
                         for key in ("epoch", "loss", "acc")}
    run.progress = Progress(**checkpoint.meta["progress"])
    run.resumed = True


# ------------------------------------------------------------------ either
def _assemble(model_name, config, data, hyper, seed, limit, out_dir, meta_base) -> Run:
    """Model, loss, optimiser and schedule for ``hyper``, checked against ``data``."""
    from fastconv.models import build_model, default_loss
    from fastconv.optim import StepLR, make_optimizer

    dtype = np.dtype(config.get("dtype", "float32"))
    model = build_model(model_name, **config)
    check_model_fits(model, model_name, data, dtype)
    optimizer = make_optimizer(hyper.optimizer, model.parameters(), hyper.lr, hyper.momentum,
                               hyper.weight_decay)
    meta_base = dict(meta_base, dataset_name=data.name, classes=[str(c) for c in data.classes],
                     seed=int(seed), limit=limit, hyperparameters=asdict(hyper),
                     num_parameters=model.num_parameters())
    return Run(model_name=model_name, model=model, loss_fn=default_loss(model_name), optimizer=optimizer,
               scheduler=StepLR(optimizer, step_size=hyper.lr_step, gamma=hyper.lr_gamma), data=data,
               hyper=hyper, seed=int(seed), dtype=dtype, out_dir=out_dir, meta_base=meta_base,
               checkpoint_path=out_dir / CHECKPOINT_NAME)


def _log_start(run: Run, world, log) -> None:
    hyper, data = run.hyper, run.data
    ranks = f", {world.describe()}" if world.size > 1 else ""
    log(f"{run.model_name} ({run.model.num_parameters():,} parameters) on {data.name}: "
        f"{len(data.train_y)} train / {len(data.test_y)} test images, backend "
        f"{fastconv.get_backend().name}{ranks}, batch {hyper.batch_size}, "
        f"{hyper.optimizer} lr {run.optimizer.lr:g}, momentum {hyper.momentum:g}, weight decay {hyper.weight_decay:g}")
