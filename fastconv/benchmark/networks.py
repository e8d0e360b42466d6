"""`fastconv bench --networks`: whole networks, fastconv (numba) vs the same network in
`torch.nn`.

For report 000's CNN, the letters CNN, resnet20, vgg11 and mobilenetv2: a training
step (forward, softmax cross-entropy, backward, SGD-momentum update) at the training
batches `TRAIN_BATCHES` and inference (eval-mode forward) at batch 1 and 8.  The PyTorch network is the fastconv one
converted module by module (`fastconv.benchmark.torch_convert`, same weights), so
both run one architecture.  The two are measured in interleaved bursts
(`measure_interleaved`) and compared by their medians.  A training step at batch 1
(``--networks`` asked for it with ``batches``) is left out where batch norm sees one
value per channel (a ``BatchNorm1d`` after a linear layer), which neither framework
can train.
"""

from __future__ import annotations

import contextlib

import numpy as np

import fastconv
from fastconv.benchmark.timing import measure_interleaved

# name -> (registry name, builder options, input shape of one image, classes)
NETWORKS = {
    "report000 cnn": ("cnn", {}, (1, 28, 28), 10),
    "letters-cnn": ("letters-cnn", {}, (1, 32, 32), 26),
    "resnet20": ("resnet20", {"in_channels": 3}, (3, 32, 32), 10),
    "vgg11": ("vgg11", {"in_channels": 3}, (3, 32, 32), 10),
    "mobilenetv2": ("mobilenetv2", {"in_channels": 3}, (3, 32, 32), 10),
}
BATCHES = {"train": (32, 128), "inference": (1, 8)}
"""Per mode, the batches measured: training at the sizes networks train with,
inference as a deployed network runs it."""
MODES = ("train", "inference")
SGD_SETTINGS = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
FASTCONV_BACKEND = "numba"


def _problem(name: str, batch: int, dtype, seed: int = 0):
    """(fastconv model, torch copy, images, labels) for one network and batch."""
    from fastconv import models
    from fastconv.benchmark.torch_convert import to_torch

    model_name, options, image_shape, classes = NETWORKS[name]
    model = models.build_model(model_name, dtype=np.dtype(dtype).name, seed=seed, **options)
    rng = np.random.default_rng(seed)
    images = rng.random((batch, *image_shape)).astype(dtype)
    labels = rng.integers(0, classes, batch)
    return model, to_torch(model), images, labels


def fastconv_runner(model, images, labels, mode: str):
    from fastconv import nn, optim

    if mode == "inference":
        model.eval()
        return lambda: model.forward(images)
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), **SGD_SETTINGS)

    def step():
        optimizer.zero_grad()
        loss = loss_fn(model.forward(images), labels)
        model.backward(loss_fn.backward())
        optimizer.step()
        return loss

    return step


def torch_runner(model, images, labels, mode: str):
    import torch

    images, labels = torch.from_numpy(images), torch.from_numpy(labels)
    if mode == "inference":
        model.eval()

        def infer():
            with torch.inference_mode():
                return model(images)
        return infer
    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), **SGD_SETTINGS)

    def step():
        optimizer.zero_grad(set_to_none=False)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    return step


def _trains_at(model, batch: int) -> bool:
    """False where a BatchNorm1d would see a single value per channel."""
    from fastconv import nn

    return batch > 1 or not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())


@contextlib.contextmanager
def _fastconv_context():
    from fastconv.backends import blas_thread_limit

    with fastconv.use_backend(FASTCONV_BACKEND), blas_thread_limit():
        yield


def _measure(name, mode, batch, dtype, repeat, quick) -> dict | None:
    """One row: median milliseconds of each framework and their ratio (None: a
    training step this batch cannot take)."""
    model, torch_model, images, labels = _problem(name, batch, dtype)
    if mode == "train" and not _trains_at(model, batch):
        return None
    options = dict(repeat=repeat, warmup=2, budget=1.0 if quick else 4.0, min_seconds=0.0 if quick else 1.0)
    times = measure_interleaved({
        FASTCONV_BACKEND: (fastconv_runner(model, images, labels, mode), options, _fastconv_context),
        "torch": (torch_runner(torch_model, images, labels, mode), options),
    }, rounds=2 if quick else 3)
    ours, theirs = times[FASTCONV_BACKEND], times["torch"]
    return dict(network=name, mode=mode, batch=batch, fastconv_backend=FASTCONV_BACKEND,
                fastconv_ms=ours.median * 1e3, torch_ms=theirs.median * 1e3,
                fastconv_iqr_ms=[ours.q1 * 1e3, ours.q3 * 1e3], torch_iqr_ms=[theirs.q1 * 1e3, theirs.q3 * 1e3],
                torch_over_fastconv=theirs.median / ours.median)


