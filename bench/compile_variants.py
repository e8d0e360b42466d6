"""Run time and cold compile time of the kernels under different compile settings.

    python bench/compile_variants.py               # numba's plain code generation vs fastconv's lean one
    python bench/compile_variants.py --variants "O3:NUMBA_OPT=3;O2:NUMBA_OPT=2" --rounds 3

A variant is ``name:VAR=value,VAR=value`` (environment variables of its processes);
the first is the baseline.  Each (round, variant) is a fresh process with a numba
cache of its own (cold in the first round, so that round also gives the compile
seconds), on one thread, timing every convolution algorithm forward + backward on a
few layers and the other kernel families.  Time is the process's CPU time per call
(median of repeated calls): on a machine where other processes run it moves far less
than wall time does.  Variants alternate within each round; printed: per case, each
variant's median over rounds relative to the baseline's, and their geometric mean.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

# (name, x shape, w shape, stride, padding): report 000's and 003's layers, a ResNet
# 3x3 and a 1x1 bottleneck, small batches to keep the run short.
LAYERS = [("r000 4->8 k5 @14", (50, 4, 14, 14), (8, 4, 5, 5), 1, 2),
          ("r003 64->128 k3 @16", (8, 64, 16, 16), (128, 64, 3, 3), 1, 1),
          ("resnet 32->32 k3 @16", (8, 32, 16, 16), (32, 32, 3, 3), 1, 1),
          ("1x1 128->64 @14", (8, 128, 14, 14), (64, 128, 1, 1), 1, 0),
          ("stride2 32->64 k3 @16", (8, 32, 16, 16), (64, 32, 3, 3), 2, 1)]


def _cases():
    """(name, call) for every case; built in the child (numba imported there)."""
    import fastconv
    import fastconv.functional as F
    from fastconv.backends import numba_backend as NB

    fastconv.set_backend("numba")
    rng = np.random.default_rng(0)
    cases = []
    for name, x_shape, w_shape, stride, padding in LAYERS:
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        b = rng.standard_normal(w_shape[0]).astype(np.float32)
        for algorithm in NB.ALGORITHMS:
            module = NB.ALGORITHMS[algorithm]
            if not module.supports(x.shape, w.shape, (stride, stride), (padding, padding)):
                continue

            def call(x=x, w=w, b=b, stride=stride, padding=padding, algorithm=algorithm):
                NB.set_conv_algorithm(algorithm)
                y = F.conv2d_relu(x, w, b, stride, padding)
                F.conv2d_relu_backward(np.ones_like(y), y, x, w, stride, padding, True)

            cases.append((f"{algorithm} {name}", call))
    x = rng.standard_normal((16, 32, 28, 28)).astype(np.float32)
    dw = rng.standard_normal((32, 1, 3, 3)).astype(np.float32)
    dil = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    up = rng.standard_normal((32, 16, 4, 4)).astype(np.float32)
    gamma, beta = np.ones(32, np.float32), np.zeros(32, np.float32)
    flat = rng.standard_normal((64, 1024)).astype(np.float32)
    dense_w = rng.standard_normal((256, 1024)).astype(np.float32)
    others = {
        "depthwise 3x3": lambda: F.conv2d_backward(F.conv2d(x, dw, None, 1, 1, groups=32), x, dw, 1, 1, groups=32),
        "dilated 3x3 d2": lambda: F.conv2d_backward(F.conv2d(x, dil, None, 1, 2, dilation=2), x, dil, 1, 2,
                                                    dilation=2),
        "transposed 4x4 s2": lambda: F.conv_transpose2d_backward(F.conv_transpose2d(x, up, None, 2, 1), x, up,
                                                                 2, 1),
        "max pool 2x2": lambda: F.max_pool2d_backward(*F.max_pool2d(x, 2), x.shape, 2),
        "avg pool 2x2": lambda: F.avg_pool2d_backward(F.avg_pool2d(x, 2), x.shape, 2),
        "batch norm": lambda: _batch_norm(F, x, gamma, beta),
        "linear": lambda: F.linear_backward(F.linear(flat, dense_w, None), flat, dense_w),
        "softmax cross-entropy": lambda: F.softmax_cross_entropy(flat, rng.integers(0, 1024, 64)),
    }
    return cases + list(others.items())


def _batch_norm(F, x, gamma, beta):
    y, mean, var = F.batch_norm(x, gamma, beta)
    return F.batch_norm_backward(np.ones_like(y), x, mean, var, gamma)


def child(repeats: int) -> dict:
    start = time.process_time()
    cases = _cases()
    for _, call in cases:        # compiles (cold cache) or loads, and warms buffers
        call()
    result = {"compile_cpu_s": time.process_time() - start, "cases": {}}
    for name, call in cases:
        times = []
        for _ in range(repeats):
            t0 = time.process_time()
            call()
            times.append(time.process_time() - t0)
        result["cases"][name] = float(np.median(times))
    return result


def _parse_variants(text: str) -> dict:
    """``{name: {VAR: value}}`` from ``name:VAR=value,...;name:...``."""
    variants = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, _, settings = item.partition(":")
        pairs = [setting.split("=", 1) for setting in settings.split(",") if setting]
        if not name or name in variants or any(len(pair) != 2 for pair in pairs):
            raise SystemExit(f"bad variant {item!r}: expected a new name:VAR=value,...")
        variants[name] = dict(pairs)
    if len(variants) < 2:
        raise SystemExit("give at least two variants")
    return variants


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="plain:FASTCONV_LEAN_CODEGEN=0;lean:FASTCONV_LEAN_CODEGEN=1",
                        help="name:VAR=value,... separated by ';', the first the baseline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per case and process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.repeats)))
        return
    variants = _parse_variants(args.variants)
    names = list(variants)
    runs = {variant: [] for variant in names}
    with tempfile.TemporaryDirectory(prefix="fastconv-compile-variants-") as root:
        for round_index in range(args.rounds):
            order = names if round_index % 2 == 0 else names[::-1]
            for variant in order:
                env = dict(os.environ, **variants[variant], NUMBA_CACHE_DIR=os.path.join(root, variant),
                           FASTCONV_NUM_THREADS="1", FASTCONV_BACKGROUND_COMPILE="0",
                           FASTCONV_CACHE_DIR=os.path.join(root, "tune"))
                done = subprocess.run([sys.executable, __file__, "--child", "--repeats", str(args.repeats)],
                                      env=env, capture_output=True, text=True, check=True)
                runs[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"round {round_index + 1} {variant}: first calls {runs[variant][-1]['compile_cpu_s']:.1f} "
                      f"CPU s", file=sys.stderr, flush=True)
    base, others = names[0], names[1:]
    print(f"| case | {base} ms | " + " | ".join(f"{variant} / {base}" for variant in others) + " |")
    print("|---|---:|" + "---:|" * len(others))
    ratios = {variant: [] for variant in others}
    for case in runs[base][0]["cases"]:
        medians = {variant: float(np.median([run["cases"][case] for run in runs[variant]])) for variant in names}
        cells = []
        for variant in others:
            ratio = medians[variant] / medians[base]
            ratios[variant].append(ratio)
            cells.append(f"{ratio:.2f}")
        print(f"| {case} | {medians[base] * 1e3:.2f} | " + " | ".join(cells) + " |")
    for variant in others:
        geo = math.exp(sum(math.log(r) for r in ratios[variant]) / len(ratios[variant]))
        print(f"{variant} / {base}: geometric mean {geo:.3f}, worst {max(ratios[variant]):.2f}, "
              f"cold first calls {runs[variant][0]['compile_cpu_s']:.0f} vs {runs[base][0]['compile_cpu_s']:.0f} CPU s")


if __name__ == "__main__":
    main()
