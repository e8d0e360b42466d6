"""`fastconv bench --zoo`: the convolution layers of well-known CNNs, numba vs its peers.

Each network (`fastconv.benchmark.zoo_layers`) is a list of (layer, how many times
it occurs); every distinct layer is timed once per library and mode -- training
(forward + backward: grad_x, grad_w, grad_b) and inference (forward only) at batch 1
and 8 -- with the libraries measured in interleaved bursts (`measure_interleaved`),
and the network's time is the multiplicity-weighted sum.  The peers
(`fastconv.benchmark.peers`: PyTorch by default, JAX and ONNX Runtime on request) run
the same layers on the same arrays and thread count; each one's outputs are checked
against fastconv's before it is timed.  ``<peer> time / numba time`` > 1: numba
faster.  Effective GFLOP/s counts direct-convolution FLOPs (2 * N * C_out * H_out *
W_out * C_in / groups * kh * kw per forward, twice that for the backward), whatever
algorithm ran.  Inference gives fastconv read-only weights, as a model after
`fastconv.nn.freeze` (ONNX Runtime holds its weights constant too).  Nothing here is
special-cased anywhere else: the numba backend sees these layers as any other
problem (and autotunes them).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import fastconv
import fastconv.functional as F
from fastconv.benchmark import peers as peer_adapters
from fastconv.benchmark.timing import measure_interleaved
from fastconv.benchmark.zoo_layers import NETWORKS, QUICK, TRAIN_BATCH, Conv  # noqa: F401  (Conv: the layer type)

# (mode, batch): training at the network's `TRAIN_BATCH`
MODES = (("train", None), ("infer b1", 1), ("infer b8", 8))


def _numba_job(problem):
    """fastconv's work on ``problem``, returning its outputs (as the peers' jobs do)."""
    layer, (x, w, b, grad_y) = problem.layer, (problem.x, problem.w, problem.b, problem.grad_y)
    if not problem.train:    # a deployed network's weights: read-only, as after `nn.freeze`
        w, b = _read_only(w), _read_only(b)
    options = dict(stride=layer.stride, padding=layer.pad, dilation=layer.dilation, groups=layer.groups)
    if layer.transposed:
        forward, backward = F.conv_transpose2d, F.conv_transpose2d_backward
    else:
        forward, backward = F.conv2d, F.conv2d_backward

    def run():
        y = forward(x, w, b, **options)
        return (y, *backward(grad_y, x, w, **options)) if problem.train else (y,)
    return run


def _read_only(array):
    copy = array.copy()
    copy.flags.writeable = False
    return copy


def _autotune_stats() -> dict:
    from fastconv.backends import numba_backend as nb

    return nb.autotune_stats()


def _algorithms(layer: Conv, batch: int, train: bool, dtype) -> str:
    """The plain convolution algorithms chosen (forward/backward); ``general`` for a
    grouped, dilated or transposed layer, whose kernels the backend picks inside."""
    from fastconv.backends import numba_backend as nb

    if layer.general:
        return "general"
    passes = ("forward", "backward") if train else ("forward frozen",)
    x_shape = (batch, layer.c_in, layer.size, layer.size)
    return "/".join(nb.conv_algorithm(x_shape, layer.w_shape, layer.stride, layer.pad, dtype, p) for p in passes)


def time_layer(layer: Conv, batch: int, train: bool, dtype, peers, repeat: int) -> dict:
    """Median seconds per call for numba and each started peer that runs the problem,
    measured interleaved after their outputs were checked against numba's."""
    problem = peer_adapters.make_problem(layer, batch, train, dtype)
    numba_run = _numba_job(problem)
    tuned_before = _autotune_stats()
    with fastconv.use_backend("numba"):
        # the first call autotunes: keep it out of the timings
        reference = [np.array(output) for output in numba_run()]
    tuned = {k: v - tuned_before[k] for k, v in _autotune_stats().items()}
    mode = "train" if train else "infer"
    jobs = {}
    for peer in peers:
        if peer.supports(problem):
            job = peer.job(problem)
            peer_adapters.check_outputs(reference, job(), peer.title, f"layer {layer.label()} ({mode}, batch {batch})")
            jobs[peer.name] = job
    options = dict(repeat=repeat, budget=1.5, min_seconds=0.3)
    variants = {"numba": (numba_run, options, lambda: fastconv.use_backend("numba"))}
    variants.update({name: (job, options) for name, job in jobs.items()})
    timings = measure_interleaved(variants)
    numba_s = timings["numba"].median
    flops = layer.flops(batch) * (3 if train else 1)
    row = {"layer": layer.label(), "batch": batch, "mode": mode,
           "numba_s": numba_s, "numba_gflops": flops / numba_s / 1e9,
           "algorithm": _algorithms(layer, batch, train, dtype), "flops": flops,
           "tuned_problems": tuned["problems"], "tuning_s": tuned["seconds"]}
    for name in jobs:
        row[f"{name}_s"] = timings[name].median
        row[f"vs_{name}"] = timings[name].median / numba_s
    return row


