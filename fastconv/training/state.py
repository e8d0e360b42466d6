"""What a run is made of (`Run`), where it stands (`Progress`) and what `train` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastconv.training.hyperparameters import Hyperparameters


@dataclass
class Progress:
    """Where the run is: ``epochs_done`` complete epochs plus ``batches_done`` batches
    of the next one, with that partial epoch's running sums."""

    epochs_done: int = 0
    batches_done: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    complete: bool = True  # True when batches_done == 0 (an epoch boundary)


@dataclass
class Run:
    """Everything fixed for one run, built by `fastconv.training.runs`; the `Trainer`
    advances ``progress``, ``history`` and ``iteration_log``."""

    model_name: str
    model: object
    loss_fn: object
    optimizer: object
    scheduler: object
    data: object
    hyper: Hyperparameters
    seed: int
    dtype: np.dtype
    out_dir: Path
    meta_base: dict
    checkpoint_path: Path
    resumed: bool = False
    progress: Progress = field(default_factory=Progress)
    history: list = field(default_factory=list)
    iteration_log: dict = field(default_factory=lambda: {"epoch": [], "loss": [], "acc": []})


@dataclass
class TrainResult:
    """What `train` returns."""

    out_dir: Path
    history: list[dict]
    interrupted: bool = False
    checkpoint: Path | None = None
    model: object = None
    num_parameters: int = 0
    message: str = ""
    dataset_name: str = ""
    train_images: int = 0
    test_images: int = 0
