"""Depthwise, grouped, dilated and transposed convolution on shapes beyond the three
issue-13 bench rows: MobileNet's small late planes and strided layers, channel
multipliers, 5x5 depthwise, batch 1, ResNeXt-style groups, grouped 1x1, U-Net /
DCGAN upsampling at several sizes.  Numba against PyTorch, float32, interleaved
bursts (`measure_interleaved`, 3 rounds), median ms, forward and backward.

    python bench/general_conv_shapes.py            # every shape
    python bench/general_conv_shapes.py dw convT   # labels containing these words
"""

from __future__ import annotations

import sys

import numpy as np

import fastconv
import fastconv.functional as F
from fastconv.benchmark.timing import measure_interleaved

# label, transposed, N, C_in, C_out, size, kernel, stride, padding, dilation, groups, output_padding
SHAPES = [
    ("dw3 s1 N16 32@56", 0, 16, 32, 32, 56, 3, 1, 1, 1, 32, 0),
    ("dw3 s2 N16 64@56", 0, 16, 64, 64, 56, 3, 2, 1, 1, 64, 0),
    ("dw3 s1 N32 128@28", 0, 32, 128, 128, 28, 3, 1, 1, 1, 128, 0),
    ("dw3 s1 N32 256@14", 0, 32, 256, 256, 14, 3, 1, 1, 1, 256, 0),
    ("dw3 s2 N32 256@14", 0, 32, 256, 256, 14, 3, 2, 1, 1, 256, 0),
    ("dw3 s1 N32 512@7", 0, 32, 512, 512, 7, 3, 1, 1, 1, 512, 0),
    ("dw3 s1 N1 128@28", 0, 1, 128, 128, 28, 3, 1, 1, 1, 128, 0),
    ("dw3 s1 N1 1024@7", 0, 1, 1024, 1024, 7, 3, 1, 1, 1, 1024, 0),
    ("dw3 x2 N8 32@28", 0, 8, 32, 64, 28, 3, 1, 1, 1, 32, 0),
    ("dw5 s1 N8 96@28", 0, 8, 96, 96, 28, 5, 1, 2, 1, 96, 0),
    ("grp2 3x3 N8 64@56", 0, 8, 64, 64, 56, 3, 1, 1, 1, 2, 0),
    ("grp4 3x3 N8 128@28", 0, 8, 128, 128, 28, 3, 1, 1, 1, 4, 0),
    ("grp8 3x3 s2 N8 256@28", 0, 8, 256, 256, 28, 3, 2, 1, 1, 8, 0),
    ("grp32 3x3 N8 128@28", 0, 8, 128, 128, 28, 3, 1, 1, 1, 32, 0),
    ("grp64 3x3 N8 256@14", 0, 8, 256, 256, 14, 3, 1, 1, 1, 64, 0),
    ("grp4 1x1 N8 256->512@14", 0, 8, 256, 512, 14, 1, 1, 0, 1, 4, 0),
    ("dil4 3x3 N8 128@32", 0, 8, 128, 128, 32, 3, 1, 4, 4, 1, 0),
    ("convT k2s2 N8 128->64@16", 1, 8, 128, 64, 16, 2, 2, 0, 1, 1, 0),
    ("convT k3s2 N8 64->32@32", 1, 8, 64, 32, 32, 3, 2, 1, 1, 1, 1),
    ("convT k3s1 N8 64->64@32", 1, 8, 64, 64, 32, 3, 1, 1, 1, 1, 0),
    ("convT k4s2 N1 256->128@8", 1, 1, 256, 128, 8, 4, 2, 1, 1, 1, 0),
    ("convT k4s2 N64 64->1@14", 1, 64, 64, 1, 14, 4, 2, 1, 1, 1, 0),
    ("convT k4s2 N16 512->256@4", 1, 16, 512, 256, 4, 4, 2, 1, 1, 1, 0),
    ("dwT k4s2 N16 64@14", 1, 16, 64, 64, 14, 4, 2, 1, 1, 64, 0),
]


def calls(shape, rng):
    """(forward, backward) closures of one shape, on fresh random float32 data."""
    _, transposed, n, c_in, c_out, size, k, s, p, d, g, op = shape
    x = rng.standard_normal((n, c_in, size, size)).astype(np.float32)
    if transposed:
        w = (rng.standard_normal((c_in, c_out // g, k, k)) * 0.1).astype(np.float32)
        kw = dict(stride=s, padding=p, output_padding=op, dilation=d, groups=g)
        with fastconv.use_backend("numba"):
            grad_y = rng.standard_normal(F.conv_transpose2d(x, w, None, **kw).shape).astype(np.float32)
        return (lambda: F.conv_transpose2d(x, w, None, **kw),
                lambda: F.conv_transpose2d_backward(grad_y, x, w, **kw))
    w = (rng.standard_normal((c_out, c_in // g, k, k)) * 0.1).astype(np.float32)
    kw = dict(stride=s, padding=p, dilation=d, groups=g)
    with fastconv.use_backend("numba"):
        grad_y = rng.standard_normal(F.conv2d(x, w, None, **kw).shape).astype(np.float32)
    return lambda: F.conv2d(x, w, None, **kw), lambda: F.conv2d_backward(grad_y, x, w, **kw)


def main(words):
    options = dict(repeat=7, warmup=1, budget=1.5, min_seconds=0.4)
    print("| layer | forward numba / PyTorch ms | ratio | backward numba / PyTorch ms | ratio |")
    print("|---|---:|---:|---:|---:|")
    for shape in SHAPES:
        if words and not any(word in shape[0] for word in words):
            continue
        cells = []
        for call in calls(shape, np.random.default_rng(0)):
            variants = {name: (call, options, lambda name=name: fastconv.use_backend(name))
                        for name in ("numba", "torch")}
            times = measure_interleaved(variants, 3)
            numba_ms, torch_ms = times["numba"].median * 1e3, times["torch"].median * 1e3
            cells += [f"{numba_ms:.3f} / {torch_ms:.3f}", f"{torch_ms / numba_ms:.2f}x"]
        print(f"| {shape[0]} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
