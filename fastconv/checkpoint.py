"""Checkpoints: a run's (or a model's) state in one ``.npz`` file, read without pickle.

Format 1, unchanged since the first trainer, so every earlier ``model.npz`` loads:

* ``meta`` -- one JSON string: the model's registry name and builder config, and for
  a training run the data set, hyper-parameters, progress, per-epoch history,
  optimiser and schedule scalars and dropout RNG states (see `fastconv.checkpoint_meta`);
* ``model/<name>`` -- every parameter and buffer, keyed as in ``model.state_dict()``;
* ``optimizer/momentum_buffer.<i>`` -- SGD's momentum buffers; Adam/AdamW's
  ``optimizer/exp_avg.<i>``, ``exp_avg_sq.<i>`` (and ``max_exp_avg_sq.<i>`` with amsgrad);
* ``log/epoch``, ``log/loss``, ``log/acc`` -- the per-iteration training log.

Writing is atomic (`fastconv.files.write_npz_atomic`).  Reading checks member names
and sizes before reading any array (`fastconv.npz_reader`), then the meta's fields
and types: a damaged, foreign or hand-edited file is one `ValueError` naming it.

Python API:

    fastconv.save(model, "model.npz")           # a model from fastconv.models.build_model
    model = fastconv.load("model.npz")          # rebuilt from its stored name and config
    checkpoint = load_checkpoint("runs/x")      # everything a training run saved
    model = model_from_checkpoint(checkpoint)
    model.load_state_dict(np.load("runs/x/model.npz"))   # weights into a model you built
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fastconv.checkpoint_meta import MalformedCheckpointError, check_meta, kind_of
from fastconv.files import write_npz_atomic
from fastconv.npz_reader import read_npz

CHECKPOINT_NAME = "model.npz"
CHECKPOINT_FORMAT = 1
MAX_META_BYTES = 64 << 20  # the JSON: ~300 bytes per epoch of history
_MEMBER_PATTERN = re.compile(r"meta|model/[\w.]+|optimizer/(momentum_buffer|exp_avg|exp_avg_sq|max_exp_avg_sq)\.\d+|log/(epoch|loss|acc)")


# ------------------------------------------------------------------ RNG state
def rng_states(model) -> dict[str, dict]:
    """State of every `numpy.random.Generator` held by a module (dropout masks),
    keyed ``"<module path>:<attribute>"``."""
    states = {}
    for name, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, np.random.Generator):
                states[f"{name}:{attr}"] = value.bit_generator.state
    return states


def restore_rng_states(model, states: dict[str, dict]) -> None:
    modules = dict(model.named_modules())
    for key, state in states.items():
        name, _, attr = str(key).rpartition(":")
        generator = getattr(modules.get(name), attr, None)
        if not isinstance(generator, np.random.Generator):
            raise ValueError(f"checkpoint has RNG state for {key!r}, which this model lacks")
        generator.bit_generator.state = state


# ------------------------------------------------------------------ writing
def _split_state(state: dict) -> tuple[dict[str, np.ndarray], dict]:
    """A flat state dict -> (arrays for the npz, JSON-able scalars)."""
    arrays, scalars = {}, {}
    for key, value in state.items():
        if isinstance(value, np.ndarray) and value.ndim > 0:
            arrays[key] = value
        elif isinstance(value, (np.generic, np.ndarray)):
            scalars[key] = value.item()
        else:
            scalars[key] = value
    return arrays, scalars


def _model_arrays(model) -> dict[str, np.ndarray]:
    return {f"model/{k}": v for k, v in model.state_dict().items()}


def save_checkpoint(path, model, optimizer, scheduler, meta: dict,
                    iteration_log: dict[str, np.ndarray]) -> Path:
    """Write everything needed to rebuild and resume a run to ``path`` atomically."""
    import fastconv

    optimizer_arrays, optimizer_scalars = _split_state(optimizer.state_dict())
    _, scheduler_scalars = _split_state(scheduler.state_dict())
    meta = dict(meta, format=CHECKPOINT_FORMAT, optimizer=optimizer_scalars,
                scheduler=scheduler_scalars, rng=rng_states(model),
                fastconv_version=fastconv.__version__)
    arrays = _model_arrays(model)
    arrays.update({f"optimizer/{k}": v for k, v in optimizer_arrays.items()})
    arrays.update({f"log/{k}": np.asarray(v) for k, v in iteration_log.items()})
    arrays["meta"] = np.array(json.dumps(meta))
    return write_npz_atomic(path, arrays)


def save(model, path) -> Path:
    """Save a model built by `fastconv.models.build_model` to ``path`` (an ``.npz``:
    its name, builder config, weights and dropout RNG state; atomic, no pickle).
    `load` rebuilds it."""
    import fastconv

    spec = getattr(model, "build_config", None)
    if spec is None:
        raise TypeError("fastconv.save needs a model made by fastconv.models.build_model (it stores "
                        "the name and config that rebuild it); for another Module save "
                        "model.state_dict() with np.savez and load it with model.load_state_dict")
    meta = {"format": CHECKPOINT_FORMAT, "kind": "model", "model": spec["model"],
            "model_config": spec["model_config"], "rng": rng_states(model),
            "fastconv_version": fastconv.__version__}
    arrays = _model_arrays(model)
    arrays["meta"] = np.array(json.dumps(meta))
    return write_npz_atomic(path, arrays)


# ------------------------------------------------------------------ reading
@dataclass
class Checkpoint:
    """A loaded checkpoint: ``meta`` (the JSON part) and the array groups."""

    meta: dict
    model_state: dict[str, np.ndarray]
    optimizer_state: dict = field(default_factory=dict)
    scheduler_state: dict = field(default_factory=dict)
    iteration_log: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    @property
    def is_training_run(self) -> bool:
        """False for a file of `save` (a model without optimiser or progress)."""
        return kind_of(self.meta) == "training"

    @property
    def complete(self) -> bool:
        """False for a mid-epoch snapshot written on Ctrl-C."""
        return bool(self.meta["progress"]["complete"])


def _read_meta(arrays: dict, path: Path) -> dict:
    if "meta" not in arrays:
        raise ValueError(f"{path} is not a fastconv checkpoint: it has no 'meta' entry")
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError as exc:
        raise MalformedCheckpointError(f"{path}: malformed checkpoint: meta is not JSON ({exc})") from None
    check_meta(meta, path, CHECKPOINT_FORMAT)
    return meta


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` or `save` (never unpickles).
    ``path`` may be the run folder.  Damaged or foreign files raise `ValueError`."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    arrays = read_npz(path, accept=_MEMBER_PATTERN.fullmatch, what="fastconv checkpoint",
                      max_bytes=lambda name: MAX_META_BYTES if name == "meta" else None)
    meta = _read_meta(arrays, path)
    groups: dict[str, dict] = {"model": {}, "optimizer": {}, "log": {}}
    for key, value in arrays.items():
        group, _, name = key.partition("/")
        if group in groups:
            groups[group][name] = value
    checkpoint = Checkpoint(meta=meta, model_state=groups["model"], iteration_log=groups["log"], path=path)
    if checkpoint.is_training_run:
        checkpoint.optimizer_state = dict(meta["optimizer"], **groups["optimizer"])
        checkpoint.scheduler_state = dict(meta["scheduler"])
    return checkpoint


def model_from_checkpoint(checkpoint) -> "fastconv.nn.Module":
    """Rebuild the checkpoint's model (architecture from its name and config) with its
    trained weights and dropout RNG state.  ``checkpoint``: a `Checkpoint` or a path."""
    from fastconv.models import build_model

    if not isinstance(checkpoint, Checkpoint):
        checkpoint = load_checkpoint(checkpoint)
    meta = checkpoint.meta
    try:
        model = build_model(meta["model"], **meta["model_config"])
        model.load_state_dict(checkpoint.model_state)
        restore_rng_states(model, meta.get("rng", {}))
    except (TypeError, ValueError, KeyError) as exc:
        raise MalformedCheckpointError(f"{checkpoint.path}: the checkpoint does not rebuild "
                                       f"model {meta['model']!r}: {exc}") from None
    return model


def load(path):
    """The model saved at ``path`` (by `save` or by ``fastconv train``), rebuilt from
    its stored name and config, with its weights; in training mode, as a freshly
    built model (call ``.eval()`` before inference, as in PyTorch)."""
    return model_from_checkpoint(load_checkpoint(path))
