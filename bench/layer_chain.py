"""Convolution algorithms inside a network rather than alone: a chain of six 3x3
stride-1 ReLU layers of one shape (distinct weights), each algorithm forced in turn,
interleaved rounds, median ms per layer.  What a layer pays here includes what the
other layers left behind (caches, freed pages), which a layer timed alone does not.

    python bench/layer_chain.py 8 256 7            # batch, channels, plane size: forward
    python bench/layer_chain.py 8 512 4 --train    # forward + backward
    python bench/layer_chain.py 8 128 14 --algorithms winograd gemm
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastconv
import fastconv.functional as F
from fastconv.backends.numba_backend import select

LAYERS = 6
ROUNDS = 12


def chain(batch, channels, size, train, seed=0):
    """A closure running the chain once (forward, or forward + backward)."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
    weights = [(rng.standard_normal((channels, channels, 3, 3)) * 0.02).astype(np.float32) for _ in range(LAYERS)]
    bias = np.zeros(channels, np.float32)

    def run():
        xs = [x0]
        for w in weights:
            xs.append(F.conv2d_relu(xs[-1], w, bias, 1, 1))
        if train:
            grad = np.ones_like(xs[-1])
            for i in range(LAYERS - 1, -1, -1):
                grad, _, _ = F.conv2d_relu_backward(grad, xs[i + 1], xs[i], weights[i], 1, 1)

    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batch", type=int)
    parser.add_argument("channels", type=int)
    parser.add_argument("size", type=int)
    parser.add_argument("--train", action="store_true", help="forward + backward")
    parser.add_argument("--algorithms", nargs="+", default=["winograd", "gemm", "blocked"])
    args = parser.parse_args(argv)
    run = chain(args.batch, args.channels, args.size, args.train)
    times = {name: [] for name in args.algorithms}
    with fastconv.use_backend("numba"):
        try:
            for name in args.algorithms:        # compile and fault in buffers
                select.set_conv_algorithm(name)
                run()
                run()
            for r in range(ROUNDS):
                for name in (args.algorithms if r % 2 else args.algorithms[::-1]):
                    select.set_conv_algorithm(name)
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
        finally:
            select.set_conv_algorithm(None)
    what = "forward + backward" if args.train else "forward"
    print(f"N{args.batch} {args.channels}->{args.channels} 3x3 @{args.size}, {what}, ms per layer: "
          + ", ".join(f"{name} {np.median(v) * 1e3 / LAYERS:.3f}" for name, v in times.items()))


if __name__ == "__main__":
    main()
