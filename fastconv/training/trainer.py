"""`Trainer`: the epoch loop of a `Run`, one method per stage.

    batches      the global batches of an epoch, from a permutation seeded by
                 (seed, epoch) alone; each rank takes its share (`World.shard`)
    step         forward, backward, gradient reduction (`World.reduce_step`), SGD
    evaluate     the test split, sharded and summed over ranks
    checkpoint   rank 0 writes ``model.npz`` first, then the logs that mirror it

Ctrl-C: the first one stops after the current batch and saves that mid-epoch state
(``"complete": false``, resumable); a second one, or a `KeyboardInterrupt` while a
parameter update is half done, stops at once and keeps the last consistent
checkpoint.  A loss or weights that turn non-finite stop the run with
`TrainingDivergedError`; the last (finite) checkpoint stays.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np

import fastconv
from fastconv.checkpoint import save_checkpoint
from fastconv.checkpoint.files import write_json_atomic
from fastconv.training.evaluation import evaluate
from fastconv.training.hyperparameters import epoch_seed
from fastconv.training.interrupt import StopFlag, stop_on_sigint
from fastconv.training.model_setup import as_model_input
from fastconv.training.state import Progress, Run
from fastconv.training.world import LocalWorld

HISTORY_NAME = "history.json"
ITERATIONS_NAME = "iterations.json"


class TrainingDivergedError(ValueError):
    """The loss or the weights became NaN or infinite."""


def global_batches(count: int, batch_size: int, seed: int):
    """Index arrays of the global batches of one epoch: the order of
    ``fastconv.data.batches(..., shuffle=True, seed=seed)``."""
    order = np.random.default_rng(seed).permutation(count)
    for start in range(0, count, batch_size):
        yield order[start:start + batch_size]


def _progress_bar(enabled: bool, total: int, initial: int, epoch: int, epochs: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"epoch {epoch}/{epochs}", unit="batch",
                disable=not enabled, leave=False, dynamic_ncols=True, file=sys.stderr)


class Trainer:
    """Trains ``run`` up to a number of epochs; ``world`` holds the multi-process hooks."""

    def __init__(self, run: Run, world=None, log: Callable[[str], None] = print, progress: bool = True,
                 on_batch_end: Callable[[dict], None] | None = None, eval_batch_size: int = 500):
        self.run = run
        self.world = world or LocalWorld()
        self.log = log
        self.show_progress = progress and self.world.is_writer
        self.on_batch_end = on_batch_end
        self.eval_batch_size = eval_batch_size
        self.backend_name = fastconv.get_backend().name
        self.train_y = np.asarray(run.data.train_y)
        self.n_batches = math.ceil(len(self.train_y) / run.hyper.batch_size)
        self.stop = StopFlag()
        self.stop_agreed = False  # the stop request as all ranks saw it at the last step
        self.consistent = True  # False while parameters / progress are half updated
        self.unsaved = False  # trained batches not yet in the checkpoint
        self.saved: Progress | None = replace(run.progress) if run.resumed else None

    @property
    def state(self) -> Progress:
        return self.run.progress

    # ------------------------------------------------------------ the loop
    def fit(self, epochs: int) -> tuple[bool, str]:
        """Train until ``epochs`` epochs are done or Ctrl-C; returns (interrupted, message)."""
        interrupted = False
        self._check_shards()
        self._warm_up(epochs)
        self.run.model.train()
        try:
            with stop_on_sigint(self.stop, self.log), self._blas_policy():
                while self.state.epochs_done < epochs and not self._stopping():
                    if self.train_epoch(epochs):
                        self.end_epoch(epochs)
        except KeyboardInterrupt:
            interrupted = True
            if not self.consistent:
                self.log("interrupted during a parameter update: that state is not saved")
            elif self.unsaved:
                self.checkpoint()
            if self.world.size > 1:
                raise  # the other ranks may be waiting in a collective: the job must end
        if self._stopping() and self.state.epochs_done < epochs:
            interrupted = True
            if self.unsaved:
                self.checkpoint()
        return interrupted, self._interrupted_message() if interrupted else ""

    def train_epoch(self, epochs: int) -> bool:
        """The batches of the current epoch not yet trained; False if stopped before its end."""
        epoch = self.state.epochs_done
        bar = _progress_bar(self.show_progress, self.n_batches, self.state.batches_done, epoch + 1, epochs)
        started = time.perf_counter() - self.state.seconds
        try:
            for batch_index, indices in enumerate(self.batches(epoch)):
                if batch_index < self.state.batches_done:
                    continue  # resumed mid-epoch: these batches were trained
                if self._stopping():
                    break
                self.train_batch(epoch, batch_index, indices, started)
                self._show(bar)
        finally:
            bar.close()
        return not (self._stopping() and self.state.batches_done < self.n_batches)

    def batches(self, epoch: int):
        return global_batches(len(self.train_y), self.run.hyper.batch_size,
                              epoch_seed(self.run.seed, epoch))

    def local_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This rank's share of a global batch, as model input and int64 labels."""
        from fastconv.data import to_float

        part = indices[self.world.shard(len(indices))]
        # Through float32 first, as `fastconv.data.batches` does: same values as ever.
        x = as_model_input(to_float(self.run.data.train_x[part]), self.run.dtype)
        return x, self.train_y[part].astype(np.int64)

    def train_batch(self, epoch: int, batch_index: int, indices: np.ndarray, started: float) -> None:
        x, y = self.local_batch(indices)
        self.consistent = False
        loss, correct = self.step(x, y, len(indices), epoch, batch_index)
        count = len(indices)
        state = self.state
        state.batches_done += 1
        state.complete = False
        state.loss_sum += loss * count
        state.correct += correct
        state.seen += count
        state.seconds = time.perf_counter() - started
        self.unsaved = True
        log = self.run.iteration_log
        log["epoch"].append(epoch + 1)
        log["loss"].append(loss)
        log["acc"].append(correct / count)
        self.consistent = True
        if self.on_batch_end is not None:
            self.on_batch_end({"epoch": epoch + 1, "batch": batch_index + 1, "iteration": len(log["loss"]),
                               "loss": loss, "acc": correct / count})

    def step(self, x: np.ndarray, y: np.ndarray, global_count: int, epoch: int, batch_index: int):
        """One SGD step on the global batch; returns its (mean loss, number correct)."""
        run = self.run
        share = len(y) / global_count
        run.optimizer.zero_grad()
        logits = run.model.forward(x)
        loss = float(run.loss_fn.forward(logits, y))
        grad = run.loss_fn.backward()
        if share != 1.0:
            # The loss is this rank's mean; weighted by its share of the global batch,
            # the ranks' gradients add up to the global batch's mean gradient.
            grad = grad * grad.dtype.type(share)
        run.model.backward(grad)
        correct = int(np.count_nonzero(logits.argmax(axis=1) == y))
        extras = np.array([loss * share, correct, self.stop.requested], dtype=np.float64)
        extras = self.world.reduce_step(run.optimizer.params, extras)
        loss, correct, self.stop_agreed = float(extras[0]), int(round(extras[1])), bool(extras[2] > 0)
        if not math.isfinite(loss):
            raise self._diverged(f"the training loss is {loss} at epoch {epoch + 1}, batch {batch_index + 1}")
        run.optimizer.step()
        return loss, correct

    def end_epoch(self, epochs: int) -> None:
        """Evaluate, record the epoch, advance the schedule, save."""
        epoch, state, run = self.state.epochs_done, self.state, self.run
        eval_started = time.perf_counter()
        test_loss, test_acc = evaluate(run.model, run.loss_fn, run.data.test_x, np.asarray(run.data.test_y),
                                       self.eval_batch_size, run.dtype, world=self.world)
        eval_seconds = time.perf_counter() - eval_started
        record = {
            "epoch": epoch + 1,
            "train_loss": state.loss_sum / max(state.seen, 1),
            "train_acc": state.correct / max(state.seen, 1),
            "test_loss": float(test_loss), "test_acc": float(test_acc),
            "seconds": state.seconds, "eval_seconds": eval_seconds,
            "images_per_second": state.seen / max(state.seconds, 1e-9),
            "lr": run.optimizer.lr, "backend": self.backend_name,
        }
        self.consistent = False
        run.history.append(record)
        run.scheduler.step()
        run.progress = Progress(epochs_done=epoch + 1)
        self.consistent = True
        self.log(f"epoch {epoch + 1}/{epochs}: train loss {record['train_loss']:.4f} "
                 f"acc {record['train_acc']:.4f} | test loss {test_loss:.4f} acc {test_acc:.4f} "
                 f"| {record['seconds']:.1f} s ({record['images_per_second']:.0f} img/s), "
                 f"eval {eval_seconds:.1f} s")
        self.checkpoint()

    # ------------------------------------------------------------ saving
    def checkpoint(self) -> Path:
        """Save the current state (rank 0 only).  The checkpoint goes first: the logs
        are views of it and may lag behind it after a crash, never run ahead."""
        run = self.run
        if not all(np.isfinite(param.data).all() for param in run.optimizer.params):
            raise self._diverged(f"the weights are not finite after epoch {self.state.epochs_done}")
        if self.world.is_writer:
            meta = dict(run.meta_base, epoch=self.state.epochs_done, history=run.history,
                        progress=asdict(self.state), backend=self.backend_name)
            log = run.iteration_log
            arrays = {"epoch": np.asarray(log["epoch"], dtype=np.int32),
                      "loss": np.asarray(log["loss"], dtype=np.float64),
                      "acc": np.asarray(log["acc"], dtype=np.float64)}
            save_checkpoint(run.checkpoint_path, run.model, run.optimizer, run.scheduler, meta, arrays)
            write_json_atomic(run.out_dir / HISTORY_NAME, run.history)
            write_json_atomic(run.out_dir / ITERATIONS_NAME, log)
        self.saved, self.unsaved = replace(self.state), False
        return run.checkpoint_path

    # ------------------------------------------------------------ helpers
    def _stopping(self) -> bool:
        # One process acts on Ctrl-C at once; ranks act on the request they all saw
        # in the last step's reduction, so they stop after the same batch.
        return self.stop.requested if self.world.size == 1 else self.stop_agreed

    def _check_shards(self) -> None:
        """Every rank needs at least one image of every global batch (batch norm and
        the loss are undefined on none)."""
        batch, count = self.run.hyper.batch_size, len(self.train_y)
        smallest = min(batch, count % batch or batch)
        if smallest < self.world.size:
            raise ValueError(f"{self.world.size} ranks need at least {self.world.size} images in every "
                             f"batch, but with {count} training images and batch size {batch} a batch "
                             f"has {smallest}; change --batch-size or --limit")

    def _warm_up(self, epochs: int) -> None:
        """JIT compilation (or the cache load) before the clock starts: epoch times are run time."""
        if self.state.epochs_done >= epochs:
            self.log(f"nothing to train: the checkpoint already has {self.state.epochs_done} epochs "
                     f"(ask for more with --epochs)")
        else:
            # Only the kernels this model runs; a cold cache is announced, with progress lines.
            from fastconv.startup import prepare_backend

            seconds = self.world.writer_first(lambda: prepare_backend(
                self.run.model, self.run.dtype, log=self.log, progress=self.show_progress,
                jobs=self.world.compile_jobs, background=None if self.world.background_compile else False))
            if seconds is not None:
                self.log(f"{self.backend_name} kernels ready in {seconds:.1f} s "
                         f"(compiled, or loaded from the cache)")

    def _blas_policy(self):
        """The backend's BLAS thread limit for models with convolutions, whose kernels run
        on the backend's own threads between the `Linear` layers' BLAS calls (see
        `fastconv.backends.blas_thread_limit`).  A pure MLP keeps all BLAS threads."""
        from fastconv import nn
        from fastconv.backends import blas_thread_limit

        has_conv = any(isinstance(module, nn.Conv2d) for module in self.run.model.modules())
        return blas_thread_limit() if has_conv else contextlib.nullcontext()

    def _show(self, bar) -> None:
        state = self.state
        bar.update(1)
        bar.set_postfix(loss=f"{state.loss_sum / state.seen:.4f}", acc=f"{state.correct / state.seen:.4f}",
                        img_s=f"{state.seen / max(state.seconds, 1e-9):.0f}", refresh=False)

    def _where_saved(self) -> str:
        saved = self.saved
        if saved.complete:
            return f"after epoch {saved.epochs_done}"
        return (f"mid-epoch: epoch {saved.epochs_done + 1}, batch {saved.batches_done}/{self.n_batches} "
                "(marked incomplete)")

    def _diverged(self, what: str) -> TrainingDivergedError:
        kept = (f"{self.run.checkpoint_path} keeps the state {self._where_saved()}" if self.saved
                else "nothing was saved")
        return TrainingDivergedError(f"{what}: training stopped; {kept}. Lower the learning rate (--lr).")

    def _interrupted_message(self) -> str:
        if self.saved is None:
            message = "interrupted before the first save; nothing was written"
        else:
            message = (f"interrupted; checkpoint {self.run.checkpoint_path} holds the state "
                       f"{self._where_saved()}. Continue with the same command plus --resume.")
        self.log(message)
        return message
