"""Every plot of the two reports, as PNG files.

Figures are built with `matplotlib.figure.Figure` and its Agg canvas directly, never
`pyplot`, so importing this module does not change the user's matplotlib backend and
works without a display.

Plots (report 000 section 3.2 / 5, report 003 section 4):

* `plot_iteration_curves` -- training loss and accuracy per iteration;
* `plot_epoch_curves` -- train and test loss / accuracy per epoch;
* `plot_kernels` -- one conv layer's kernels as an ``out x in`` image grid;
* `plot_feature_maps` -- one image and its feature maps after a conv block's ReLU;
* `plot_tsne` -- a 2-D t-SNE embedding coloured by class;
* `plot_comparison` -- test accuracy and loss per epoch of several runs (CNN vs MLP).

`visualize` loads a training checkpoint and writes all of them plus the entropy table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Report 000 plotted one point every 25 iterations; a moving average of that width
# gives the same readable curve without dropping data.
ITERATION_SMOOTHING = 25


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def moving_average(values, width: int) -> np.ndarray:
    """Trailing mean over up to ``width`` points (shorter at the start), same length."""
    values = np.asarray(values, dtype=np.float64)
    if width <= 1 or len(values) == 0:
        return values
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - width, 0)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


# ------------------------------------------------------------------ training curves
def plot_iteration_curves(iterations: dict, path, smoothing: int = ITERATION_SMOOTHING,
                          title: str = "") -> Path:
    """Training loss and accuracy per iteration (raw, faint, and a moving average).
    ``iterations`` has equal-length lists ``loss`` and ``acc`` (see `fastconv.train`)."""
    loss = np.asarray(iterations["loss"], dtype=np.float64)
    acc = np.asarray(iterations["acc"], dtype=np.float64)
    steps = np.arange(1, len(loss) + 1)
    fig = Figure(figsize=(10, 3.8))
    for ax, values, label in zip(fig.subplots(1, 2), (loss, acc), ("loss", "accuracy")):
        ax.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=0.7, label="per iteration")
        ax.plot(steps, moving_average(values, smoothing), color="tab:blue",
                label=f"mean of last {smoothing}")
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"training {label}")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(title or "training curves per iteration")
    return _save(fig, path)


def _epoch_axis(ax, epochs) -> None:
    """Whole-number epoch ticks; with few epochs exactly one per epoch (an integer
    locator on a one-epoch run would label 0.96, 0.98, ...)."""
    ax.set_xlabel("epoch")
    distinct = sorted(set(epochs))
    if 0 < len(distinct) <= 12:
        ax.set_xticks(distinct)
        ax.set_xlim(distinct[0] - 0.5, distinct[-1] + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_epoch_curves(history: list[dict], path, title: str = "") -> Path:
    """Train and test loss / accuracy per epoch from a ``history.json`` list."""
    epochs = [record["epoch"] for record in history]
    fig = Figure(figsize=(10, 3.8))
    for ax, key in zip(fig.subplots(1, 2), ("loss", "acc")):
        for split, style in (("train", "o-"), ("test", "s-")):
            ax.plot(epochs, [record[f"{split}_{key}"] for record in history], style,
                    markersize=3, label=split)
        _epoch_axis(ax, epochs)
        ax.set_ylabel("accuracy" if key == "acc" else "loss")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(title or "loss and accuracy per epoch")
    return _save(fig, path)


def plot_training_curves(run_dir, out_dir=None) -> list[Path]:
    """The per-iteration and per-epoch curves of a training run directory (which holds
    ``history.json`` and ``iterations.json``), written to ``out_dir`` (default: the run
    directory).  Missing or empty logs are skipped."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    written = []
    iterations_file, history_file = run_dir / "iterations.json", run_dir / "history.json"
    if iterations_file.is_file():
        iterations = json.loads(iterations_file.read_text())
        if iterations.get("loss"):
            written.append(plot_iteration_curves(iterations, out_dir / "curves_iteration.png"))
    if history_file.is_file():
        history = json.loads(history_file.read_text())
        if history:
            written.append(plot_epoch_curves(history, out_dir / "curves_epoch.png"))
    return written


