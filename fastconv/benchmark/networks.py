"""`fastconv bench --networks`: whole networks, fastconv (numba) vs the same network in
`torch.nn`.

For report 000's CNN, the letters CNN, resnet20, vgg11 and mobilenetv2: a training
step (forward, softmax cross-entropy, backward, SGD-momentum update) and inference
(eval-mode forward) at batch 1 and 8.  The PyTorch network is the fastconv one
converted module by module (`fastconv.benchmark.torch_convert`, same weights), so
both run one architecture.  The two are measured in interleaved bursts
(`measure_interleaved`) and compared by their medians.  A training step at batch 1
is left out where batch norm sees one value per channel (a ``BatchNorm1d`` after a
linear layer), which neither framework can train.
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
BATCHES = (1, 8)
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


def run_networks(dtype=np.float32, repeat: int = 7, quick: bool = False, log=print,
                 networks=None, batches=None) -> list[dict]:
    """One row per network, mode and batch (default: every one of `NETWORKS` at
    `BATCHES`): median milliseconds of each framework and their ratio
    (``torch_over_fastconv`` > 1: fastconv is faster)."""
    rows = []
    for name in networks or NETWORKS:
        for batch in batches or BATCHES:
            model, torch_model, images, labels = _problem(name, batch, dtype)
            for mode in MODES:
                if mode == "train" and not _trains_at(model, batch):
                    log(f"  {name:14s} {mode:9s} batch {batch}: skipped (BatchNorm1d needs batch > 1)")
                    continue
                options = dict(repeat=repeat, warmup=2, budget=1.0 if quick else 4.0,
                               min_seconds=0.0 if quick else 1.0)
                times = measure_interleaved({
                    FASTCONV_BACKEND: (fastconv_runner(model, images, labels, mode), options, _fastconv_context),
                    "torch": (torch_runner(torch_model, images, labels, mode), options),
                }, rounds=2 if quick else 3)
                ours, theirs = times[FASTCONV_BACKEND].median, times["torch"].median
                rows.append(dict(network=name, mode=mode, batch=batch, fastconv_backend=FASTCONV_BACKEND,
                                 fastconv_ms=ours * 1e3, torch_ms=theirs * 1e3,
                                 fastconv_iqr_ms=[times[FASTCONV_BACKEND].q1 * 1e3, times[FASTCONV_BACKEND].q3 * 1e3],
                                 torch_iqr_ms=[times["torch"].q1 * 1e3, times["torch"].q3 * 1e3],
                                 torch_over_fastconv=theirs / ours))
                log(f"  {name:14s} {mode:9s} batch {batch}: {FASTCONV_BACKEND} {ours * 1e3:9.2f} ms, "
                    f"torch {theirs * 1e3:9.2f} ms, ratio {theirs / ours:5.2f}")
    return rows


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

    from fastconv import env
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
            prepare_backend(None, dtype, log=log)        # compile or load every kernel before timing
        log(f"\nwhole networks, {FASTCONV_BACKEND} vs the same network in torch.nn ({threads} threads, "
            f"{dtype.name}; ratio = torch time / fastconv time):")
        rows = run_networks(dtype, args.repeat or (3 if args.quick else 7), args.quick, log)
    finally:
        settings.restore()
    report.write_atomic(args.out / "networks.json", json.dumps(rows, indent=2))
    report.write_atomic(args.out / "networks.md", markdown(rows))
    log("\n" + markdown(rows))
    log(f"wrote {args.out / 'networks.json'}, {args.out / 'networks.md'}")
    return 0
