"""The ``fastconv`` command.

    fastconv train --model cnn --dataset fashion-mnist --epochs 5 --backend numba --out runs/fashion
    fastconv train --model cnn --dataset fashion-mnist --epochs 10 --out runs/fashion --resume
    fastconv viz --checkpoint runs/fashion/model.npz --out runs/fashion/figures
    fastconv compare --dataset mnist --epochs 5 --backends numpy,numba --out runs/compare
    fastconv bench --quick
    fastconv info
    mpiexec -n 2 fastconv train --model cnn --dataset digits --out runs/digits-2ranks   # fastconv[mpi]

A user mistake (unknown data set, missing files, a checkpoint that does not fit)
prints one ``fastconv: error: ...`` line and exits with status 1, in every command
including ``bench``; bad options exit with argparse's status 2, and so does a bad
``FASTCONV_*`` environment variable, checked before anything is created or loaded;
Ctrl-C during training saves and exits with 130.  ``--debug`` shows the full
traceback instead.  ``--help``, ``--version`` and ``info`` work whatever the
environment holds; bare ``fastconv`` prints the help.  Warnings (fastconv's and
Python's) are one ``fastconv: ...`` line each on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fastconv.console import bad_environment, one_line_notices
from fastconv.system.env import EnvironmentVariableError

# Errors a user can cause and fix without reading code: shown as one line.  OSError
# covers the environment's refusals too (a full disk, a too-long path, a folder in
# use); the messages name the file.
USER_ERRORS = (ValueError, OSError, ImportError, EnvironmentVariableError)
EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def _setting(name: str):
    """An argparse type for hyper-parameter ``name``: a number in its accepted range
    (`fastconv.training.hyperparameters`)."""
    def parse(text: str):
        from fastconv.training.hyperparameters import INTEGER_SETTINGS, range_problem

        try:
            value = int(text) if name in INTEGER_SETTINGS else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        problem = range_problem(name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = name
    return parse


def _names(text: str, flag: str) -> list[str]:
    """A comma-separated list of names; an empty one is an error naming ``flag``."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"{flag} {text!r} names nothing; give a comma-separated list")
    return names


def default_dataset(model_name: str) -> str:
    """The offline data set a model trains on when --dataset is left out."""
    return "letters" if model_name == "letters-cnn" else "digits"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless the text already says it
    (options whose default is None describe it in words)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None:
            return text
        return super()._get_help_string(action)


def _add_data_options(parser: argparse.ArgumentParser, dataset_default: str | None) -> None:
    parser.add_argument("--dataset", default=dataset_default,
                        help="mnist, fashion-mnist, digits, letters, or a folder (IDX files or one "
                             "sub-folder of images per class)"
                        + (f" (default {dataset_default})" if dataset_default
                           else " (default: the one the checkpoint was trained on)"))
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder searched first for the data files (default: none; FASTCONV_DATA, "
                             "~/.cache/fastconv and /usr/share/datasets are searched after it)")
    parser.add_argument("--download", action="store_true", help="download missing MNIST-format files")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="use at most N train and N test images (a seeded subset, for quick runs; "
                             "default: all)")


