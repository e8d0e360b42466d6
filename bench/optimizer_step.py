"""`optim.SGD`'s zero_grad + step on the model zoo's parameters: NumPy's in-place
passes against the backend's one-pass update (`F.sgd_step`), interleaved medians.

    python bench/optimizer_step.py                 # numba backend, momentum 0.9
"""

from __future__ import annotations

import numpy as np

import fastconv
from fastconv import models, optim
from fastconv.benchmark.timing import measure_interleaved

MODELS = ("vgg11", "letters_cnn", "resnet20", "mobilenetv2", "report000_cnn")


def numpy_passes(params, buffers, lr, momentum):
    """What `optim.SGD` ran before the one-pass update: a fill, then four passes."""
    def run():
        for param in params:
            param.grad.fill(0)
        for param, buffer in zip(params, buffers):
            param.accumulate_grad(buffer)          # a layer's gradient
            buffer *= momentum
            buffer += param.grad
            param.data -= lr * buffer
    return run


def one_pass(params, buffers, optimizer):
    def run():
        optimizer.zero_grad()
        for param, buffer in zip(params, buffers):
            param.accumulate_grad(buffer)
        optimizer.step()
    return run


def main():
    fastconv.set_backend("numba")
    for name in MODELS:
        model = getattr(models, name)()
        params = list(model.parameters())
        optimizer = optim.SGD(params, lr=0.01, momentum=0.9)
        rng = np.random.default_rng(0)
        for param in params:
            param.accumulate_grad(rng.standard_normal(param.shape).astype(param.dtype))
        variants = {"numpy passes": (numpy_passes(params, optimizer.momentum_buffers, 0.01, 0.9), {}),
                    "one pass": (one_pass(params, optimizer.momentum_buffers, optimizer), {})}
        for run, _ in variants.values():
            run()
        timings = measure_interleaved(variants)
        old, new = timings["numpy passes"].median, timings["one pass"].median
        print(f"{name:14s} {sum(p.size for p in params):>10,d} parameters: numpy passes {old * 1e3:8.3f} ms, "
              f"one pass {new * 1e3:8.3f} ms ({old / new:.2f}x)")


if __name__ == "__main__":
    main()
