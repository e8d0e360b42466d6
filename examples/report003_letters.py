"""Report 003: the letters CNN with and without batch normalisation and with dropout 0.3.

conv5x5(32)-BN-ReLU, conv5x5(64)-BN-ReLU, maxpool2, [conv3x3(64)-BN-ReLU] + residual,
conv3x3(128)-BN-ReLU, maxpool2, [conv3x3(128)-BN-ReLU-dropout] + residual,
linear(8192->256)-BN1d-ReLU-dropout-linear(26); 32x32 grey letters, 'a' and 'A' one class.

Three runs, as in the report's section 4.1: without BN (the report's default
configuration, 0.855), with BN (0.920), with BN and dropout 0.3 (0.894).  Then one
figure comparing their test curves, and for the BN model the report's section 4.2/4.3
figures: kernels of conv layers 0 and 1, feature maps of one image, t-SNE before and
after the last linear layer, and the entropy table.

    python examples/report003_letters.py --epochs 10 --backend numba
    python examples/report003_letters.py --dataset path/to/letter/folders

Data: the default ``letters`` set is SYNTHETIC (glyphs rendered from fonts with random
distortions, 100 per case and letter, 80/20 split: 4,160 train / 1,040 test images;
see fastconv.data.letters), a stand-in for the report's image folder, which is not
available.  Accuracies are therefore not comparable with the report's.  Any folder
with one sub-folder of images per class works the same way.

Optimiser (the report does not give one): SGD, batch 64, momentum 0.9, weight decay
5e-4, halved every 5 epochs; lr 0.05 with BN, 0.001 without (without BN, lr 0.05 and
0.01 stay at chance after 2 epochs; see fastconv.train.LETTERS_NO_BN).

How long it takes (the project's first 2-core AMD EPYC, idle, 2026-11-22):
    letters-cnn, 4,160 training / 1,040 test images:
    numba   ~205 images/s in training: 20 s per epoch + 4 s evaluation (measured);
            the default 3 runs x 10 epochs: ~12 min
    numpy   ~13 images/s (4.7 s per batch of 64, `fastconv bench`): ~5 min per
            epoch; 3 runs x 10 epochs: ~2.5 h -- use --epochs 2 --limit 1000 to
            get a taste

  plus ~30 s (numba) / ~1.5 min (numpy) for the figures and the entropy table of the
  BN model (extrapolated from 256-image evaluations).  Accuracy on the synthetic
  letters, measured with fastconv's PyTorch-adapter backend (same network, same
  numbers up to rounding, faster): with BN 0.78 after 1 epoch and 0.92 after 2;
  without BN (lr 0.001) 0.20 and 0.42.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import fastconv
from fastconv.train import train
from fastconv.viz import plot_comparison, visualize

RUNS = {  # name: (batch_norm, dropout)
    "no-bn": (False, 0.0),
    "bn": (True, 0.0),
    "bn-dropout0.3": (True, 0.3),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="letters",
                        help="letters (synthetic) or an image folder (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run (default: %(default)s)")
    parser.add_argument("--runs", default=",".join(RUNS),
                        help=f"comma-separated subset of {', '.join(RUNS)} (default: %(default)s)")
    parser.add_argument("--backend", default=None, help="numpy or numba (default: the current one)")
    parser.add_argument("--limit", type=int, default=None, help="at most N train and N test images (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="weights, batch order and data subset (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("runs/report003"),
                        help="output folder, one sub-folder per run (default: %(default)s)")
    args = parser.parse_args(argv)

    backend = args.backend or fastconv.get_backend().name
    histories = []
    for name in args.runs.split(","):
        batch_norm, dropout = RUNS[name]
        result = train("letters-cnn", args.dataset, epochs=args.epochs, batch_norm=batch_norm,
                       dropout=dropout, out_dir=args.out / name, seed=args.seed, backend=backend,
                       limit=args.limit, overwrite=True)
        if result.interrupted:
            return 130
        histories.append({"label": name, "model": name, "history": result.history})
        print(f"{name}: final test accuracy {result.history[-1]['test_acc']:.4f}")
    plot_comparison(histories, args.out / "runs_compared.png", title="letters CNN: BN, no BN, dropout 0.3")
    best = "bn" if "bn" in args.runs.split(",") else args.runs.split(",")[0]
    with fastconv.use_backend(backend):
        visualize(args.out / best / "model.npz", args.out / best / "figures", seed=args.seed)
    print(f"figures in {args.out / best / 'figures'}; comparison in {args.out / 'runs_compared.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