# ------------------------------------------------------------------ kernels and maps
def mosaic(tiles: np.ndarray, gap: int = 1) -> np.ndarray:
    """Arrange ``(rows, cols, h, w)`` tiles into one 2-D array with NaN gaps (drawn as
    background), so a grid of hundreds of kernels is one cheap ``imshow``."""
    rows, cols, h, w = tiles.shape
    canvas = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for r in range(rows):
        for c in range(cols):
            canvas[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = tiles[r, c]
    return canvas


def plot_kernels(weight: np.ndarray, path, title: str = "", max_out: int = 64,
                 max_in: int = 16) -> Path:
    """A conv weight ``(C_out, C_in, kh, kw)`` as a grid: one row per output channel,
    one column per input channel (report 000 figures 14 and 19).  A shared colour
    scale symmetric about zero (blue negative, red positive) keeps signs comparable;
    at most ``max_out`` x ``max_in`` kernels are drawn (the title says if cut)."""
    weight = np.asarray(weight, dtype=np.float64)
    c_out, c_in = weight.shape[:2]
    shown = weight[:max_out, :max_in]
    limit = float(np.abs(shown).max()) or 1.0
    height = max(3.0, 0.45 * shown.shape[0] * shown.shape[2] / 5 + 1.0)
    fig = Figure(figsize=(max(3.0, 0.45 * shown.shape[1] * shown.shape[3] / 5 + 1.5), height))
    ax = fig.subplots()
    image = ax.imshow(mosaic(shown), cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_xlabel(f"input channel ({shown.shape[1]} of {c_in})")
    ax.set_ylabel(f"output channel ({shown.shape[0]} of {c_out})")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(image, ax=ax, shrink=min(0.8, 4.0 / height), pad=0.03)
    ax.set_title(title or f"conv kernels {tuple(weight.shape)}", fontsize=10)
    return _save(fig, path)


def plot_feature_maps(image: np.ndarray, maps: np.ndarray, path, title: str = "",
                      max_maps: int = 64) -> Path:
    """One input image (left) and its feature maps ``(C, H, W)`` (right, a grid with
    a shared grey scale so bright means a strong response in every map)."""
    maps = np.asarray(maps, dtype=np.float64)[:max_maps]
    count = len(maps)
    cols = min(count, 8 if count > 16 else 4)
    rows = math.ceil(count / cols)
    padded = np.full((rows * cols,) + maps.shape[1:], np.nan)
    padded[:count] = maps
    grid = padded.reshape(rows, cols, *maps.shape[1:])
    fig = Figure(figsize=(3 + 1.3 * cols, max(2.8, 1.3 * rows)))
    ax_image, ax_maps = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, cols / 1.3]})
    ax_image.imshow(np.asarray(image).reshape(image.shape[-2:]), cmap="gray", vmin=0, vmax=1)
    ax_image.set_title("input", fontsize=9)
    ax_image.axis("off")
    high = float(np.nanmax(maps)) if maps.size else 1.0
    low = min(0.0, float(np.nanmin(maps))) if maps.size else 0.0
    ax_maps.imshow(mosaic(grid), cmap="gray", vmin=low, vmax=high if high > low else low + 1,
                   interpolation="nearest")
    ax_maps.set_title(f"{count} feature maps {maps.shape[1]}x{maps.shape[2]}", fontsize=9)
    ax_maps.axis("off")
    fig.suptitle(title or "feature maps")
    return _save(fig, path)


