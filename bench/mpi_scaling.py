"""Data-parallel training on one machine: 1 process x 2 threads vs 2 MPI ranks x 1 thread,
and the scaling model to many nodes built from those measurements.

    python bench/mpi_scaling.py                       # ~3 min; prints tables, writes JSON
    python bench/mpi_scaling.py --rounds 1 --models cnn

Each configuration trains report 000's CNN (global batch 50) and report 003's
letters-cnn (global batch 64) for two epochs of synthetic images with `fastconv
train`'s own loop and reports the second epoch: images/s, seconds per step, and per
step the bytes and seconds of the gradient Allreduce and of batch norm's small
Allreduces.  Configurations run interleaved, ``--rounds`` times; the median is
reported (the machine may be shared: read ratios, expect noise).

The model (docs/distributed.md) predicts a step on N nodes, each doing what this
machine does, from the measured compute time and message sizes:
ring Allreduce ``2 (N-1)/N * bytes / bandwidth + 2 (N-1) * latency``, small
Allreduces by recursive doubling ``ceil(log2 N) * (latency + bytes / bandwidth)``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
MODELS = {"cnn": dict(batch=50, shape=(1, 28, 28), classes=10, steps=40),
          "letters-cnn": dict(batch=64, shape=(1, 32, 32), classes=26, steps=8)}
CONFIGS = {"1 process x 2 threads": 1, "2 ranks x 1 thread": 2}
# (name, bandwidth in Gb/s, latency per message in seconds): TCP over 10 GbE, RDMA at 100 Gb/s.
NETWORKS = [("10 Gb/s Ethernet", 10, 25e-6), ("100 Gb/s RDMA", 100, 2e-6)]
NODES = (1, 2, 8, 64)


# ------------------------------------------------------------------ one measurement
def synthetic(model: str, count: int):
    import numpy as np

    from fastconv.data import Dataset

    spec = MODELS[model]
    rng = np.random.default_rng(0)
    images = rng.random((count, *spec["shape"]), dtype=np.float32)
    labels = rng.integers(0, spec["classes"], count)
    classes = [str(c) for c in range(spec["classes"])]
    return Dataset(f"synthetic-{model}", images, labels, images[:spec["batch"]], labels[:spec["batch"]], classes)


def worker(model: str, out: str) -> None:
    """Train two epochs; rank 0 prints one JSON line about the second."""
    from fastconv.distributed import launch_world
    from fastconv.train import train

    world = launch_world()
    threads = world.configure_threads() if world.size > 1 else int(os.environ.get("FASTCONV_NUM_THREADS", 0))
    spec = MODELS[model]
    marks = {}

    def mark(info):  # after the first step of epoch 2: warm, compiled, caches filled
        if info["epoch"] == 2 and info["batch"] == 1:
            marks["stats"] = {k: list(v) for k, v in getattr(world, "allreduce_stats", {}).items()}

    result = train(model, synthetic(model, spec["batch"] * spec["steps"]), epochs=2, batch_size=spec["batch"],
                   out_dir=out, overwrite=True, progress=False, plots=False, log=lambda m: None,
                   on_batch_end=mark, world=world)
    steps = spec["steps"] - 1  # the marked step is not in the difference
    record = {"model": model, "ranks": world.size, "threads": threads, "global_batch": spec["batch"],
              "images_per_second": result.history[-1]["images_per_second"],
              "seconds_per_step": result.history[-1]["seconds"] / spec["steps"]}
    for purpose, (calls, size, seconds) in getattr(world, "allreduce_stats", {}).items():
        before = marks["stats"][purpose]
        record[purpose] = {"calls_per_step": (calls - before[0]) / steps,
                           "bytes_per_step": (size - before[1]) / steps,
                           "seconds_per_step": (seconds - before[2]) / steps}
    if world.size > 1:
        record["gradients"]["alone_seconds"] = allreduce_alone(world, result.model)
    if world.is_writer:
        print("RESULT " + json.dumps(record), flush=True)


def allreduce_alone(world, model, repeat: int = 200) -> float:
    """Median seconds of one gradient-sized Allreduce with every rank ready (after a
    barrier): the transfer itself, without the wait for the slowest rank that the
    in-step time includes."""
    import time

    import numpy as np
    from mpi4py import MPI

    buffer = np.zeros(sum(p.data.size for p in model.parameters()) + 3, model.parameters()[0].dtype)
    times = []
    for _ in range(repeat):
        world.comm.Barrier()
        started = time.perf_counter()
        world.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ------------------------------------------------------------------ the runs
def measure(model: str, ranks: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]))
    command = [sys.executable, str(HERE), "--worker", model, "--out", tempfile.mkdtemp(prefix="mpi-bench-")]
    if ranks > 1:
        command = ["mpiexec", "-n", str(ranks), *command]
        env.pop("FASTCONV_NUM_THREADS", None)  # the ranks share the cores themselves
    else:
        env["FASTCONV_NUM_THREADS"] = str(os.cpu_count() or 1)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def median_record(records: list[dict]) -> dict:
    """The record with the median images/s, with every round's rate listed."""
    ordered = sorted(records, key=lambda r: r["images_per_second"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["rounds_images_per_second"] = [r["images_per_second"] for r in records]
    return chosen


# ------------------------------------------------------------------ the model
def allreduce_seconds(size: float, nodes: int, gbps: float, latency: float, small: bool) -> float:
    if nodes == 1:
        return 0.0
    bandwidth = gbps * 1e9 / 8
    if small:  # recursive doubling
        return math.ceil(math.log2(nodes)) * (latency + size / bandwidth)
    return 2 * (nodes - 1) / nodes * size / bandwidth + 2 * (nodes - 1) * latency


def projection(single: dict, parallel: dict, nodes: int, gbps: float, latency: float) -> dict:
    """Weak scaling: each node keeps the measured per-node batch (global batch
    ``nodes * batch``) and the measured compute time per step."""
    compute = single["seconds_per_step"]
    gradient_bytes = parallel["gradients"]["bytes_per_step"]
    bn = parallel.get("batch norm", {"calls_per_step": 0, "bytes_per_step": 0})
    bn_calls = bn["calls_per_step"]
    bn_size = bn["bytes_per_step"] / bn_calls if bn_calls else 0.0
    communication = (allreduce_seconds(gradient_bytes, nodes, gbps, latency, small=False)
                     + bn_calls * allreduce_seconds(bn_size, nodes, gbps, latency, small=True))
    step = compute + communication
    rate = nodes * single["global_batch"] / step
    return {"nodes": nodes, "global_batch": nodes * single["global_batch"], "step_ms": 1e3 * step,
            "communication_ms": 1e3 * communication, "images_per_second": rate,
            "efficiency": rate / (nodes * single["images_per_second"])}


# ------------------------------------------------------------------ report
def report(results: dict) -> str:
    lines = ["| network | configuration | images/s (median) | rounds | s/step | gradient Allreduce | "
             "time in it / step (alone) | batch-norm Allreduces / step |", "|---|---|---:|---|---:|---:|---:|---:|"]
    for model, by_config in results.items():
        for config, r in by_config.items():
            grad = r.get("gradients")
            bn = r.get("batch norm")
            lines.append(
                f"| {model} | {config} | {r['images_per_second']:.0f} | "
                f"{', '.join(f'{x:.0f}' for x in r['rounds_images_per_second'])} | {r['seconds_per_step'] * 1e3:.1f} ms | "
                + (f"{grad['bytes_per_step'] / 1e3:.1f} kB | {grad['seconds_per_step'] * 1e3:.2f} ms "
                   f"({grad['alone_seconds'] * 1e3:.3f} ms) | "
                   f"{bn['calls_per_step']:.0f} x {bn['bytes_per_step'] / max(bn['calls_per_step'], 1):.0f} B, "
                   f"{bn['seconds_per_step'] * 1e3:.2f} ms |" if grad else "- | - | - |"))
    lines += ["", "| network | network link | " + " | ".join(f"{n} nodes" for n in NODES) + " |",
              "|---|---|" + "---:|" * len(NODES)]
    for model, by_config in results.items():
        single, parallel = by_config["1 process x 2 threads"], by_config["2 ranks x 1 thread"]
        for name, gbps, latency in NETWORKS:
            cells = [projection(single, parallel, n, gbps, latency) for n in NODES]
            lines.append(f"| {model} | {name} | " + " | ".join(
                f"{c['images_per_second']:,.0f} img/s ({c['efficiency']:.0%}, {c['communication_ms']:.2f} ms comm)"
                for c in cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--json", type=Path, default=Path("bench-results/mpi_scaling.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.out)
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    rounds: dict = {m: {c: [] for c in CONFIGS} for m in models}
    for round_index in range(args.rounds):
        for model in models:
            for config, ranks in CONFIGS.items():  # interleaved: a slow spell hits both
                record = measure(model, ranks)
                rounds[model][config].append(record)
                print(f"round {round_index + 1}: {model}, {config}: {record['images_per_second']:.0f} img/s",
                      flush=True)
    results = {m: {c: median_record(r) for c, r in by_config.items()} for m, by_config in rounds.items()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