def run_zoo(dtype, repeat: int, quick: bool, peers=("torch",), log=print, threads: int | None = None) -> dict:
    """Per layer and per network rows for each mode; geometric means of the ratios.

    ``peers``: names of `fastconv.benchmark.peers.PEERS` to time beside numba (a
    missing one is skipped with one line); ``threads``: theirs, by default numba's.
    """
    if threads is None:
        import numba

        threads = numba.get_num_threads()
    started = peer_adapters.load(peers, threads, dtype, log)
    names = QUICK if quick else tuple(NETWORKS)
    measured: dict = {}
    networks = []
    for name in names:
        for mode, batch in MODES:
            batch = batch or TRAIN_BATCH[name]
            train = mode == "train"
            layers = []
            for layer, count in NETWORKS[name]:
                key = (layer, batch, train)
                if key not in measured:
                    measured[key] = time_layer(layer, batch, train, dtype, started, repeat)
                    log(_layer_line(measured[key], started))
                layers.append(dict(measured[key], count=count))
            entry = _network_entry(name, mode, batch, layers, started)
            networks.append(entry)
            log(_network_line(entry, started))
    autotune = {"problems": sum(r["tuned_problems"] for r in measured.values()),
                "seconds": sum(r["tuning_s"] for r in measured.values())}
    return {"peers": [{"name": p.name, "title": p.title} for p in started], "networks": networks,
            "summary": _summary(networks, started), "overall": _overall(networks, started), "autotune": autotune}


def _network_entry(name: str, mode: str, batch: int, layers: list, peers) -> dict:
    """A network's multiplicity-weighted totals; a peer's only if it ran every layer."""
    numba_s = sum(r["count"] * r["numba_s"] for r in layers)
    flops = sum(r["count"] * r["flops"] for r in layers)
    entry = {"network": name, "mode": mode, "batch": batch, "layers": layers,
             "numba_s": numba_s, "numba_gflops": flops / numba_s / 1e9}
    for peer in peers:
        if all(f"{peer.name}_s" in r for r in layers):
            entry[f"{peer.name}_s"] = sum(r["count"] * r[f"{peer.name}_s"] for r in layers)
            entry[f"vs_{peer.name}"] = entry[f"{peer.name}_s"] / numba_s
    return entry


def _geomean(values) -> float:
    return float(np.exp(np.mean(np.log(values))))


def _summary(networks: list, peers) -> dict:
    """Per mode and peer: the geometric mean and the lowest of the networks' ratios."""
    summary = {}
    for mode, _ in MODES:
        for peer in peers:
            ratios = [n[f"vs_{peer.name}"] for n in networks if n["mode"] == mode and f"vs_{peer.name}" in n]
            if ratios:
                summary.setdefault(mode, {}).update({f"geomean_vs_{peer.name}": _geomean(ratios),
                                                     f"min_vs_{peer.name}": float(min(ratios))})
    return summary


def _overall(networks: list, peers) -> dict:
    """Per peer: the geometric mean of its ratios over every network and mode it ran."""
    overall = {}
    for peer in peers:
        ratios = [n[f"vs_{peer.name}"] for n in networks if f"vs_{peer.name}" in n]
        if ratios:
            overall[f"geomean_vs_{peer.name}"] = _geomean(ratios)
    return overall


def _layer_line(row: dict, peers) -> str:
    return (f"  {row['mode']:5s} b{row['batch']:<3d} {row['layer']:24s} numba {row['numba_s'] * 1e3:8.2f} ms "
            f"{row['numba_gflops']:6.0f} GFLOP/s [{row['algorithm']}]"
            + "".join(f"  {p.title} {row[p.name + '_s'] * 1e3:8.2f} ms  {row['vs_' + p.name]:.2f}x"
                      for p in peers if f"{p.name}_s" in row))