def build_parser() -> argparse.ArgumentParser:
    from fastconv import __version__
    from fastconv.models import MODELS

    parser = argparse.ArgumentParser(prog="fastconv", formatter_class=HelpFormatter, description=(
        "Numba-JIT convolution kernels and a from-scratch CNN framework: train, visualise "
        "and benchmark the networks of the two course reports."))
    parser.add_argument("--version", action="version", version=f"fastconv {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # -- train
    train = commands.add_parser("train", help="train a model, writing checkpoint, logs and curves",
                                formatter_class=HelpFormatter,
                                description="Train a model; hyper-parameters left out take the "
                                            "report's defaults for that model.")
    train.add_argument("--model", choices=list(MODELS), default=None,
                       help="network (default cnn; with --resume the checkpoint's)")
    _add_data_options(train, None)
    train.add_argument("--epochs", type=_positive_int, default=10,
                       help="total epochs (with --resume: continue up to this many; default 10)")
    train.add_argument("--batch-size", type=_setting("batch_size"), default=None,
                       help="global batch size over all MPI ranks (default: the model's report setting, "
                            "like every hyper-parameter)")
    train.add_argument("--lr", type=_setting("lr"), default=None,
                       help="initial learning rate, in (0, 100] (default: the model's report setting)")
    train.add_argument("--momentum", type=_setting("momentum"), default=None,
                       help="in [0, 1) (default: the model's report setting)")
    train.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=None,
                       help="sgd (default), adam or adamw (PyTorch semantics; their lr default is 1e-3)")
    train.add_argument("--weight-decay", type=_setting("weight_decay"), default=None,
                       help="in [0, 1] (default: the model's report setting)")
    train.add_argument("--lr-step", type=_setting("lr_step"), default=None,
                       help="multiply the learning rate by --lr-gamma every this many epochs (default 5)")
    train.add_argument("--lr-gamma", type=_setting("lr_gamma"), default=None, help="in (0, 1] (default 0.5)")
    train.add_argument("--no-bn", action="store_true", help="letters-cnn without batch normalisation")
    train.add_argument("--dropout", type=_probability, default=None,
                       help="letters-cnn dropout probability (default: the model's report setting)")
    train.add_argument("--dtype", choices=["float32", "float64"], default=None,
                       help="model dtype (default float32, or the checkpoint's on --resume)")
    train.add_argument("--backend", default=None, help="numpy, numba, ... (default: FASTCONV_BACKEND or numba)")
    train.add_argument("--seed", type=int, default=None,
                       help="weights, batch order and data subset (default 0)")
    train.add_argument("--out", type=Path, default=None,
                       help="output folder (default runs/MODEL-DATASET)")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")

    # -- viz
    viz = commands.add_parser("viz", help="figures and entropy table of a trained model",
                              formatter_class=HelpFormatter,
                              description="Curves, conv kernels, feature maps, t-SNE and the entropy "
                                          "table of a checkpoint, on its data set's test split.")
    viz.add_argument("checkpoint", type=Path, nargs="?", default=None,
                     help="model.npz (or its folder), here or as --checkpoint (required: no default)")
    viz.add_argument("--checkpoint", dest="checkpoint_option", type=Path, default=None,
                     help="the same as the positional CHECKPOINT (default: none)")
    viz.add_argument("--out", type=Path, default=None, help="output folder (default: CHECKPOINT_DIR/figures)")
    _add_data_options(viz, None)
    viz.add_argument("--images", type=int, nargs="+", default=None,
                     help="test image indices for the feature maps (default: one each of 4 classes)")
    viz.add_argument("--tsne-points", type=_positive_int, default=1000, help="test images in the t-SNE plots")
    viz.add_argument("--entropy-images", type=_positive_int, default=None,
                     help="test images averaged in the entropy table (default: all)")
    viz.add_argument("--backend", default=None, help="numpy, numba, ... (default: FASTCONV_BACKEND or numba)")
    viz.add_argument("--seed", type=int, default=0, help="t-SNE and image choice")

    # -- compare
    compare = commands.add_parser("compare", help="CNN vs MLP-1 vs MLP-2 (report 000 section 4)",
                                  formatter_class=HelpFormatter,
                                  description="Train cnn, mlp1 and mlp2 with the report's settings "
                                              "and tabulate time, accuracy and parameter count.")
    _add_data_options(compare, "digits")
    compare.add_argument("--epochs", type=_positive_int, default=5, help="epochs per model")
    compare.add_argument("--backends", default=None,
                         help="comma-separated, e.g. numpy,numba (default: the current backend)")
    compare.add_argument("--models", default="cnn,mlp1,mlp2", help="comma-separated models")
    compare.add_argument("--seed", type=int, default=0, help="weights, batch order and data subset")
    compare.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder")
    compare.add_argument("--no-progress", action="store_true", help="no progress bars")

    # -- bench: its arguments are parsed by fastconv.benchmark (see main)
    commands.add_parser("bench", add_help=False, help="kernel and training-step benchmarks "
                                                      "(fastconv bench --help)")
    compile_ = commands.add_parser(
        "compile", help="compile every numba kernel this CPU can use, now",
        formatter_class=HelpFormatter,
        description="Compile (or load from numba's on-disk cache) every kernel of the numba backend that "
                    "this CPU can use, on two processes, with progress lines: for a machine image, a "
                    "shared installation or before a benchmark, so that no later run waits.  Runs also "
                    "compile what they need on their own.")
    compile_.add_argument("--dtype", default="float32", choices=("float32", "float64", "both"),
                          help="the kernels' dtype")
    compile_.add_argument("--jobs", type=_positive_int, default=2, help="processes that compile")
    commands.add_parser("info", help="version, backends, threads and environment problems",
                        description="Print the fastconv and Python versions, the backends that load here "
                                    "(and why another does not), the cores and threads, numba's threading "
                                    "layer, the BLAS the kernels' GEMMs call and the PyTorch version.  It "
                                    "works whatever the FASTCONV_* variables hold.")
    return parser


