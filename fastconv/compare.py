"""Report 000 section 4: the CNN against MLP-1 and MLP-2, on one or more backends.

Each model is trained with its report settings (`fastconv.train.default_hyperparameters`;
MLP-2 with the Euclidean loss, `fastconv.models.default_loss`) on the same data, and
the run writes to ``out_dir``:

* ``<backend>/<model>/`` -- each run's own output (checkpoint, history, curves);
* ``comparison.png`` -- test accuracy and test loss per epoch of every run;
* ``comparison.md`` and ``comparison.json`` -- per backend and model: parameter count,
  seconds per epoch (the first epoch separately: on numba it includes JIT compilation
  unless the kernel cache is warm), final and best test accuracy, and the speed-up
  of each backend over numpy for the same model -- for models with convolutions
  only: an MLP's layers are the same NumPy matrix products on every backend.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Callable, Sequence

import fastconv
from fastconv.checkpoint.files import write_json_atomic
from fastconv.training.runs import train

COMPARED_MODELS = ("cnn", "mlp1", "mlp2")


def _seconds_per_epoch(history: list[dict]) -> tuple[float, float]:
    """(first epoch, mean of the later ones -- or the first if there is only one)."""
    seconds = [record["seconds"] for record in history]
    later = seconds[1:] or seconds
    return seconds[0], statistics.fmean(later)


def compare(dataset="mnist", epochs: int = 5, backends: Sequence[str] | None = None,
            models: Sequence[str] = COMPARED_MODELS, out_dir="runs/compare", seed: int = 0,
            limit: int | None = None, data_root=None, download: bool = False,
            progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Train every model in ``models`` on every backend in ``backends`` (default: the
    current one) for ``epochs`` epochs and write the comparison plot and tables.
    Returns the JSON summary (``rows``, ``interrupted`` and the file names)."""
    from fastconv.models import default_loss
    from fastconv.viz import plot_comparison

    backends = list(backends) if backends else [fastconv.get_backend().name]
    unknown = [b for b in backends if b not in fastconv.available_backends()]
    if unknown:
        raise ValueError(f"backend(s) {', '.join(unknown)} not available; "
                         f"available: {', '.join(fastconv.available_backends())}")
    out_dir = Path(out_dir)
    rows, runs, result, interrupted = [], [], None, False
    for backend, model_name in ((b, m) for b in backends for m in models):
        log(f"--- {model_name} on {backend} ---")
        # Each run loads the data itself (name or path, with the limit), so every
        # checkpoint records how to reload it for `fastconv viz` or --resume.
        result = train(model_name, dataset, epochs=epochs, out_dir=out_dir / backend / model_name,
                       seed=seed, overwrite=True, progress=progress, backend=backend,
                       limit=limit, data_root=data_root, download=download, log=log)
        if result.history:
            first, later = _seconds_per_epoch(result.history)
            rows.append({
                "backend": backend, "model": model_name, "convolutional": _is_convolutional(model_name),
                "loss": type(default_loss(model_name)).__name__,
                "parameters": result.num_parameters,
                "epochs": len(result.history),
                "seconds_first_epoch": first, "seconds_per_epoch": later,
                "test_acc": result.history[-1]["test_acc"],
                "best_test_acc": max(r["test_acc"] for r in result.history),
                "test_loss": result.history[-1]["test_loss"],
            })
            runs.append({"label": f"{model_name} ({backend})", "model": model_name,
                         "backend": backend, "history": result.history})
        if result.interrupted:
            interrupted = True
            log("comparison stopped early (interrupted); the table holds the runs so far")
            break
    _add_speedups(rows)
    summary = {"dataset": result.dataset_name, "train_images": result.train_images,
               "test_images": result.test_images, "epochs": epochs, "seed": seed,
               "interrupted": interrupted, "rows": rows, "files": []}
    if not rows:
        return summary
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = plot_comparison(runs, out_dir / "comparison.png",
                             title=f"CNN vs MLP on {result.dataset_name} ({result.train_images} training images)")
    table = format_table(summary)
    (out_dir / "comparison.md").write_text(table + "\n")
    write_json_atomic(out_dir / "comparison.json", {k: v for k, v in summary.items() if k != "files"})
    summary["files"] = [str(figure), str(out_dir / "comparison.md"), str(out_dir / "comparison.json")]
    log(table)
    return summary


def _is_convolutional(model_name: str) -> bool:
    from fastconv import nn
    from fastconv.models import build_model

    return any(isinstance(module, nn.Conv2d) for module in build_model(model_name).modules())


def _add_speedups(rows: list[dict]) -> None:
    """``speedup_vs_numpy``: numpy's seconds per epoch / this row's, same model; None
    for a model without convolutions (the backends run the same NumPy code for it)."""
    numpy_seconds = {r["model"]: r["seconds_per_epoch"] for r in rows if r["backend"] == "numpy"}
    for row in rows:
        base = numpy_seconds.get(row["model"]) if row["convolutional"] else None
        row["speedup_vs_numpy"] = base / row["seconds_per_epoch"] if base and row["seconds_per_epoch"] else None


def format_table(summary: dict) -> str:
    """The comparison as a markdown table."""
    lines = [
        f"CNN vs MLP on {summary['dataset']} ({summary['train_images']} train / "
        f"{summary['test_images']} test images, {summary['epochs']} epochs, seed {summary['seed']})",
        "",
        "| backend | model | loss | parameters | s/epoch (1st) | s/epoch | conv speed-up vs numpy "
        "| test acc (last) | test acc (best) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        speedup = (f"{row['speedup_vs_numpy']:.1f}x" if row.get("speedup_vs_numpy")
                   else "-" if row.get("convolutional", True) else "n/a (no conv)")
        lines.append(
            f"| {row['backend']} | {row['model']} | {row['loss']} | {row['parameters']:,} | "
            f"{row['seconds_first_epoch']:.2f} | {row['seconds_per_epoch']:.2f} | {speedup} | "
            f"{row['test_acc']:.4f} | {row['best_test_acc']:.4f} |")
    lines += ["", "s/epoch: training time of one epoch without evaluation; the mean over epochs "
              "2.. when there are several (epoch 1 may include JIT compilation).",
              "conv speed-up vs numpy: for models with convolutions; an MLP (no conv) runs the "
              "same NumPy matrix products on every backend, so its backends differ only by noise."]
    return "\n".join(lines)