def _network_line(entry: dict, peers) -> str:
    return (f"== {entry['network']}, {entry['mode']} (batch {entry['batch']}): numba {entry['numba_s'] * 1e3:.1f} ms"
            + "".join(f", {p.title} {entry[p.name + '_s'] * 1e3:.1f} ms, {entry['vs_' + p.name]:.2f}x"
                      for p in peers if f"{p.name}_s" in entry))


def _peer_columns(zoo: dict) -> list:
    """The peers a zoo result has columns for, as objects with ``name`` and ``title``."""
    return [SimpleNamespace(**peer) for peer in zoo.get("peers", [])]


def _cells(row: dict, peers, digits: int) -> str:
    """`` time | ratio |`` per peer, ``-`` where the peer did not run."""
    return "".join(f" {row[p.name + '_s'] * 1e3:.{digits}f} ms | {row['vs_' + p.name]:.2f}x |"
                   if f"{p.name}_s" in row else " - | - |" for p in peers)


def markdown(zoo: dict) -> str:
    peers = _peer_columns(zoo)
    versus = ", ".join(p.title for p in peers)
    lines = ["## Network zoo: conv layers, numba" + (f" vs {versus}" if peers else ""), "",
             "| network | mode | batch | numba |" + "".join(f" {p.title} | {p.title} time / numba time |"
                                                         for p in peers) + " numba GFLOP/s |",
             "|---|---|---:|---:|" + "---:|---:|" * len(peers) + "---:|"]
    for n in zoo["networks"]:
        lines.append(f"| {n['network']} | {n['mode']} | {n['batch']} | {n['numba_s'] * 1e3:.1f} ms |"
                     + _cells(n, peers, 1) + f" {n['numba_gflops']:.0f} |")
    for mode, s in zoo["summary"].items():
        lines.append(f"\n{mode}: geometric mean over networks " + "; ".join(
            f"{s['geomean_vs_' + p.name]:.2f}x {p.title}, lowest {s['min_vs_' + p.name]:.2f}x"
            for p in peers if f"geomean_vs_{p.name}" in s))
    overall = zoo.get("overall", {})
    if overall:
        lines.append("\noverall: geometric mean over networks and modes " + "; ".join(
            f"{overall['geomean_vs_' + p.name]:.2f}x {p.title}" for p in peers if f"geomean_vs_{p.name}" in overall))
    if "autotune" in zoo:
        lines.append(f"\nAutotuning (first call of each layer, not in the timings): "
                     f"{zoo['autotune']['problems']} problems timed in {zoo['autotune']['seconds']:.1f} s")
    lines += ["", "Per layer (each distinct layer once; `algorithm` = forward/backward choice):", "",
              "| mode | batch | layer | numba | GFLOP/s | algorithm |" + "".join(f" {p.title} | ratio |" for p in peers),
              "|---|---:|---|---:|---:|---|" + "---:|---:|" * len(peers)]
    seen = set()
    for n in zoo["networks"]:
        for r in n["layers"]:
            key = (r["mode"], r["batch"], r["layer"])
            if key not in seen:
                seen.add(key)
                lines.append(f"| {r['mode']} | {r['batch']} | {r['layer']} | {r['numba_s'] * 1e3:.2f} ms | "
                             f"{r['numba_gflops']:.0f} | {r['algorithm']} |" + _cells(r, peers, 2))
    return "\n".join(lines) + "\n"


def plot(zoo: dict, path) -> None:
    """Bars of peer time / numba time per network, one group per mode, one panel per peer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = _peer_columns(zoo) or [SimpleNamespace(name="torch", title="PyTorch")]
    names = list(dict.fromkeys(n["network"] for n in zoo["networks"]))
    modes = list(dict.fromkeys(n["mode"] for n in zoo["networks"]))
    fig, axes = plt.subplots(len(peers), 1, figsize=(11, 4.5 * len(peers)), squeeze=False)
    width = 0.8 / len(modes)
    for ax, peer in zip(axes[:, 0], peers):
        ratio = {(n["network"], n["mode"]): n.get(f"vs_{peer.name}", float("nan")) for n in zoo["networks"]}
        for i, mode in enumerate(modes):
            ax.bar(np.arange(len(names)) + i * width, [ratio[(n, mode)] for n in names], width, label=mode)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(names)) + width * (len(modes) - 1) / 2)
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(f"{peer.title} time / numba time\n(> 1: numba faster)")
        ax.set_title(f"Conv layers of each network, numba backend vs {peer.title} CPU")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
