"""Report 000 section 4: CNN vs MLP-1 (784-392-10) vs MLP-2 (784-392-196-10, Euclidean loss).

Trains the three networks with the report's settings on each backend given and writes
``comparison.png`` (test accuracy and loss per epoch), ``comparison.md`` and
``comparison.json`` (parameters, seconds per epoch, test accuracy, speed-up over numpy)
into ``--out``.  Same as ``fastconv compare``.

    python examples/cnn_vs_mlp.py --dataset mnist --epochs 5 --backends numpy,numba

The report: CNN >= 2 h for 30 epochs in NumPy (98.58%), MLP-1 2 min (98.32%), MLP-2
3.5 min (98.75%); parameters 4,842 / 311,650 / 386,718.

How long it takes (the project's first 2-core AMD EPYC, idle, 2026-11-22, training time only):
    fastconv compare --dataset mnist --epochs 2 --backends numpy,numba (measured):
    backend  model  s/epoch  test acc after 2 epochs
    numpy    cnn    5.35     0.9325
    numpy    mlp1   0.15     0.8970
    numpy    mlp2   0.20     0.8775
    numba    cnn    0.20     0.9325   (26.9x numpy)
    numba    mlp1   0.16     0.8970   (no conv kernels: the same NumPy matmuls)
    numba    mlp2   0.20     0.8775

  So 30 epochs of all three on MNIST's 8k split: ~2.9 min on numpy, ~17 s on numba
  (on the full 60k MNIST multiply by 7.5).  Both backends give the same accuracies
  to 4 digits.  As in the report, the CNN is by far the slowest on NumPy, and on
  numba it costs about what the MLPs cost.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fastconv.compare import compare


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist",
                        help="mnist, fashion-mnist, digits or a folder (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per model (default: %(default)s)")
    parser.add_argument("--backends", default=None,
                        help="comma-separated, e.g. numpy,numba (default: the current backend)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most N train and N test images (default: all)")
    parser.add_argument("--data-root", default=None,
                        help="folder searched first for the data files (default: none)")
    parser.add_argument("--seed", type=int, default=0,
                        help="weights, batch order and data subset (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("runs/cnn-vs-mlp"),
                        help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    backends = args.backends.split(",") if args.backends else None
    compare(args.dataset, epochs=args.epochs, backends=backends, out_dir=args.out, seed=args.seed,
            limit=args.limit, data_root=args.data_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
