"""Checkpoints: a run's (or a model's) state in one ``.npz`` file, read without pickle.

Training runs are format 1, unchanged since the first trainer, so every earlier
``model.npz`` loads; files of `save` are format 2 (format 1 ones still load):

* ``meta`` -- one JSON string: the model's registry name and builder config; for a
  file of `save` the architecture (`fastconv.nn.architecture`; null for a model
  holding a user's own Module class) and the root's class name; for a training run
  the data set, hyper-parameters, progress, per-epoch history, optimiser and
  schedule scalars; dropout RNG states (see `fastconv.checkpoint.meta`);
* ``model/<name>`` -- every parameter and buffer, keyed as in ``model.state_dict()``;
* ``optimizer/momentum_buffer.<i>`` -- SGD's momentum buffers; Adam/AdamW's
  ``optimizer/exp_avg.<i>``, ``exp_avg_sq.<i>`` (and ``max_exp_avg_sq.<i>`` with amsgrad);
* ``log/epoch``, ``log/loss``, ``log/acc`` -- the per-iteration training log.

Writing is atomic (`fastconv.checkpoint.files.write_npz_atomic`).  Reading checks member
names and sizes before reading any array (`fastconv.checkpoint.npz`), then the meta's fields
and types: a damaged, foreign or hand-edited file is one `ValueError` naming it.

Python API:

    fastconv.save(model, "model.npz")           # any Module: weights, and the architecture
    model = fastconv.load("model.npz")          # rebuilt from the stored architecture
    fastconv.load("model.npz", model=MyNet())   # a model with your own Module classes
    model.load_state_dict(fastconv.load_state("model.npz"))
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

from fastconv.checkpoint.files import write_npz_atomic
from fastconv.checkpoint.meta import MalformedCheckpointError, check_meta, kind_of
from fastconv.checkpoint.npz import read_npz

CHECKPOINT_NAME = "model.npz"
CHECKPOINT_FORMAT = 1   # training runs
MODEL_FORMAT = 2        # files of `save`: the architecture beside the weights
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


def _dtype_name(model) -> str:
    params = model.parameters()
    return params[0].dtype.name if params else "float32"


def save(model, path) -> Path:
    """Save ``model`` to ``path`` (an ``.npz``, written atomically, read without
    pickle): its weights and buffers, dropout RNG states, and its architecture when
    every module in it is a built-in `fastconv.nn` one (then `load` rebuilds it); a
    model built by `fastconv.models.build_model` also keeps its registry name and
    config.  A model holding a Module class of your own is saved too, weights only:
    load it into an instance you build with ``load(path, model=instance)``."""
    import fastconv
    from fastconv.nn import Module
    from fastconv.nn.architecture import CannotDescribe, describe

    if not isinstance(model, Module):
        raise TypeError(f"fastconv.save takes a fastconv.nn.Module, got {type(model).__name__}")
    spec = getattr(model, "build_config", None)
    meta = {"format": MODEL_FORMAT, "kind": "model",
            "model": spec["model"] if spec else None,
            "model_config": spec["model_config"] if spec else {"dtype": _dtype_name(model)},
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "rng": rng_states(model), "fastconv_version": fastconv.__version__}
    try:
        meta["architecture"] = describe(model)
    except CannotDescribe as exc:
        meta["architecture"] = None
        meta["not_described"] = str(exc)   # said again when load is asked to rebuild it
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
    check_meta(meta, path)
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


def _rebuild(checkpoint: Checkpoint):
    """The architecture ``checkpoint`` describes, fresh weights, or a ValueError."""
    from fastconv.models import build_model
    from fastconv.nn.architecture import build

    meta = checkpoint.meta
    if meta.get("architecture") is not None:
        try:
            model = build(meta["architecture"])
        except ValueError as exc:
            raise MalformedCheckpointError(f"{checkpoint.path}: the checkpoint does not rebuild its "
                                           f"architecture: {exc}") from None
    elif meta.get("model") is not None:
        try:
            model = build_model(meta["model"], **meta["model_config"])
        except (TypeError, ValueError) as exc:
            raise MalformedCheckpointError(f"{checkpoint.path}: the checkpoint does not rebuild "
                                           f"model {meta['model']!r}: {exc}") from None
    else:
        reason = meta.get("not_described", "")
        raise ValueError(
            f"{checkpoint.path} holds a {meta['model_class']} whose architecture fastconv cannot rebuild"
            f"{f' ({reason})' if reason else ''}: build the model yourself and pass it, "
            f"fastconv.load(path, model=instance), or call instance.load_state_dict(fastconv.load_state(path))")
    if meta.get("model") is not None:
        model.build_config = {"model": meta["model"], "model_config": meta["model_config"]}
    return model


def _fill(model, checkpoint: Checkpoint, error=MalformedCheckpointError):
    """``model`` with the checkpoint's weights and dropout RNG states (``error``: what
    a mismatch raises, the file being at fault for a model rebuilt from it)."""
    try:
        model.load_state_dict(checkpoint.model_state)
        restore_rng_states(model, checkpoint.meta.get("rng", {}))
    except (TypeError, ValueError, KeyError) as exc:
        raise error(f"{checkpoint.path}: the saved weights do not fit the "
                                       f"{type(model).__name__}: {exc}") from None
    return model


def model_from_checkpoint(checkpoint, model=None) -> "fastconv.nn.Module":
    """The checkpoint's model with its trained weights and dropout RNG states:
    ``model`` (a Module you built) filled in, or, when None, rebuilt from the stored
    architecture (or registry name and config).  ``checkpoint``: a `Checkpoint` or a path."""
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = load_checkpoint(checkpoint)
    if model is None:
        return _fill(_rebuild(checkpoint), checkpoint)
    return _fill(model, checkpoint, error=ValueError)


def load(path, model=None):
    """The model saved at ``path`` (by `save` or by ``fastconv train``) with its
    weights: rebuilt from the file, or, for a model holding a Module class of your
    own, loaded into ``model`` (an instance you built the same way).  It comes back
    in training mode, as a freshly built model (call ``.eval()`` before inference,
    as in PyTorch)."""
    return model_from_checkpoint(load_checkpoint(path), model)


def load_state(path) -> dict[str, np.ndarray]:
    """The weights and buffers saved at ``path``, keyed as ``model.state_dict()``:
    ``model.load_state_dict(load_state(path))``."""
    return dict(load_checkpoint(path).model_state)