# ------------------------------------------------------------------ commands
def _run_train(args) -> int:
    from fastconv.distributed import launch_world

    world = launch_world()  # this process alone, unless mpiexec started several
    if world.size == 1:
        return _train(args, world)
    threads = world.configure_threads()
    with world.abort_on_error(lambda exc, rank: _report_failure(exc, args.debug, rank)):
        if world.is_writer:
            print(f"fastconv: {world.size} MPI ranks on {world.hosts} host(s), {threads} thread(s) per rank "
                  f"({os.cpu_count()} cores per host / {world.ranks_on_host} ranks on this host)", flush=True)
        return _train(args, world)


def _train(args, world) -> int:
    from fastconv.train import train

    say = print if world.is_writer else (lambda *a, **k: None)
    model = args.model or "cnn"
    dataset = args.dataset
    if dataset is None and not args.resume:
        dataset = default_dataset(model)
        say(f"no --dataset given: training on {dataset!r}, which needs no download "
            f"(for MNIST pass --dataset mnist --download)")
    dataset_label = Path(str(dataset or default_dataset(model))).name or "data"
    out = args.out or Path("runs") / f"{model}-{dataset_label}"
    result = train(
        args.model if args.resume else model, dataset, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay, lr_step=args.lr_step,
        lr_gamma=args.lr_gamma, batch_norm=False if args.no_bn else None, dropout=args.dropout,
        out_dir=out, seed=args.seed, resume=args.resume, overwrite=args.overwrite,
        progress=not args.no_progress, limit=args.limit, data_root=args.data_root,
        download=args.download, dtype=args.dtype, backend=args.backend, world=world,
        optimizer=args.optimizer)
    if result.interrupted:
        return EXIT_INTERRUPTED
    say(f"wrote {out}/model.npz, history.json, iterations.json and curves")
    return 0


