"""`fastconv bench --zoo`: the convolution layers of well-known small CNNs, numba vs PyTorch.

Each network is a list of (layer, how many times it occurs); every distinct layer is
timed once per backend and mode -- training (forward + backward: grad_x, grad_w,
grad_b) and inference (forward only) at batch 1 and 8 -- with the backends measured
in interleaved bursts (`measure_interleaved`), and the network's time is the
multiplicity-weighted sum.  Effective GFLOP/s counts direct-convolution FLOPs
(2 * N * C_out * H_out * W_out * C_in * kh * kw per forward, twice that for the
backward), whatever algorithm ran.  Nothing here is special-cased anywhere else:
the numba backend sees these layers as any other problem (and autotunes them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import fastconv
import fastconv.functional as F
from fastconv.benchmark.timing import measure_interleaved


@dataclass(frozen=True)
class Conv:
    c_in: int
    c_out: int
    size: int          # input height = width
    k: int
    stride: int = 1
    padding: int = -1  # -1: "same"-style k // 2

    @property
    def pad(self) -> int:
        return self.k // 2 if self.padding < 0 else self.padding

    @property
    def out(self) -> int:
        return (self.size + 2 * self.pad - self.k) // self.stride + 1

    def flops(self, batch: int) -> float:
        return 2.0 * batch * self.c_out * self.out ** 2 * self.c_in * self.k ** 2

    def label(self) -> str:
        return f"{self.c_in}->{self.c_out} {self.k}x{self.k}/{self.stride} @{self.size}"


def _resnet_cifar(blocks: int) -> list:
    layers = [(Conv(3, 16, 32, 3), 1), (Conv(16, 16, 32, 3), 2 * blocks)]
    for c_in, c_out, size in ((16, 32, 32), (32, 64, 16)):
        layers += [(Conv(c_in, c_out, size, 3, 2), 1), (Conv(c_out, c_out, size // 2, 3), 2 * blocks - 1)]
    return layers


def _vgg(config) -> list:
    layers, c_in, size = [], 3, 32
    for item in config:
        if item == "M":
            size //= 2
        else:
            layers.append((Conv(c_in, item, size, 3), 1))
            c_in = item
    return layers


RESNET18_112 = [
    (Conv(3, 64, 112, 7, 2, 3), 1),
    (Conv(64, 64, 28, 3), 4),
    (Conv(64, 128, 28, 3, 2), 1), (Conv(128, 128, 14, 3), 3), (Conv(64, 128, 28, 1, 2, 0), 1),
    (Conv(128, 256, 14, 3, 2), 1), (Conv(256, 256, 7, 3), 3), (Conv(128, 256, 14, 1, 2, 0), 1),
    (Conv(256, 512, 7, 3, 2), 1), (Conv(512, 512, 4, 3), 3), (Conv(256, 512, 7, 1, 2, 0), 1),
]

NETWORKS = {
    "LeNet-5 (32x32)": [(Conv(1, 6, 32, 5, 1, 0), 1), (Conv(6, 16, 14, 5, 1, 0), 1)],
    "ResNet-20 (CIFAR)": _resnet_cifar(3),
    "ResNet-56 (CIFAR)": _resnet_cifar(9),
    "VGG-11 (32x32)": _vgg([64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512]),
    "VGG-16 (32x32)": _vgg([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]),
    "ResNet-18 (112x112)": RESNET18_112,
    "1x1 bottlenecks (MobileNet-style)": [
        (Conv(32, 64, 56, 1, 1, 0), 1), (Conv(64, 128, 28, 1, 1, 0), 1), (Conv(128, 128, 28, 1, 1, 0), 1),
        (Conv(128, 256, 14, 1, 1, 0), 1), (Conv(256, 256, 14, 1, 1, 0), 1), (Conv(256, 64, 28, 1, 1, 0), 1),
    ],
    "strided stems": [(Conv(3, 64, 112, 7, 2, 3), 1), (Conv(3, 32, 112, 3, 2), 1), (Conv(64, 128, 28, 3, 2), 1)],
}
# Training batch per network: CIFAR-sized nets at 32, the 112x112 ones at 8.
TRAIN_BATCH = {name: (8 if "112" in name or "stems" in name or "MobileNet" in name else 32) for name in NETWORKS}
QUICK = ("LeNet-5 (32x32)", "ResNet-20 (CIFAR)", "VGG-11 (32x32)", "1x1 bottlenecks (MobileNet-style)")


def _numba_job(layer: Conv, batch: int, train: bool, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, layer.c_in, layer.size, layer.size)).astype(dtype)
    w = (rng.standard_normal((layer.c_out, layer.c_in, layer.k, layer.k)) / layer.k / math.sqrt(layer.c_in)).astype(dtype)
    b = np.zeros(layer.c_out, dtype)
    grad_y = rng.standard_normal((batch, layer.c_out, layer.out, layer.out)).astype(dtype)

    def run():
        F.conv2d(x, w, b, layer.stride, layer.pad)
        if train:
            F.conv2d_backward(grad_y, x, w, layer.stride, layer.pad)
    return run, (x, w)


def _torch_job(layer: Conv, batch: int, train: bool, arrays):
    import torch

    x, w = (torch.from_numpy(a.copy()) for a in arrays)
    b = torch.zeros(layer.c_out, dtype=x.dtype)
    grad_y = torch.ones((batch, layer.c_out, layer.out, layer.out), dtype=x.dtype)
    if train:
        for t in (x, w, b):
            t.requires_grad_(True)

    def run():
        if train:
            y = torch.nn.functional.conv2d(x, w, b, layer.stride, layer.pad)
            x.grad = w.grad = b.grad = None
            y.backward(grad_y)
        else:
            with torch.no_grad():
                torch.nn.functional.conv2d(x, w, b, layer.stride, layer.pad)
    return run


def _autotune_stats() -> dict:
    from fastconv.backends import numba_backend as nb

    return nb.autotune_stats()


def _algorithms(layer: Conv, batch: int, train: bool, dtype) -> str:
    from fastconv.backends import numba_backend as nb

    passes = ("forward", "backward") if train else ("forward",)
    x_shape = (batch, layer.c_in, layer.size, layer.size)
    w_shape = (layer.c_out, layer.c_in, layer.k, layer.k)
    return "/".join(nb.conv_algorithm(x_shape, w_shape, layer.stride, layer.pad, dtype, p) for p in passes)


def time_layer(layer: Conv, batch: int, train: bool, dtype, with_torch: bool, repeat: int) -> dict:
    """Median seconds per call for numba (and PyTorch), measured interleaved."""
    numba_run, arrays = _numba_job(layer, batch, train, dtype)
    options = dict(repeat=repeat, budget=1.5, min_seconds=0.3)
    variants = {"numba": (numba_run, options, lambda: fastconv.use_backend("numba"))}
    if with_torch:
        variants["torch"] = (_torch_job(layer, batch, train, arrays), options)
    tuned_before = _autotune_stats()
    with fastconv.use_backend("numba"):
        numba_run()          # the first call autotunes: keep it out of the timings
    tuned = {k: v - tuned_before[k] for k, v in _autotune_stats().items()}
    timings = measure_interleaved(variants)
    flops = layer.flops(batch) * (3 if train else 1)
    row = {"layer": layer.label(), "batch": batch, "mode": "train" if train else "infer",
           "numba_s": timings["numba"].median, "numba_gflops": flops / timings["numba"].median / 1e9,
           "algorithm": _algorithms(layer, batch, train, dtype), "flops": flops,
           "tuned_problems": tuned["problems"], "tuning_s": tuned["seconds"]}
    if with_torch:
        row["torch_s"] = timings["torch"].median
        row["vs_torch"] = timings["torch"].median / timings["numba"].median
    return row


def run_zoo(dtype, repeat: int, quick: bool, with_torch: bool, log) -> dict:
    """Per layer and per network rows for each mode; geometric means of the ratios."""
    names = QUICK if quick else tuple(NETWORKS)
    modes = [("train", TRAIN_BATCH), ("infer b1", 1), ("infer b8", 8)]
    measured: dict = {}
    networks = []
    for name in names:
        for mode, batch_of in modes:
            batch = batch_of[name] if isinstance(batch_of, dict) else batch_of
            train = mode == "train"
            total = {"numba_s": 0.0, "torch_s": 0.0, "flops": 0.0}
            layers = []
            for layer, count in NETWORKS[name]:
                key = (layer, batch, train)
                if key not in measured:
                    measured[key] = time_layer(layer, batch, train, dtype, with_torch, repeat)
                    log(_layer_line(measured[key]))
                row = dict(measured[key], count=count)
                layers.append(row)
                for field in total:
                    total[field] += count * row.get(field, 0.0)
            entry = {"network": name, "mode": mode, "batch": batch, "layers": layers,
                     "numba_s": total["numba_s"], "numba_gflops": total["flops"] / total["numba_s"] / 1e9}
            if with_torch:
                entry["torch_s"] = total["torch_s"]
                entry["vs_torch"] = total["torch_s"] / total["numba_s"]
            networks.append(entry)
            log(f"== {name}, {mode} (batch {batch}): numba {entry['numba_s'] * 1e3:.1f} ms"
                + (f", PyTorch {entry['torch_s'] * 1e3:.1f} ms, {entry['vs_torch']:.2f}x" if with_torch else ""))
    summary = {}
    if with_torch:
        for mode, _ in modes:
            ratios = [n["vs_torch"] for n in networks if n["mode"] == mode]
            summary[mode] = {"geomean_vs_torch": float(np.exp(np.mean(np.log(ratios)))),
                             "min_vs_torch": float(min(ratios))}
    autotune = {"problems": sum(r["tuned_problems"] for r in measured.values()),
                "seconds": sum(r["tuning_s"] for r in measured.values())}
    return {"networks": networks, "summary": summary, "autotune": autotune}


def _layer_line(row: dict) -> str:
    text = (f"  {row['mode']:5s} b{row['batch']:<3d} {row['layer']:24s} numba {row['numba_s'] * 1e3:8.2f} ms "
            f"{row['numba_gflops']:6.0f} GFLOP/s [{row['algorithm']}]")
    if "torch_s" in row:
        text += f"  PyTorch {row['torch_s'] * 1e3:8.2f} ms  {row['vs_torch']:.2f}x"
    return text


def markdown(zoo: dict) -> str:
    lines = ["## Network zoo: conv layers, numba vs PyTorch", "",
             "| network | mode | batch | numba | PyTorch | PyTorch time / numba time | numba GFLOP/s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for n in zoo["networks"]:
        torch_cell = f"{n['torch_s'] * 1e3:.1f} ms" if "torch_s" in n else "-"
        ratio = f"{n['vs_torch']:.2f}x" if "vs_torch" in n else "-"
        lines.append(f"| {n['network']} | {n['mode']} | {n['batch']} | {n['numba_s'] * 1e3:.1f} ms | "
                     f"{torch_cell} | {ratio} | {n['numba_gflops']:.0f} |")
    for mode, s in zoo["summary"].items():
        lines.append(f"\n{mode}: geometric mean over networks {s['geomean_vs_torch']:.2f}x PyTorch, "
                     f"lowest {s['min_vs_torch']:.2f}x")
    if "autotune" in zoo:
        lines.append(f"\nAutotuning (first call of each layer, not in the timings): "
                     f"{zoo['autotune']['problems']} problems timed in {zoo['autotune']['seconds']:.1f} s")
    lines += ["", "Per layer (each distinct layer once; `algorithm` = forward/backward choice):", "",
              "| mode | batch | layer | numba | GFLOP/s | algorithm | PyTorch | ratio |",
              "|---|---:|---|---:|---:|---|---:|---:|"]
    seen = set()
    for n in zoo["networks"]:
        for r in n["layers"]:
            key = (r["mode"], r["batch"], r["layer"])
            if key in seen:
                continue
            seen.add(key)
            torch_cell = f"{r['torch_s'] * 1e3:.2f} ms" if "torch_s" in r else "-"
            ratio = f"{r['vs_torch']:.2f}x" if "vs_torch" in r else "-"
            lines.append(f"| {r['mode']} | {r['batch']} | {r['layer']} | {r['numba_s'] * 1e3:.2f} ms | "
                         f"{r['numba_gflops']:.0f} | {r['algorithm']} | {torch_cell} | {ratio} |")
    return "\n".join(lines) + "\n"


def plot(zoo: dict, path) -> None:
    """Bars of PyTorch time / numba time per network, one group per mode."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(n["network"] for n in zoo["networks"]))
    modes = list(dict.fromkeys(n["mode"] for n in zoo["networks"]))
    ratio = {(n["network"], n["mode"]): n.get("vs_torch", float("nan")) for n in zoo["networks"]}
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        ax.bar(np.arange(len(names)) + i * width, [ratio[(n, mode)] for n in names], width, label=mode)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(names)) + width * (len(modes) - 1) / 2)
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("PyTorch time / numba time (> 1: numba faster)")
    ax.set_title("Conv layers of each network, numba backend vs PyTorch CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
