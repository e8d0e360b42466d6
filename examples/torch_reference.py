"""Report 000's CNN trained natively in PyTorch with fastconv's data and settings.

The accuracy anchor for ``fastconv train --model cnn``: the same network, the same
data split, batch order (same per-epoch shuffle seeds), initialisation scheme
(Kaiming normal, zero bias) and SGD settings (lr 0.1 halved every 5 epochs, momentum
1e-4, weight decay 2e-4, batch 50), with PyTorch doing the arithmetic.  Needs torch.

    python examples/torch_reference.py --dataset fashion-mnist --epochs 5 --seeds 0 1 2
    python examples/torch_reference.py --dataset mnist --epochs 10

Prints the test accuracy after every epoch, per seed.  ~3.5 s per 60k-image epoch on
the project's first 2-core AMD EPYC (2026-11-24).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from fastconv.data import batches, load_dataset
from fastconv.train import REPORT000_CNN, epoch_seed

# PyTorch is optional: imported once the arguments are parsed, so --help always works.
torch = None


def evaluate(model, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(xb)) for xb, _ in batches(x, y, 500, shuffle=False)])
    return float((logits.argmax(1).numpy() == y).mean())


def run(dataset, epochs: int, seed: int) -> list[float]:
    from fastconv.benchmark import torch_models

    settings = REPORT000_CNN
    model = torch_models.kaiming_init(torch_models.report000_cnn(), seed)
    step = torch_models.training_step(model, settings.lr, settings.momentum, settings.weight_decay)
    accuracies = []
    for epoch in range(1, epochs + 1):
        lr = settings.lr * settings.lr_gamma ** ((epoch - 1) // settings.lr_step)
        step.optimizer.param_groups[0]["lr"] = lr
        model.train()
        for xb, yb in batches(dataset.train_x, dataset.train_y, settings.batch_size,
                              seed=epoch_seed(seed, epoch)):
            step(torch.from_numpy(xb), torch.from_numpy(yb))
        accuracies.append(evaluate(model, dataset.test_x, dataset.test_y))
        print(f"seed {seed} epoch {epoch}: test acc {accuracies[-1]:.4f}", flush=True)
    return accuracies


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="mnist, fashion-mnist, digits or a folder (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one run per seed: weights and batch order (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch's threads (default: its own choice)")
    args = parser.parse_args(argv)
    global torch
    try:
        import torch
    except ImportError:
        print("torch_reference.py needs PyTorch: pip install torch", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset)
    results = {seed: run(dataset, args.epochs, seed) for seed in args.seeds}
    print(json.dumps({"dataset": args.dataset, "test_acc": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