def _report_failure(exc: BaseException, debug: bool, rank: int = 0) -> None:
    """What `main` prints for an error, for a rank that is about to abort the job."""
    import traceback

    where = f"[rank {rank}] " if rank else ""
    if isinstance(exc, KeyboardInterrupt):
        print(f"fastconv: {where}interrupted", file=sys.stderr)
    elif debug or not isinstance(exc, USER_ERRORS):
        # The error first: an MPI abort can cut a rank's output short, and the
        # traceback is the part that may be lost.
        print(f"fastconv: {where}failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        traceback.print_exception(exc)
    else:
        print(f"fastconv: error: {where}{exc}", file=sys.stderr)


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

    backends = _names(args.backends, "--backends") if args.backends is not None else None
    models = _names(args.models, "--models")
    summary = compare(args.dataset, epochs=args.epochs, backends=backends, models=models,
                      out_dir=args.out, seed=args.seed, limit=args.limit, data_root=args.data_root,
                      download=args.download, progress=not args.no_progress)
    return EXIT_INTERRUPTED if summary["interrupted"] else 0


def _current_backend_name() -> str:
    import fastconv

    try:
        return fastconv.get_backend().name
    except (ValueError, ImportError, EnvironmentVariableError) as exc:
        return f"none: {exc}"


def _run_info(args) -> int:
    """Always works: a backend that cannot load is listed with the reason."""
    import numpy as np

    import fastconv
    from fastconv.backends import backend_problems, registered_backends

    print(f"fastconv {fastconv.__version__}")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")
    problems = backend_problems()
    available = [name for name in registered_backends() if name not in problems]
    print(f"backends: {', '.join(available) or 'none'} (current: {_current_backend_name()}; "
          f"FASTCONV_BACKEND={os.environ.get('FASTCONV_BACKEND', '') or 'unset'})")
    for name, why in problems.items():
        print(f"  {name}: not usable: {why}")
    print(f"cpu cores: {os.cpu_count()}; FASTCONV_NUM_THREADS="
          f"{os.environ.get('FASTCONV_NUM_THREADS', '') or 'unset (all cores)'}")
    if "numba" in available:
        import numba

        try:  # only known once a parallel kernel has run
            layer = numba.threading_layer()
        except ValueError:
            layer = f"{numba.config.THREADING_LAYER} (none started yet)"
        print(f"numba {numba.__version__}: {numba.get_num_threads()} threads, threading layer {layer}")
        from fastconv.backends.numba_backend.blas import describe

        print(f"kernel GEMMs: {describe()} (FASTCONV_BLAS={os.environ.get('FASTCONV_BLAS', '') or 'unset (auto)'})")
    try:
        import torch

        print(f"torch {torch.__version__}: {torch.get_num_threads()} threads (benchmark anchor only)")
    except ImportError:
        print("torch: not installed (optional)")
    return 0


def _run_compile(args) -> int:
    import fastconv
    from fastconv.startup import prepare_backend

    if "numba" not in fastconv.available_backends():
        print("fastconv compile: the numba backend cannot load here (fastconv info says why)", file=sys.stderr)
        return 2
    dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    with fastconv.use_backend("numba"):
        seconds = prepare_backend(None, dtypes, jobs=args.jobs, background=False)
    print(f"numba kernels ({'/'.join(dtypes)}) ready in {seconds:.1f} s")
    return 0


COMMANDS = {"train": _run_train, "viz": _run_viz, "compare": _run_compare, "info": _run_info,
            "compile": _run_compile}


def _one_checkpoint(parser, args) -> Path:
    """``viz``'s checkpoint, given positionally (as examples/visualize.py) or as
    ``--checkpoint``; argparse's usage error when missing or given twice differently."""
    given = {path for path in (args.checkpoint, args.checkpoint_option) if path is not None}
    if len(given) != 1:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices["viz"].error("give one checkpoint: fastconv viz RUN/model.npz "
                                      "(or --checkpoint RUN/model.npz)")
    return given.pop()


def _run_command(args) -> int:
    import contextlib

    import fastconv

    # Selected before any data is loaded (a bad name fails fast) and restored on
    # return, so calling main() from Python leaves the caller's backend alone.
    backend = getattr(args, "backend", None)
    with fastconv.use_backend(backend) if backend else contextlib.nullcontext():
        return COMMANDS[args.command](args)


def _run_bench(argv) -> int:
    # Forwarded untouched: fastconv.benchmark owns its own options and --help.
    from fastconv.benchmark import main as bench_main

    try:
        return bench_main(argv)
    except SystemExit as exc:  # --help or a usage error: argparse already printed why
        return int(exc.code or 0)


def _guarded(run, debug: bool) -> int:
    """``run()``'s status; a user error is one line (the traceback with ``--debug``)."""
    try:
        return run()
    except KeyboardInterrupt:
        print("fastconv: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"fastconv: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


# ------------------------------------------------------------------ entry point
def main(argv=None) -> int:
    """Entry point of the ``fastconv`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with one_line_notices():
        return _main(argv)


def _main(argv: list) -> int:
    debug = "--debug" in argv[:1]
    if argv[int(debug):int(debug) + 1] == ["bench"]:
        bench_argv = argv[int(debug) + 1:]
        if not {"-h", "--help"} & set(bench_argv):
            bad = bad_environment(debug)
            if bad is not None:
                return bad
        return _guarded(lambda: _run_bench(bench_argv), debug)
    parser = build_parser()
    if not argv[int(debug):]:
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
        if args.command == "viz":
            args.checkpoint = _one_checkpoint(parser, args)
    except SystemExit as exc:  # --help or a usage error: argparse already printed why
        return int(exc.code or 0)
    if args.command != "info":                 # info reports the environment's problems
        bad = bad_environment(args.debug)
        if bad is not None:
            return bad
    return _guarded(lambda: _run_command(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
