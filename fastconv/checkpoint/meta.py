"""The JSON part of a checkpoint (its ``meta`` member): what it must hold, checked.

A checkpoint's arrays are only trusted after `check_meta` has confirmed every field
the loader and the trainer read has the right type, so a hand-edited or damaged
file is one `ValueError` naming the file and the field, not a ``KeyError`` or a
``ZeroDivisionError`` from deep inside a run.

Two kinds: ``"training"`` (written by the trainer: model, optimiser, schedule,
progress, logs; the default for files that do not say), format 1, and ``"model"``
(written by `fastconv.save`: the model alone).  A model file of format 1 names its
registry builder and config; format 2 adds the architecture (`fastconv.nn.architecture`,
null for a model holding a user's own Module class), so the name may be null.
"""

from __future__ import annotations

NUMBER = (int, float)
_OPTIONAL_INT = (int, type(None))

_MODEL_FIELDS = {"format": (int,), "model": (str,), "model_config": (dict,)}
# Format 2 (model files only): the architecture, and the registry name when there is one.
_MODEL_FORMAT2_FIELDS = {"format": (int,), "model": (str, type(None)), "model_config": (dict,),
                         "architecture": (dict, type(None)), "model_class": (str,)}
_TRAINING_FIELDS = {
    "dataset": (str,), "dataset_name": (str,), "classes": (list,), "seed": (int,),
    "limit": _OPTIONAL_INT, "hyperparameters": (dict,), "history": (list,),
    "progress": (dict,), "optimizer": (dict,), "scheduler": (dict,),
}
_OPTIONAL_FIELDS = {"rng": (dict,), "kind": (str,), "not_described": (str,), "dataset_in_memory": (bool,),
                    "backend": (str,), "epoch": (int,), "num_parameters": (int,)}
HYPERPARAMETER_FIELDS = {"batch_size": (int,), "lr": NUMBER, "momentum": NUMBER,
                         "weight_decay": NUMBER, "lr_step": (int,), "lr_gamma": NUMBER}
# Checkpoints written before Adam existed have no optimizer name: SGD.
_OPTIONAL_HYPERPARAMETER_FIELDS = {"optimizer": (str,)}
PROGRESS_FIELDS = {"epochs_done": (int,), "batches_done": (int,), "loss_sum": NUMBER,
                   "correct": (int,), "seen": (int,), "seconds": NUMBER, "complete": (bool,)}
_HISTORY_FIELDS = {"epoch": (int,), "train_loss": NUMBER, "train_acc": NUMBER,
                   "test_loss": NUMBER, "test_acc": NUMBER, "seconds": NUMBER}
# What every optimiser's state has; the rest (SGD's momentum, Adam's betas and step)
# is checked strictly by that optimiser's load_state_dict on resume.
_OPTIMIZER_FIELDS = {"lr": NUMBER, "weight_decay": NUMBER}
_SCHEDULER_FIELDS = {"step_size": (int,), "gamma": NUMBER, "base_lr": NUMBER, "last_epoch": (int,)}
KINDS = ("training", "model")
# The kinds each format may hold.
FORMAT_KINDS = {1: KINDS, 2: ("model",)}


class MalformedCheckpointError(ValueError):
    """A checkpoint whose content is not what fastconv writes."""


def _type_name(types: tuple) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def check_fields(mapping: dict, fields: dict, where: str, path, exact: bool = False,
                 required: bool = True) -> None:
    """Each key of ``fields`` present in ``mapping`` with one of its types (bool is
    not a number here); ``exact``: no other keys."""
    for key, types in fields.items():
        if key not in mapping:
            if required:
                raise MalformedCheckpointError(f"{path}: malformed checkpoint: {where} has no {key!r}")
            continue
        value = mapping[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise MalformedCheckpointError(
                f"{path}: malformed checkpoint: {where}[{key!r}] is {type(value).__name__} "
                f"{value!r:.40}, expected {_type_name(types)}")
    if exact and set(mapping) - set(fields):
        extra = ", ".join(sorted(map(str, set(mapping) - set(fields))))
        raise MalformedCheckpointError(f"{path}: malformed checkpoint: {where} has unknown key(s) {extra}")


def kind_of(meta: dict) -> str:
    return meta.get("kind", "training")


def check_meta(meta, path) -> None:
    """Raise `MalformedCheckpointError` unless ``meta`` is a checkpoint's meta of a
    known format and kind (a `ValueError` for a format this fastconv does not read)."""
    if not isinstance(meta, dict):
        raise MalformedCheckpointError(f"{path}: malformed checkpoint: meta is {type(meta).__name__}, not an object")
    check_fields(meta, {"format": _MODEL_FIELDS["format"]}, "meta", path)
    if meta["format"] not in FORMAT_KINDS:
        raise ValueError(f"{path} has checkpoint format {meta['format']!r}, this fastconv reads "
                         f"formats {' and '.join(map(str, FORMAT_KINDS))}")
    check_fields(meta, _MODEL_FIELDS if meta["format"] == 1 else _MODEL_FORMAT2_FIELDS, "meta", path)
    check_fields(meta, _OPTIONAL_FIELDS, "meta", path, required=False)
    if kind_of(meta) not in FORMAT_KINDS[meta["format"]]:
        raise MalformedCheckpointError(f"{path}: malformed checkpoint: kind {meta.get('kind')!r} "
                                       f"in a format {meta['format']} file")
    dtype = meta["model_config"].get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        raise MalformedCheckpointError(f"{path}: malformed checkpoint: model dtype {dtype!r}")
    if kind_of(meta) == "training":
        _check_training_meta(meta, path)


def _check_training_meta(meta: dict, path) -> None:
    check_fields(meta, _TRAINING_FIELDS, "meta", path)
    check_fields(meta["hyperparameters"], {**HYPERPARAMETER_FIELDS, **_OPTIONAL_HYPERPARAMETER_FIELDS},
                 "hyperparameters", path, exact=True, required=False)
    check_fields(meta["hyperparameters"], HYPERPARAMETER_FIELDS, "hyperparameters", path)
    check_fields(meta["progress"], PROGRESS_FIELDS, "progress", path, exact=True)
    check_fields(meta["optimizer"], _OPTIMIZER_FIELDS, "optimizer", path)
    check_fields(meta["scheduler"], _SCHEDULER_FIELDS, "scheduler", path)
    for index, record in enumerate(meta["history"]):
        if not isinstance(record, dict):
            raise MalformedCheckpointError(f"{path}: malformed checkpoint: history[{index}] is not an object")
        check_fields(record, _HISTORY_FIELDS, f"history[{index}]", path)
    if not all(isinstance(name, str) for name in meta["classes"]):
        raise MalformedCheckpointError(f"{path}: malformed checkpoint: classes must be strings")
    progress = meta["progress"]
    if min(progress["epochs_done"], progress["batches_done"], progress["seen"]) < 0:
        raise MalformedCheckpointError(f"{path}: malformed checkpoint: negative progress {progress}")
    if progress["epochs_done"] != len(meta["history"]):
        raise MalformedCheckpointError(f"{path}: malformed checkpoint: {progress['epochs_done']} epochs "
                                       f"done but {len(meta['history'])} history records")
