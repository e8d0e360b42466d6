"""The model of a run: which builder options apply, its config, and whether it fits
the data -- all checked before the first batch, with one clear error each."""

from __future__ import annotations

import inspect

import numpy as np

import fastconv


def _builder_options(model_name: str) -> set[str]:
    from fastconv.models import MODELS

    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; valid models are: {', '.join(MODELS)}")
    return set(inspect.signature(MODELS[model_name]).parameters)


def check_model_options(model_name: str, batch_norm: bool | None, dropout: float | None) -> None:
    """Options the model's builder does not take are an error (``--no-bn`` on the
    report-000 CNN), not silently ignored.  Checked before any data is loaded."""
    accepted = _builder_options(model_name)
    for option, value, flag in (("batch_norm", batch_norm, "--no-bn"), ("dropout", dropout, "--dropout")):
        if value is not None and option not in accepted:
            raise ValueError(f"model {model_name!r} has no {option} option ({flag} applies to letters-cnn)")


def model_config(model_name: str, data, batch_norm: bool | None, dropout: float | None,
                 dtype, seed: int) -> dict:
    """Builder keyword arguments for ``model_name`` (see `check_model_options`);
    ``num_classes`` follows the data set when the builder takes it."""
    check_model_options(model_name, batch_norm, dropout)
    config = {"dtype": np.dtype(dtype).name, "seed": int(seed)}
    if batch_norm is not None:
        config["batch_norm"] = bool(batch_norm)
    if dropout is not None:
        config["dropout"] = float(dropout)
    if "num_classes" in _builder_options(model_name):
        config["num_classes"] = len(data.classes)
    return config


def as_model_input(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Images as the model's float dtype in [0, 1] (uint8 data sets are divided by
    255), C-contiguous."""
    from fastconv.data import to_float

    return np.ascontiguousarray(to_float(images, dtype))


def check_model_fits(model, model_name: str, data, dtype) -> None:
    """Forward one test image in eval mode: a shape mismatch between network and data
    becomes one clear error instead of a failure deep inside the first batch.  It runs
    on the numpy reference backend, so no JIT kernel compiles before `Trainer` announces
    (and times) the compilation."""
    sample = as_model_input(data.test_x[:1], dtype)
    shape = "x".join(map(str, data.test_x.shape[1:]))
    what = f"data set {data.name!r} ({shape} images, {len(data.classes)} classes)"
    model.eval()
    try:
        with fastconv.use_backend("numpy"):
            logits = model.forward(sample)
    except ValueError as exc:
        raise ValueError(f"model {model_name!r} cannot take {what}: {exc}") from None
    finally:
        model.train()
    if logits.ndim != 2 or logits.shape[1] != len(data.classes):
        raise ValueError(f"model {model_name!r} outputs {logits.shape[-1]} classes but {what}")