# ------------------------------------------------------------------ t-SNE
def tsne_embedding(features: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA initialisation, seeded) of ``(N, D)`` features.
    Perplexity is capped below N/3 so that small samples still work."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    # scikit-learn's Barnes-Hut code can crash the process (SIGSEGV) on NaN input or
    # on points that are all identical, which is what a diverged model produces.
    if not np.all(np.isfinite(features)):
        raise ValueError("t-SNE input holds NaN or inf values (did training diverge?)")
    if np.ptp(features, axis=0).max() == 0:
        raise ValueError("t-SNE input points are all identical (did training diverge?)")
    perplexity = float(min(perplexity, max(2.0, (len(features) - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    # One OpenMP thread: Barnes-Hut t-SNE on ~1000 points gains little from threads
    # and its spin-waiting collapses when the cores are busy (measured on a loaded
    # 2-core machine: 60 points 0.2 s with one thread, 8.8 s with two).
    with threadpool_limits(limits=1, user_api="openmp"):
        return tsne.fit_transform(features)


def plot_tsne(embedding: np.ndarray, labels: np.ndarray, path, classes=None,
              title: str = "") -> Path:
    """Scatter of a 2-D embedding coloured by class; each class name is also written
    at its median point, so 26 letter classes stay readable without a legend."""
    labels = np.asarray(labels).astype(np.int64)
    num_classes = int(max(labels.max() + 1, len(classes) if classes is not None else 0))
    cmap_name = "tab10" if num_classes <= 10 else "tab20" if num_classes <= 20 else "gist_ncar"
    from matplotlib import colormaps

    cmap = colormaps[cmap_name]
    colours = cmap(labels / max(num_classes - 1, 1)) if cmap_name == "gist_ncar" else cmap(labels % cmap.N)
    fig = Figure(figsize=(6.5, 6))
    ax = fig.subplots()
    ax.scatter(embedding[:, 0], embedding[:, 1], c=colours, s=6, alpha=0.75, linewidths=0)
    for k in np.unique(labels):
        centre = np.median(embedding[labels == k], axis=0)
        name = str(classes[k]) if classes is not None and k < len(classes) else str(k)
        ax.text(centre[0], centre[1], name, fontsize=9, weight="bold", ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", alpha=0.7, lw=0))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"t-SNE of {len(labels)} points")
    return _save(fig, path)


# ------------------------------------------------------------------ CNN vs MLP
def plot_comparison(runs: list[dict], path, title: str = "") -> Path:
    """Test accuracy and test loss per epoch of several runs.  Each run is
    ``{"label": str, "history": [epoch records]}`` (as in ``history.json``); runs of the
    same model share a colour, different backends a line style."""
    fig = Figure(figsize=(11, 4))
    ax_acc, ax_loss = fig.subplots(1, 2)
    styles = ["-", "--", ":", "-."]
    models, backends = {}, {}
    for run in runs:
        colour = f"C{models.setdefault(run.get('model', run['label']), len(models))}"
        style = styles[backends.setdefault(run.get("backend", ""), len(backends)) % len(styles)]
        epochs = [record["epoch"] for record in run["history"]]
        ax_acc.plot(epochs, [r["test_acc"] for r in run["history"]], style, color=colour,
                    marker="o", markersize=3, label=run["label"])
        ax_loss.plot(epochs, [r["test_loss"] for r in run["history"]], style, color=colour,
                     marker="o", markersize=3, label=run["label"])
    ax_acc.set_ylabel("test accuracy")
    ax_loss.set_ylabel("test loss (each model's own loss)")
    for ax in (ax_acc, ax_loss):
        _epoch_axis(ax, [record["epoch"] for run in runs for record in run["history"]])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "CNN vs MLP")
    return _save(fig, path)


# ------------------------------------------------------------------ from a checkpoint
def default_sample_indices(labels: np.ndarray, num_classes: int, count: int = 4) -> list[int]:
    """The first test image of ``count`` classes spread evenly over the class range
    (0, 3, 6, 9 for ten classes: report 000's digits)."""
    labels = np.asarray(labels)
    wanted = np.unique(np.rint(np.linspace(0, num_classes - 1, count)).astype(int))
    indices = []
    for k in wanted:
        hits = np.flatnonzero(labels == k)
        if len(hits):
            indices.append(int(hits[0]))
    return indices or [0]


def visualize(checkpoint, out_dir, dataset=None, sample_indices=None, tsne_points: int = 1000,
              entropy_images: int | None = None, data_root=None, seed: int = 0,
              batch_size: int = 256, log=print) -> dict:
    """Every figure of the reports for a trained model, plus the entropy table.

    ``checkpoint`` is a ``model.npz`` written by `fastconv.train` (or its directory).
    The model is rebuilt from it; the test split of the data set it was trained on
    (or ``dataset``: a name, a path or a loaded `Dataset`) supplies the images.
    ``entropy_images`` limits how many test images the entropy averages use (all by
    default).  Returns ``{"files": [...], "entropy": {...}}``.
    """
    from fastconv.activations import collect_activations, conv_layers, iterate_activations
    from fastconv.checkpoint import CHECKPOINT_NAME, load_checkpoint, model_from_checkpoint
    from fastconv.checkpoint.files import write_json_atomic
    from fastconv.data.resolve import resolve_dataset
    from fastconv.entropy import entropy_report, format_entropy_report

    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        checkpoint = checkpoint / CHECKPOINT_NAME
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(checkpoint)
    if dataset is None and not state.is_training_run:
        raise ValueError(f"{checkpoint} holds a model without its data set; name one (--dataset)")
    model = model_from_checkpoint(state)
    model.eval()
    data = resolve_dataset(dataset if dataset is not None else state.meta["dataset"],
                           data_root=data_root, seed=state.meta.get("seed", seed),
                           limit=state.meta.get("limit"))
    dtype = np.dtype(state.meta["model_config"].get("dtype", "float32"))
    test_x = np.ascontiguousarray(data.test_x, dtype=dtype)
    test_y = np.asarray(data.test_y)
    classes = list(data.classes)
    num_classes = len(classes)
    files = []

    # Curves from the run directory the checkpoint sits in.
    files += plot_training_curves(checkpoint.parent, out_dir)

    # Kernels of the first two conv layers (report 000 §5, report 003 §4.2).
    convs = conv_layers(model)
    for number, conv in enumerate(convs[:2], start=1):
        files.append(plot_kernels(conv.weight.data, out_dir / f"kernels_conv{number}.png",
                                  title=f"conv layer {number} kernels {tuple(conv.weight.data.shape)}"))

    # Feature maps of the chosen images after the first two conv blocks.
    if sample_indices is None:
        sample_indices = default_sample_indices(test_y, num_classes)
    sample_indices = [int(i) for i in sample_indices]
    bad = [i for i in sample_indices if not 0 <= i < len(test_x)]
    if bad:
        raise ValueError(f"image indices {bad} are outside the test set (0..{len(test_x) - 1})")
    samples = collect_activations(model, test_x[sample_indices])
    predicted = samples.logits.argmax(axis=1)
    for row, index in enumerate(sample_indices):
        label, guess = classes[int(test_y[index])], classes[int(predicted[row])]
        for block, maps in enumerate(samples.blocks[:2], start=1):
            files.append(plot_feature_maps(
                test_x[index], maps[row], out_dir / f"features_block{block}_image{index}.png",
                title=f"test image {index} (label {label}, predicted {guess}): conv block {block} output"))

    # t-SNE of the penultimate features and of the logits on a seeded subsample.
    rng = np.random.default_rng(seed)
    count = min(tsne_points, len(test_x))
    chosen = np.sort(rng.choice(len(test_x), size=count, replace=False))
    features, logits = [], []
    for _, acts in iterate_activations(model, test_x[chosen], batch_size, keep_blocks=False):
        features.append(acts.features if acts.features is not None else acts.logits)
        logits.append(acts.logits)
    if count >= 5:  # t-SNE needs a handful of points
        for name, values in (("features", np.concatenate(features)), ("logits", np.concatenate(logits))):
            what = "penultimate features" if name == "features" else "logits"
            try:
                embedding = tsne_embedding(values, seed=seed)
            except ValueError as exc:
                log(f"skipping the t-SNE of the {what}: {exc}")
                continue
            files.append(plot_tsne(embedding, test_y[chosen], out_dir / f"tsne_{name}.png",
                                   classes=classes,
                                   title=f"t-SNE of {what} ({values.shape[1]}-D, {count} test images)"))

    # Entropy table (report 003 §4.3).
    limit = len(test_x) if entropy_images is None else min(entropy_images, len(test_x))
    report = entropy_report(model, test_x[:limit], test_y[:limit], num_classes,
                            sample_indices=[i for i in sample_indices if i < limit],
                            classes=classes, batch_size=batch_size)
    report["checkpoint"] = str(checkpoint)
    report["dataset"] = data.name
    entropy_file = out_dir / "entropy.json"
    write_json_atomic(entropy_file, report)
    files.append(entropy_file)
    log(format_entropy_report(report))
    return {"files": [str(f) for f in files], "entropy": report}
