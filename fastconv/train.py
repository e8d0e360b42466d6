"""The training loop's public names, in one place (``from fastconv.train import train``).

`train` fits one of `fastconv.models.MODELS` on a data set with SGD + `StepLR` on
whichever backend is selected, evaluates on the test split after every epoch and
writes to ``out_dir`` (locked while the run lasts):

* ``model.npz`` -- the checkpoint (`fastconv.checkpoint`): weights, optimiser and
  schedule state, dropout RNG state, model and data set identity, progress, and the
  logs.  Plain arrays plus one JSON string, no pickle; written atomically.
* ``history.json`` -- one record per epoch: ``epoch``, ``train_loss``, ``train_acc``,
  ``test_loss``, ``test_acc``, ``seconds`` (training time of the epoch, evaluation
  excluded), ``eval_seconds``, ``images_per_second``, ``lr``, ``backend``.
* ``iterations.json`` -- per training iteration: ``epoch``, ``loss``, ``acc``.
* ``curves_iteration.png`` and ``curves_epoch.png``.

The logs are written after the checkpoint, so they never run ahead of it.

Reproducibility and resuming: the shuffling order of epoch ``e`` is seeded by
``(seed, e)`` (`epoch_seed`), not by a stream that runs across epochs, so a run
resumed from a checkpoint sees exactly the batches an uninterrupted run would; the
dropout generators' states are saved too.  Resuming (``resume=True``) therefore
reproduces the uninterrupted run's weights bit for bit on the same backend.

The code lives in `fastconv.training` (loop), `fastconv.checkpoint` (the file
format; `fastconv.checkpoint.files`: atomic writes, the folder lock) and
`fastconv.data.resolve` (data set names and paths).
"""

from fastconv.checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_NAME, Checkpoint, load_checkpoint,
                                 model_from_checkpoint, save_checkpoint)
from fastconv.checkpoint.files import write_json_atomic, write_npz_atomic
from fastconv.data.resolve import resolve_dataset
from fastconv.training.evaluation import evaluate
from fastconv.training.hyperparameters import (LETTERS_BN, LETTERS_NO_BN, REPORT000_CNN, REPORT000_MLP1,
                                               REPORT000_MLP2, Hyperparameters, default_hyperparameters,
                                               epoch_seed)
from fastconv.training.model_setup import as_model_input, check_model_fits, check_model_options, model_config
from fastconv.training.runs import train
from fastconv.training.state import TrainResult
from fastconv.training.trainer import HISTORY_NAME, ITERATIONS_NAME, Trainer, TrainingDivergedError

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "HISTORY_NAME", "ITERATIONS_NAME",
    "Checkpoint", "load_checkpoint", "model_from_checkpoint", "save_checkpoint",
    "resolve_dataset", "write_json_atomic", "write_npz_atomic", "evaluate",
    "Hyperparameters", "REPORT000_CNN", "REPORT000_MLP1", "REPORT000_MLP2", "LETTERS_BN", "LETTERS_NO_BN",
    "default_hyperparameters", "epoch_seed",
    "as_model_input", "check_model_fits", "check_model_options", "model_config",
    "train", "TrainResult", "Trainer", "TrainingDivergedError",
]
