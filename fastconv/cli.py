"""The ``fastconv`` command.

    fastconv train --model cnn --dataset fashion-mnist --epochs 5 --backend numba --out runs/fashion
    fastconv train --model cnn --dataset fashion-mnist --epochs 10 --out runs/fashion --resume
    fastconv viz --checkpoint runs/fashion/model.npz --out runs/fashion/figures
    fastconv compare --dataset mnist --epochs 5 --backends numpy,numba --out runs/compare
    fastconv bench --quick
    fastconv info

A user mistake (unknown data set, missing files, a checkpoint that does not fit)
prints one ``fastconv: error: ...`` line and exits with status 1; bad options exit
with argparse's status 2; Ctrl-C during training saves and exits with 130.
``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Errors a user can cause and fix without reading code: shown as one line.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
               PermissionError, ImportError)
EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def _add_data_options(parser: argparse.ArgumentParser, dataset_default: str | None) -> None:
    parser.add_argument("--dataset", default=dataset_default,
                        help="mnist, fashion-mnist, digits, letters, or a folder (IDX files or one "
                             "sub-folder of images per class)"
                        + (f" (default {dataset_default})" if dataset_default else ""))
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder searched first for the data files (else FASTCONV_DATA, "
                             "~/.cache/fastconv, /usr/share/datasets)")
    parser.add_argument("--download", action="store_true", help="download missing MNIST-format files")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="use at most N train and N test images (a seeded subset, for quick runs)")


def build_parser() -> argparse.ArgumentParser:
    from fastconv.models import MODELS

    parser = argparse.ArgumentParser(prog="fastconv", description=(
        "Numba-JIT convolution kernels and a from-scratch CNN framework: train, visualise "
        "and benchmark the networks of the two course reports."))
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # -- train
    train = commands.add_parser("train", help="train a model, writing checkpoint, logs and curves",
                                description="Train a model; hyper-parameters left out take the "
                                            "report's defaults for that model.")
    train.add_argument("--model", choices=list(MODELS), default="cnn", help="network (default cnn)")
    _add_data_options(train, "mnist")
    train.add_argument("--epochs", type=_positive_int, default=10,
                       help="total epochs (with --resume: continue up to this many; default 10)")
    train.add_argument("--batch-size", type=_positive_int, default=None)
    train.add_argument("--lr", type=float, default=None, help="initial learning rate")
    train.add_argument("--momentum", type=float, default=None)
    train.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=None,
                       help="sgd (default), adam or adamw (PyTorch semantics; lr default 1e-3)")
    train.add_argument("--weight-decay", type=float, default=None)
    train.add_argument("--lr-step", type=_positive_int, default=None,
                       help="multiply the learning rate by --lr-gamma every this many epochs (default 5)")
    train.add_argument("--lr-gamma", type=float, default=None, help="(default 0.5)")
    train.add_argument("--no-bn", action="store_true", help="letters-cnn without batch normalisation")
    train.add_argument("--dropout", type=_probability, default=None, help="letters-cnn dropout probability")
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    train.add_argument("--backend", default=None, help="numpy, numba, ... (default: FASTCONV_BACKEND or numba)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, default=None,
                       help="output folder (default runs/MODEL-DATASET)")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")

    # -- viz
    viz = commands.add_parser("viz", help="figures and entropy table of a trained model",
                              description="Curves, conv kernels, feature maps, t-SNE and the entropy "
                                          "table of a checkpoint, on its data set's test split.")
    viz.add_argument("--checkpoint", type=Path, required=True, help="model.npz (or its folder)")
    viz.add_argument("--out", type=Path, default=None, help="output folder (default: CHECKPOINT_DIR/figures)")
    _add_data_options(viz, None)
    viz.add_argument("--images", type=int, nargs="+", default=None,
                     help="test image indices for the feature maps (default: one each of 4 classes)")
    viz.add_argument("--tsne-points", type=_positive_int, default=1000)
    viz.add_argument("--entropy-images", type=_positive_int, default=None,
                     help="test images averaged in the entropy table (default: all)")
    viz.add_argument("--backend", default=None)
    viz.add_argument("--seed", type=int, default=0)

    # -- compare
    compare = commands.add_parser("compare", help="CNN vs MLP-1 vs MLP-2 (report 000 section 4)",
                                  description="Train cnn, mlp1 and mlp2 with the report's settings "
                                              "and tabulate time, accuracy and parameter count.")
    _add_data_options(compare, "mnist")
    compare.add_argument("--epochs", type=_positive_int, default=5)
    compare.add_argument("--backends", default=None,
                         help="comma-separated, e.g. numpy,numba (default: the current backend)")
    compare.add_argument("--models", default="cnn,mlp1,mlp2")
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--out", type=Path, default=Path("runs/compare"))
    compare.add_argument("--no-progress", action="store_true")

    # -- bench: its arguments are parsed by fastconv.benchmark (see main)
    commands.add_parser("bench", add_help=False, help="kernel and training-step benchmarks "
                                                      "(fastconv bench --help)")
    commands.add_parser("info", help="version, backends and threads")
    return parser


# ------------------------------------------------------------------ commands
def _run_train(args) -> int:
    from fastconv.train import train

    dataset_label = Path(str(args.dataset)).name or "data"
    out = args.out or Path("runs") / f"{args.model}-{dataset_label}"
    result = train(
        args.model, args.dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        momentum=args.momentum, weight_decay=args.weight_decay, lr_step=args.lr_step,
        lr_gamma=args.lr_gamma, batch_norm=False if args.no_bn else None, dropout=args.dropout,
        out_dir=out, seed=args.seed, resume=args.resume, overwrite=args.overwrite,
        progress=not args.no_progress, limit=args.limit, data_root=args.data_root,
        download=args.download, dtype=args.dtype, backend=args.backend, optimizer=args.optimizer)
    if result.interrupted:
        return EXIT_INTERRUPTED
    print(f"wrote {out}/model.npz, history.json, iterations.json and curves")
    return 0


def _run_viz(args) -> int:
    from fastconv.viz import visualize

    out = args.out or (args.checkpoint if args.checkpoint.is_dir() else args.checkpoint.parent) / "figures"
    result = visualize(args.checkpoint, out, dataset=args.dataset, sample_indices=args.images,
                       tsne_points=args.tsne_points, entropy_images=args.entropy_images,
                       data_root=args.data_root, seed=args.seed)
    print(f"wrote {len(result['files'])} files to {out}")
    return 0


def _run_compare(args) -> int:
    from fastconv.compare import compare

    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    summary = compare(args.dataset, epochs=args.epochs, backends=backends, models=models,
                      out_dir=args.out, seed=args.seed, limit=args.limit, data_root=args.data_root,
                      download=args.download, progress=not args.no_progress)
    return EXIT_INTERRUPTED if summary["interrupted"] else 0


def _run_info(args) -> int:
    import numpy as np

    import fastconv

    print(f"fastconv {fastconv.__version__}")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")
    available = fastconv.available_backends()
    print(f"backends: {', '.join(available)} (current: {fastconv.get_backend().name}; "
          f"FASTCONV_BACKEND={os.environ.get('FASTCONV_BACKEND', '') or 'unset'})")
    print(f"cpu cores: {os.cpu_count()}; FASTCONV_NUM_THREADS="
          f"{os.environ.get('FASTCONV_NUM_THREADS', '') or 'unset (all cores)'}")
    if "numba" in available:
        import numba

        try:  # only known once a parallel kernel has run
            layer = numba.threading_layer()
        except ValueError:
            layer = f"{numba.config.THREADING_LAYER} (none started yet)"
        print(f"numba {numba.__version__}: {numba.get_num_threads()} threads, threading layer {layer}")
    try:
        import torch

        print(f"torch {torch.__version__}: {torch.get_num_threads()} threads (benchmark anchor only)")
    except ImportError:
        print("torch: not installed (optional)")
    return 0


COMMANDS = {"train": _run_train, "viz": _run_viz, "compare": _run_compare, "info": _run_info}


def main(argv=None) -> int:
    """Entry point of the ``fastconv`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[:1]
    if argv[int(debug):int(debug) + 1] == ["bench"]:
        # Forwarded untouched: fastconv.benchmark owns its own options and --help.
        from fastconv.benchmark import main as bench_main

        return bench_main(argv[int(debug) + 1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse already printed why
        return int(exc.code or 0)
    import contextlib

    import fastconv

    try:
        # Selected before any data is loaded (a bad name fails fast) and restored on
        # return, so calling main() from Python leaves the caller's backend alone.
        backend = getattr(args, "backend", None)
        with fastconv.use_backend(backend) if backend else contextlib.nullcontext():
            return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("fastconv: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"fastconv: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
