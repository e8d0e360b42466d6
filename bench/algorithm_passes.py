"""Forward and backward time of each numba convolution algorithm, forced, against
PyTorch, interleaved in one process (`measure_interleaved`: medians over three
rounds of bursts, ms).

    python bench/algorithm_passes.py BATCH [C_IN,C_OUT,SIZE,STRIDE[,KERNEL[,PADDING[,DILATION]]] ...]

Defaults: batch 32 and the 3x3 layers of a CIFAR ResNet.  An algorithm that cannot
run a problem shows the rule's fallback; dilated layers take the general path (the
shifted GEMMs whatever is forced).  PyTorch's backward is its forward +
backward minus its forward.
"""

from __future__ import annotations

import contextlib
import functools
import sys

import numpy as np

import fastconv
import fastconv.functional as F
from fastconv.backends.numba_backend import select
from fastconv.benchmark.timing import measure_interleaved

RESNET_LAYERS = ["16,16,32,1", "16,32,32,2", "32,32,16,1", "32,64,16,2", "64,64,8,1"]


@contextlib.contextmanager
def forced(name):
    select.set_conv_algorithm(name)
    try:
        yield
    finally:
        select.set_conv_algorithm(None)


def run_layer(n, spec, rng, torch):
    c_in, c_out, size, stride, kernel, padding, dilation = (spec + [3, 1, 1][len(spec) - 4:])[:7]
    x = rng.standard_normal((n, c_in, size, size)).astype(np.float32)
    w = (rng.standard_normal((c_out, c_in, kernel, kernel)) * 0.1).astype(np.float32)
    b = np.zeros(c_out, np.float32)
    args = (stride, padding, dilation)
    g = rng.standard_normal(F.conv2d(x, w, b, *args).shape).astype(np.float32)
    options = dict(repeat=7, warmup=1, budget=1.0, min_seconds=0.3)
    variants = {}
    for name in select.ALGORITHMS:
        context = functools.partial(forced, name)
        variants[f"{name} forward"] = (lambda: F.conv2d(x, w, b, *args), options, context)
        variants[f"{name} backward"] = (lambda: F.conv2d_backward(g, x, w, *args), options, context)
    if torch is not None:
        xt, wt, bt = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
        gt = torch.from_numpy(g)

        def torch_forward():
            with torch.no_grad():
                torch.nn.functional.conv2d(xt, wt, bt, stride, padding, dilation)

        def torch_both():
            out = torch.nn.functional.conv2d(xt, wt, bt, stride, padding, dilation)
            xt.grad = wt.grad = bt.grad = None
            out.backward(gt)

        variants["PyTorch forward"] = (torch_forward, options)
        variants["PyTorch both"] = (torch_both, options)
    ms = {label: timing.median * 1e3 for label, timing in measure_interleaved(variants).items()}
    if torch is not None:
        ms["PyTorch backward"] = ms.pop("PyTorch both") - ms["PyTorch forward"]
    names = list(select.ALGORITHMS) + (["PyTorch"] if torch is not None else [])
    cells = [f"{name} {ms[name + ' forward']:.2f} / {ms[name + ' backward']:.2f}" for name in names]
    label = f"{c_in}->{c_out} {kernel}x{kernel}/{stride} @{size}" + (f" d{dilation}" if dilation > 1 else "")
    print(f"{label} (N={n}), forward / backward ms: " + " | ".join(cells), flush=True)


def main(argv):
    n = int(argv[0]) if argv else 32
    specs = [[int(v) for v in s.split(",")] for s in (argv[1:] or RESNET_LAYERS)]
    try:
        import torch
        torch.set_num_threads(fastconv.backends.numba_backend.get_num_threads())
    except ImportError:
        torch = None
    fastconv.set_backend("numba")
    rng = np.random.default_rng(0)
    for spec in specs:
        run_layer(n, spec, rng, torch)


if __name__ == "__main__":
    main(sys.argv[1:])
