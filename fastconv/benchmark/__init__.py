"""`fastconv bench`: numpy vs numba vs PyTorch, per kernel and per training step.

Runs a curated set of the two reports' layer shapes in one process, prints a table
(median time, IQR, speedup over numpy, ratio to PyTorch, GFLOP/s and % of the
machine's float32 matmul peak, the numba conv algorithm chosen), the training-step
times and seconds per 60k-image epoch, JIT compile time separately from run time, and
writes results.json, results.md and PNG charts to ``--out``: ``bench-results/`` for
the full run, ``bench-results-quick/`` for ``--quick`` (neither replaces the other's;
a run that replaces an earlier one's results says so first).  The report is printed
once, as it is measured; the end names results.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

PEAK_ROUNDS = 3
QUICK_PEAK_ROUNDS = 1       # --quick: about 2 s for the yardstick, not 7
DEFAULT_OUT = "bench-results"
DEFAULT_QUICK_OUT = "bench-results-quick"


def build_parser() -> argparse.ArgumentParser:
    from fastconv.cli import HelpFormatter, _positive_int

    parser = argparse.ArgumentParser(prog="fastconv bench", description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a representative subset, under a minute")
    parser.add_argument("--backends", default=None,
                        help="comma-separated backends (default: every available one)")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="threads for numba, PyTorch and BLAS (default: FASTCONV_NUM_THREADS or all cores)")
    parser.add_argument("--repeat", type=_positive_int, default=None,
                        help="timed calls per measurement (default 7, quick 5)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="dtype of every array measured")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default {DEFAULT_OUT}/, or {DEFAULT_QUICK_OUT}/ with --quick)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the batch/channel/thread sweeps")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the cold/warm JIT compile measurement (fresh processes)")
    parser.add_argument("--zoo", action="store_true",
                        help="only the network zoo (conv layers of LeNet-5, ResNet-20/56/18/50, VGG-11/16, "
                             "MobileNetV2, DenseNet, SqueezeNet, U-Net, AlexNet, DeepLabV3, 1x1 bottlenecks, "
                             "strided stems; numba vs --peers); the full run includes it")
    parser.add_argument("--no-zoo", action="store_true", help="leave the network zoo out of the full run")
    parser.add_argument("--peers", type=_peer_names, default=["torch"],
                        help="comma-separated libraries the zoo times beside numba: torch, jax, onnxruntime "
                             "(JAX and ONNX Runtime: pip install 'fastconv[peers]')")
    parser.add_argument("--networks", action="store_true",
                        help="only whole networks (report 000's CNN, letters-cnn, resnet20, vgg11, mobilenetv2): "
                             "training step and inference at batch 1 and 8, numba vs the same network in torch.nn")
    parser.add_argument("--no-load", action="store_true",
                        help="skip the training step timed beside a busy-looping process (1 vs all threads)")
    return parser


def _peer_names(text: str) -> list:
    from fastconv.benchmark.peers import parse_names

    try:
        return parse_names(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_zoo_section(results: dict, dtype, repeat: int, quick: bool, backends, out_dir: Path, log,
                    peers=("torch",)) -> list:
    """The network zoo: measured, logged, written as zoo.json / zoo.md / zoo.png."""
    import json

    import fastconv
    from fastconv.benchmark import report, zoo

    if "torch" not in backends and "torch" in fastconv.available_backends():
        peers = [p for p in peers if p != "torch"]      # left out by --backends
    log("\nnetwork zoo (conv layers; ratio = peer time / numba time):")
    results["zoo"] = zoo.run_zoo(dtype, repeat, quick, peers, log, threads=results["machine"]["threads"])
    out_dir.mkdir(parents=True, exist_ok=True)
    report.write_atomic(out_dir / "zoo.json", json.dumps(results["zoo"], indent=2))
    report.write_atomic(out_dir / "zoo.md", zoo.markdown(results["zoo"]))
    zoo.plot(results["zoo"], out_dir / "zoo.png")
    log(zoo.markdown(results["zoo"]).split("\n\nPer layer")[0])
    return [out_dir / "zoo.json", out_dir / "zoo.md", out_dir / "zoo.png"]


def _output_folder(args) -> Path:
    """``--out`` (default: one folder for the full run, another for ``--quick``),
    created now: a folder that cannot be written fails in a second, not after
    minutes of measuring."""
    path = args.out or Path(DEFAULT_QUICK_OUT if args.quick else DEFAULT_OUT)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {path}: cannot create the output folder ({exc.strerror or exc})") from None
    return path


def _replaced(out_dir: Path, zoo_only: bool) -> str | None:
    """The line saying which earlier results in ``out_dir`` this run replaces."""
    names = ("zoo.json", "zoo.md") if zoo_only else ("results.json", "results.md")
    found = [name for name in names if (out_dir / name).exists()]
    if not found:
        return None
    return (f"{out_dir}: this run replaces the earlier results there ({', '.join(found)}); "
            "pass --out to keep them")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.out = _output_folder(args)
    if args.networks:
        from fastconv.benchmark.networks import main_networks

        return main_networks(args)
    import fastconv
    from fastconv.system import env
    from fastconv.benchmark import printed, report, runner
    from fastconv.benchmark.timing import machine_info, matmul_peak_gflops

    available = fastconv.available_backends()
    backends = [b.strip() for b in args.backends.split(",")] if args.backends else available
    unknown = [b for b in backends if b not in available]
    if unknown:
        raise ValueError(f"--backends: not available: {', '.join(map(repr, unknown))}; "
                         f"available: {', '.join(available)}")
    if "numpy" not in backends:
        backends = ["numpy", *backends]  # the baseline every speedup is measured against
    threads = args.threads or env.num_threads() or os.cpu_count() or 1
    repeat = args.repeat or (5 if args.quick else 7)
    dtype = np.dtype(args.dtype)
    thread_settings = runner.ThreadSettings(threads)
    thread_settings.apply()

    def log(text):
        print(text, flush=True)

    results = {
        "date": datetime.date.today().isoformat(),
        "command": "fastconv bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "machine": machine_info(threads),
        "dtype": dtype.name,
        "backends": backends,
    }
    machine = results["machine"]
    replaced = _replaced(args.out, args.zoo)
    if replaced:
        log(replaced)
    log(f"machine: {machine['cpu']} | {machine['cores']} cores, {threads} threads | numpy {machine['numpy']} "
        f"({machine['blas']}) | numba {machine['numba']} (GEMMs: {machine.get('kernel_blas')}) | torch {machine['torch'] or 'not installed'}")

    if "numba" in backends:
        # First calls in this process: JIT compile (announced, with a progress bar),
        # or load from numba's on-disk cache.
        import time

        from fastconv.startup import prepare_backend

        with fastconv.use_backend("numba"):
            t0 = time.perf_counter()
            # nothing is timed before every candidate is compiled, nor while a helper compiles
            prepare_backend(None, dtype, log=log, ops=runner.QUICK_OPS if args.quick and not args.zoo else None,
                            background=False)
            results["numba_first_calls_s"] = time.perf_counter() - t0
        log(f"numba first calls (compile or cache load) in this process: {results['numba_first_calls_s']:.2f} s")
    results["compile"] = {}
    if "numba" in backends and not args.no_compile and not args.quick and not args.zoo:
        log("compile: timing cold and warm starts in fresh processes (a few minutes: every kernel "
            "is compiled twice, into empty caches)")
        with tempfile.TemporaryDirectory(prefix="fastconv-numba-cache-") as cache_dir:
            results["compile"]["cold, compiled lazily by the first steps"] = \
                runner.first_step_latency(cache_dir, warmup=False)
        with tempfile.TemporaryDirectory(prefix="fastconv-numba-cache-") as cache_dir:
            results["compile"]["cold, warmup first (as fastconv train)"] = runner.first_step_latency(cache_dir)
            results["compile"]["warm (cached), warmup first"] = runner.first_step_latency(cache_dir)
        for label, data in results["compile"].items():
            log(printed.compile_line(label, data))

    if args.zoo:
        if "numba" not in backends:
            print("fastconv bench --zoo: needs the numba backend", file=sys.stderr)
            return 2
        written = run_zoo_section(results, dtype, repeat, args.quick, backends, args.out, log, args.peers)
        thread_settings.restore()
        log("wrote " + ", ".join(str(p) for p in written))
        return 0

    # Only now, with compilation and its helper processes over: the yardstick for
    # "% of peak" must not be measured while something else takes a core.
    results["peak_size"] = 2048   # ~0.1 s per product; smaller ones under-read the peak
    results["peak_rounds"] = QUICK_PEAK_ROUNDS if args.quick else PEAK_ROUNDS
    results["peak_gflops"] = matmul_peak_gflops(results["peak_size"], rounds=results["peak_rounds"])
    log(f"float32 matmul peak: {results['peak_gflops']:.0f} GFLOP/s (best of {results['peak_rounds']} rounds)")

    log("\n" + report.KERNEL_HEADER)
    results["kernels"] = runner.run_kernels(backends, dtype, repeat, args.quick, results["peak_gflops"], log)
    log("\ntraining steps:")
    results["steps"] = runner.run_steps(backends, dtype, repeat, args.quick, "torch" in backends, log)
    results["scaling"] = [] if args.no_scaling else runner.run_scaling(
        backends, dtype, repeat, args.quick, threads, thread_settings, log)
    results["under_load"] = [] if args.no_load or "numba" not in backends or threads < 2 else \
        runner.run_under_load(dtype, repeat, args.quick, threads, thread_settings, log)
    zoo_files = []
    if "numba" in backends and not args.quick and not args.no_zoo:
        zoo_files = run_zoo_section(results, dtype, repeat, False, backends, args.out, log, args.peers)
    thread_settings.restore()

    written = report.write_results(results, args.out) + zoo_files
    log("\n" + printed.conv_totals_text(results["kernels"]))   # the one table not printed as measured
    others = [str(path) for path in written if path.name != "results.md"]
    log(f"\nreport: {args.out / 'results.md'}" + (f" (also wrote {', '.join(others)})" if others else ""))
    return 0


