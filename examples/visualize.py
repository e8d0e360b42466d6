"""Every figure of the reports for a trained checkpoint (same as ``fastconv viz``).

Curves (from the run folder), kernels of the first two conv layers, feature maps of
chosen test images after the first two conv blocks, t-SNE of the penultimate features
and of the logits, and report 003's entropy table (printed and saved as entropy.json).

    python examples/visualize.py runs/report000-mnist-numba/model.npz --out figures/
    python examples/visualize.py --checkpoint runs/letters-bn/model.npz --images 100 1390

How long it takes: dominated by t-SNE (two embeddings of 1,000 points, ~5-10 s each)
and by one forward pass over the test set for the entropy averages (seconds on numba;
on numpy the letters CNN needs minutes for a 520-image test set):
    report000 CNN on MNIST (2,000 test images, 1,000 t-SNE points): 10.6 s on numba,
    11.4 s on numpy (measured, wall clock including start-up).
    letters CNN on the synthetic letters (1,040 test images): ~30 s on numba,
    ~1.5 min on numpy (extrapolated from 256-image evaluations).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import fastconv
from fastconv.viz import visualize


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Positional (as before) or --checkpoint (as `fastconv viz`).
    parser.add_argument("checkpoint", type=Path, nargs="?", default=None, help="model.npz or its folder (required, here or as --checkpoint)")
    parser.add_argument("--checkpoint", dest="checkpoint_option", type=Path, default=None,
                        help="the same as the positional CHECKPOINT (default: none)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: CHECKPOINT_DIR/figures)")
    parser.add_argument("--dataset", default=None, help="test images from (default: the one it was trained on)")
    parser.add_argument("--images", type=int, nargs="+", default=None,
                        help="test image indices for the feature maps (default: one each of 4 classes)")
    parser.add_argument("--tsne-points", type=int, default=1000,
                        help="test images in the t-SNE plots (default: %(default)s)")
    parser.add_argument("--backend", default=None, help="numpy or numba (default: the current one)")
    parser.add_argument("--data-root", default=None, help="folder searched first for the data files (default: none)")
    args = parser.parse_args(argv)
    if (args.checkpoint is None) == (args.checkpoint_option is None):
        parser.error("give the checkpoint once: positionally or as --checkpoint")
    args.checkpoint = args.checkpoint or args.checkpoint_option
    run_dir = args.checkpoint if args.checkpoint.is_dir() else args.checkpoint.parent
    out = args.out or run_dir / "figures"
    with fastconv.use_backend(args.backend or fastconv.get_backend().name):
        result = visualize(args.checkpoint, out, dataset=args.dataset, sample_indices=args.images,
                           tsne_points=args.tsne_points, data_root=args.data_root)
    print(f"wrote {len(result['files'])} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
