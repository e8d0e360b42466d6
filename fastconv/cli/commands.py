"""What each ``fastconv`` command does, once its options are parsed: `COMMANDS`
maps a command's name to its ``_run_*`` function (``train``, ``viz``, ``compare``,
``info``, ``compile``), `_run_command` runs one under its ``--backend``, and
`_run_bench` forwards ``bench``'s arguments to `fastconv.benchmark`.  Also the exit
statuses and the errors a user can cause (`USER_ERRORS`), and `_report_failure`, what
a failing MPI rank prints before the job aborts.

Every heavy import (numpy, numba, the training loop, the figures) is inside the
function that needs it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fastconv.cli.arguments import _names, default_dataset
from fastconv.system.env import EnvironmentVariableError

# Errors a user can cause and fix without reading code: shown as one line.  OSError
# covers the environment's refusals too (a full disk, a too-long path, a folder in
# use); the messages name the file.
USER_ERRORS = (ValueError, OSError, ImportError, EnvironmentVariableError)
EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130


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
