"""Forward time of convolution layers on frozen (read-only) weights against the same
weights writeable, autotuned, interleaved in one process (`measure_interleaved`:
medians over three rounds of bursts, ms).  Frozen weights are copied and packed once
(`numba_backend.frozen_weights`); their GEMM runs on the packed panels.

    python bench/frozen_weights.py [N,C_IN,C_OUT,SIZE,KERNEL,STRIDE,PADDING ...]

Defaults: the deep 3x3 layers of VGG/ResNet at batch 1 and 8 and a 1x1 bottleneck.
"""

from __future__ import annotations

import sys

import numpy as np

import fastconv
import fastconv.functional as F
from fastconv.benchmark.timing import measure_interleaved

LAYERS = ["1,512,512,4,3,1,1", "8,512,512,4,3,1,1", "1,512,512,2,3,1,1", "8,512,512,2,3,1,1",
          "1,256,256,8,3,1,1", "8,256,256,8,3,1,1", "1,256,256,14,3,1,1", "1,128,128,16,3,1,1",
          "2,256,512,7,1,1,0", "1,1024,1024,1,1,1,0"]


def main(specs) -> None:
    fastconv.set_backend("numba")
    rng = np.random.default_rng(0)
    for spec in specs:
        n, c_in, c_out, size, kernel, stride, padding = (int(v) for v in spec.split(","))
        x = rng.standard_normal((n, c_in, size, size)).astype(np.float32)
        w = (rng.standard_normal((c_out, c_in, kernel, kernel)) / np.sqrt(c_in * kernel ** 2)).astype(np.float32)
        b = rng.standard_normal(c_out).astype(np.float32)
        frozen = w.copy()
        frozen.flags.writeable = False
        for weights in (w, frozen):          # the first calls autotune
            F.conv2d(x, weights, b, stride, padding)
        options = dict(repeat=7, min_seconds=0.3)
        times = measure_interleaved({
            "writeable": (lambda: F.conv2d(x, w, b, stride, padding), options),
            "frozen": (lambda: F.conv2d(x, frozen, b, stride, padding), options)})
        ms = {name: t.median * 1e3 for name, t in times.items()}
        print(f"N{n} {c_in}->{c_out} {kernel}x{kernel}/{stride} @{size}: writeable {ms['writeable']:.3f} ms, "
              f"frozen {ms['frozen']:.3f} ms, {ms['writeable'] / ms['frozen']:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:] or LAYERS)
