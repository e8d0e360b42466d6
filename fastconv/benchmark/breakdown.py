"""Where a training step's time goes, per kind of layer, in fastconv and in torch.nn.

fastconv: every module's ``forward`` and ``backward`` is timed, each call's own time
(its children's subtracted), and added to its kind (`KINDS`); the loss and the
optimizer are timed apart.  torch.nn: the step runs under `torch.profiler`, each
operator's own CPU time is added to the kind its name says (`TORCH_OPS`), and the
optimizer's step is timed apart.  Both are instrumented runs, slower than the plain
step; what they are for is the split.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import defaultdict

# fastconv module class -> kind (classes not listed: "other")
KINDS = {
    "conv": ("Conv2d", "Conv2dReLU", "Conv2dReLUAvgPool", "ConvTranspose2d"),
    "batch norm": ("BatchNorm1d", "BatchNorm2d"),
    "activation": ("ReLU", "ReLU6", "LeakyReLU", "Sigmoid", "Tanh", "Dropout"),
    "pooling": ("AvgPool2d", "MaxPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Upsample"),
    "adds and joins": ("Residual", "Add", "Concat"),
    "linear": ("Linear",),
}
ORDER = ("conv", "batch norm", "activation", "pooling", "adds and joins", "linear", "loss", "optimizer",
         "other")
# torch operator names (regular expressions, first match wins) -> kind
TORCH_OPS = (
    ("conv", r"conv|mkldnn_convolution"),
    ("batch norm", r"batch_norm"),
    ("activation", r"relu|threshold|hardtanh|sigmoid|tanh|clamp|dropout"),
    ("pooling", r"pool|upsample"),
    ("linear", r"addmm|\bmm\b|linear|matmul"),
    ("loss", r"cross_entropy|log_softmax|nll_loss|softmax"),
    ("adds and joins", r"aten::add|aten::cat"),
)


def _kind(module) -> str:
    name = type(module).__name__
    return next((kind for kind, classes in KINDS.items() if name in classes), "other")


@contextlib.contextmanager
def _timed_modules(model, seconds: dict):
    """Every module's forward/backward timed into ``seconds[kind]`` (own time only)."""
    children_time = []            # a stack: time spent in the calls below the open one
    originals = []

    def wrap(module, method_name):
        method = getattr(module, method_name)
        kind = _kind(module)

        def timed(*args, **kwargs):
            children_time.append(0.0)
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                own = elapsed - children_time.pop()
                seconds[kind] += own
                if children_time:
                    children_time[-1] += elapsed

        originals.append((module, method_name))
        object.__setattr__(module, method_name, timed)

    for module in model.modules():
        wrap(module, "forward")
        wrap(module, "backward")
    try:
        yield
    finally:
        for module, method_name in originals:
            module.__dict__.pop(method_name, None)


@contextlib.contextmanager
def _native_stderr_closed():
    """The profiler's C++ side prints a line to file descriptor 2 at every start and
    stop; the benchmark's report must not fill with them."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def fastconv_split(model, images, labels, steps: int = 3) -> dict:
    """Milliseconds per kind of one training step of ``model`` (fastconv), averaged."""
    from fastconv import nn, optim

    model.train()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    seconds = defaultdict(float)
    for count in range(steps + 1):
        if count == 1:
            seconds.clear()          # the first step warms up
        start = time.perf_counter()
        optimizer.zero_grad()
        seconds["optimizer"] += time.perf_counter() - start
        with _timed_modules(model, seconds):
            out = model(images)
            start = time.perf_counter()
            loss_fn(out, labels)
            grad = loss_fn.backward()
            seconds["loss"] += time.perf_counter() - start
            model.backward(grad)
        start = time.perf_counter()
        optimizer.step()
        seconds["optimizer"] += time.perf_counter() - start
    return {kind: value * 1e3 / steps for kind, value in seconds.items()}


def torch_split(model, images, labels, steps: int = 3) -> dict:
    """Milliseconds per kind of one training step of a torch.nn ``model``, averaged:
    forward and backward profiled, the optimizer (``zero_grad`` and ``step``) timed."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    images, labels = torch.from_numpy(images), torch.from_numpy(labels)
    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    ms = defaultdict(float)
    for count in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=False)
        optimizer_seconds = time.perf_counter() - start
        with _native_stderr_closed(), profile(activities=[ProfilerActivity.CPU]) as prof:
            loss_fn(model(images), labels).backward()
        start = time.perf_counter()
        optimizer.step()
        optimizer_seconds += time.perf_counter() - start
        if count == 0:
            continue                 # the first step warms up
        ms["optimizer"] += optimizer_seconds * 1e3 / steps
        for event in prof.key_averages():
            kind = next((kind for kind, pattern in TORCH_OPS if re.search(pattern, event.key)), "other")
            ms[kind] += event.self_cpu_time_total / 1e3 / steps
    return dict(ms)


def markdown(network: str, batch: int, ours: dict, theirs: dict) -> str:
    lines = [f"**{network}**, training step at batch {batch}: milliseconds per kind of layer "
             f"(instrumented runs)", "", "| kind | fastconv | torch.nn |", "|---|---:|---:|"]
    for kind in ORDER:
        if kind in ours or kind in theirs:
            lines.append(f"| {kind} | {ours.get(kind, 0.0):.2f} | {theirs.get(kind, 0.0):.2f} |")
    return "\n".join(lines) + "\n"