def run_networks(dtype=np.float32, repeat: int = 7, quick: bool = False, log=print,
                 networks=None, batches=None) -> list[dict]:
    """One row per network, mode and batch (default: every one of `NETWORKS` at its
    mode's `BATCHES`; ``batches`` for both modes): median milliseconds of each
    framework and their ratio (``torch_over_fastconv`` > 1: fastconv is faster)."""
    rows = []
    for name in networks or NETWORKS:
        for mode in MODES:
            for batch in batches or BATCHES[mode]:
                row = _measure(name, mode, batch, dtype, repeat, quick)
                if row is None:
                    log(f"  {name:14s} {mode:9s} batch {batch}: skipped (BatchNorm1d needs batch > 1)")
                    continue
                rows.append(row)
                log(f"  {name:14s} {mode:9s} batch {batch:3d}: {FASTCONV_BACKEND} {row['fastconv_ms']:9.2f} ms, "
                    f"torch {row['torch_ms']:9.2f} ms, ratio {row['torch_over_fastconv']:5.2f}")
    return rows


def summary(rows: list[dict]) -> list[str]:
    """Per mode: the geometric mean of the ratios and the lowest."""
    lines = []
    for mode in MODES:
        ratios = [row["torch_over_fastconv"] for row in rows if row["mode"] == mode]
        if ratios:
            geomean = float(np.exp(np.mean(np.log(ratios))))
            lines.append(f"{mode}: geometric mean {geomean:.2f}x torch.nn over {len(ratios)} rows, "
                         f"lowest {min(ratios):.2f}x")
    return lines


def run_breakdowns(dtype=np.float32, log=print, networks=None, batch: int | None = None) -> list[dict]:
    """Where one training step's time goes per kind of layer (`breakdown`), for each
    network at the first training batch: one dict per network."""
    from fastconv.benchmark import breakdown

    found = []
    batch = batch or BATCHES["train"][0]
    for name in networks or NETWORKS:
        model, torch_model, images, labels = _problem(name, batch, dtype)
        with _fastconv_context():
            ours = breakdown.fastconv_split(model, images, labels)
        theirs = breakdown.torch_split(torch_model, images, labels)
        found.append(dict(network=name, batch=batch, fastconv_ms=ours, torch_ms=theirs))
        log(breakdown.markdown(name, batch, ours, theirs))
    return found


def markdown(rows: list[dict]) -> str:
    lines = ["| network | mode | batch | fastconv ms | torch.nn ms | torch / fastconv |",
             "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['network']} | {row['mode']} | {row['batch']} | {row['fastconv_ms']:.2f} | "
                     f"{row['torch_ms']:.2f} | {row['torch_over_fastconv']:.2f} |")
    return "\n".join(lines) + "\n"


def main_networks(args, log=print) -> int:
    """``fastconv bench --networks``: compile the kernels, measure every network,
    write networks.json and networks.md to ``args.out``.  Exit status 2 when the
    fastconv backend or PyTorch is missing."""
    import json
    import os
    import sys

    from fastconv.system import env
    from fastconv.benchmark import report, runner
    from fastconv.startup import prepare_backend

    missing = [name for name in (FASTCONV_BACKEND, "torch") if name not in fastconv.available_backends()]
    if missing:
        print(f"fastconv bench --networks: needs {' and '.join(missing)} (not available here)", file=sys.stderr)
        return 2
    dtype = np.dtype(args.dtype)
    threads = args.threads or env.num_threads() or os.cpu_count() or 1
    settings = runner.ThreadSettings(threads)
    settings.apply()
    try:
        with fastconv.use_backend(FASTCONV_BACKEND):
            # every kernel before timing, and no helper compiling while it times
            prepare_backend(None, dtype, log=log, background=False)
        log(f"\nwhole networks, {FASTCONV_BACKEND} vs the same network in torch.nn ({threads} threads, "
            f"{dtype.name}; ratio = torch time / fastconv time):")
        rows = run_networks(dtype, args.repeat or (3 if args.quick else 7), args.quick, log)
        log("\nwhere a training step's time goes:")
        splits = run_breakdowns(dtype, log)
    finally:
        settings.restore()
    from fastconv.benchmark import breakdown

    text = "\n".join([markdown(rows), *summary(rows), ""] + [
        breakdown.markdown(split["network"], split["batch"], split["fastconv_ms"], split["torch_ms"])
        for split in splits])
    report.write_atomic(args.out / "networks.json", json.dumps(dict(rows=rows, breakdown=splits), indent=2))
    report.write_atomic(args.out / "networks.md", text)
    log("\n" + markdown(rows))
    for line in summary(rows):
        log(line)
    log(f"wrote {args.out / 'networks.json'}, {args.out / 'networks.md'}")
    return 0
