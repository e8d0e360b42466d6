"""Turn benchmark rows into the printed table, results.md, results.json and charts.

Charts: ``speedup.png`` (speedup over the numpy backend per kernel function, the
geometric mean over the layers measured, with their range), ``speedup_layers.png``
(every kernel and layer, one panel per network), ``gflops.png`` (convolution
throughput against the matmul peak) and ``scaling_batch.png`` /
``scaling_channels.png`` (one 3x3 layer's forward + backward time against batch size
and channel count).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

KERNEL_HEADER = (f"{'kernel':22s} {'net':9s} {'layer':6s} {'shape':28s} {'backend':8s} "
                 f"{'median ms':>10s} {'IQR ms':>17s} {'x numpy':>8s} {'vs torch':>8s} "
                 f"{'GFLOP/s':>8s} {'%peak':>6s} algo")


ABOVE_PEAK_MARK = "*"
ABOVE_PEAK_NOTE = (f"{ABOVE_PEAK_MARK} above the measured matmul peak.  The peak is the fastest large float32 "
                   "matrix product of this run's BLAS (the best of a few rounds, measured before the kernels), "
                   "not the CPU's arithmetic limit: a kernel built for its shape can beat it, and a peak "
                   "measured while other processes took a core, or in a slow spell of the machine, reads low.")
WINOGRAD_MARK = "†"
WINOGRAD_NOTE = (f"{WINOGRAD_MARK} Winograd ran: GFLOP/s count the multiply-adds of a direct convolution, and "
                 "Winograd F(4x4, 3x3) needs 4x fewer multiplies in its products (36 instead of 144 per 4x4 "
                 "output tile and channel pair) plus its transforms, so its effective rate can exceed the "
                 "matmul peak while the CPU does less arithmetic, not more.")
AUTO_NOTE = ('"numba" is the backend\'s own choice of algorithm per shape (`auto`: autotuning -- the first call '
             'of each problem times the candidate algorithms and the fastest is cached per machine); '
             '"numba (direct)" and "numba (gemm)" force one algorithm.')
NUMPY_STOPS_NOTE = ("The numpy backend is timed only on the smaller layers of a sweep: on the larger ones the "
                    "reference implementation takes seconds per call, so its line stops (`-` in the tables).")


def _num(value, fmt):
    return format(value, fmt) if value is not None else "-"


def _is_winograd(row) -> bool:
    """The row's time comes (at least partly) from Winograd."""
    return "winograd" in str(row.get("algorithm", "")) or bool(row.get("winograd"))


def _peak_mark(row) -> str:
    """The mark of a result above the matmul peak: Winograd's or the general one."""
    if not row.get("above_peak"):
        return ""
    return WINOGRAD_MARK if _is_winograd(row) else ABOVE_PEAK_MARK


def _pct_peak(row, fmt) -> str:
    """% of peak, marked when above 100 (see ABOVE_PEAK_NOTE and WINOGRAD_NOTE)."""
    return _num(row["pct_peak"], fmt) + _peak_mark(row)


def _peak_notes(rows) -> list[str]:
    """The notes for the marks that ``rows`` use."""
    marks = {_peak_mark(row) for row in rows}
    return [note for mark, note in ((WINOGRAD_MARK, WINOGRAD_NOTE), (ABOVE_PEAK_MARK, ABOVE_PEAK_NOTE))
            if mark in marks]


def format_row(row: dict) -> str:
    iqr = f"{row['q1_ms']:.3f}-{row['q3_ms']:.3f}"
    return (f"{row['kernel']:22s} {row['network']:9s} {row['layer']:6s} {row['shape']:28s} "
            f"{row['backend']:8s} {row['median_ms']:10.3f} {iqr:>17s} "
            f"{_num(row['speedup_vs_numpy'], '8.1f')} {_num(row['vs_torch'], '8.2f')} "
            f"{_num(row['gflops'], '8.1f')} {_pct_peak(row, '6.1f')} {row['algorithm']}")


def conv_totals(kernels: list[dict]) -> list[dict]:
    """Per network and backend: every conv layer's forward + backward medians summed
    (a network's "conv layers" figure), with the same ratios as a kernel row;
    ``winograd`` says whether Winograd ran in any of them."""
    totals = {}
    for row in kernels:
        if row["kernel"] in ("conv2d", "conv2d_backward"):
            total = totals.setdefault((row["network"], row["backend"]),
                                      dict(network=row["network"], backend=row["backend"],
                                           median_ms=0.0, flops=0.0, winograd=False))
            total["median_ms"] += row["median_ms"]
            total["flops"] += row["flops"]
            total["winograd"] = total["winograd"] or _is_winograd(row)
    rows = list(totals.values())
    for row in rows:
        base = {r["backend"]: r["median_ms"] for r in rows if r["network"] == row["network"]}
        row["gflops"] = row["flops"] / row["median_ms"] / 1e6
        row["speedup_vs_numpy"] = base["numpy"] / row["median_ms"] if "numpy" in base else None
        row["vs_torch"] = base["torch"] / row["median_ms"] if "torch" in base else None
    return rows


def markdown(results: dict) -> str:
    machine = results["machine"]
    lines = [
        f"# fastconv benchmark — {results['date']}",
        "",
        f"`{results['command']}`",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads used; "
        f"Python {machine['python']}, numpy {machine['numpy']} ({machine['blas']}), "
        f"numba {machine['numba']} (kernel GEMMs: {machine.get('kernel_blas', 'openblas')}), torch {machine['torch'] or 'not installed'}. "
        f"dtype {results['dtype']}. float32 matmul peak ({results['peak_size']}³, the faster of numpy and the kernels' BLAS on every thread, "
        f"the fastest of {_peak_rounds(results)} rounds, measured after compilation and before the kernels): "
        f"**{results['peak_gflops']:.0f} GFLOP/s**.",
        "",
        "Times are medians after warm-up (IQR in brackets). `x numpy` = speedup over the numpy "
        "backend; `vs torch` = PyTorch time / this time (> 1: faster than PyTorch).",
        "",
        "## Training steps",
        "",
        "| network | backend | median ms | IQR ms | images/s | x numpy | vs torch | s per 60k epoch |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["steps"]:
        lines.append(
            f"| {row['network']} (batch {row['batch']}) | {row['backend']} | {row['median_ms']:.2f} | "
            f"{row['q1_ms']:.2f}–{row['q3_ms']:.2f} | {row['images_per_s']:.0f} | "
            f"{_num(row['speedup_vs_numpy'], '.1f')} | {_num(row['vs_torch'], '.2f')} | "
            f"{_num(row.get('seconds_per_60k_epoch'), '.1f')} |")
    lines += ["", f"The 2017 report's NumPy code: over 2 h for 30 epochs, i.e. ~{2 * 3600 / 30:.0f} s "
              "per 60k-image epoch.", ""]
    compile_info = results.get("compile") or {}
    if compile_info:
        lines += ["## JIT compile vs run time (numba, fresh processes)", "",
                  "| cache | import s | warmup s | report000 first step s | second step s | "
                  "letters first step s | second step s |", "|---|---:|---:|---:|---:|---:|---:|"]
        for label, data in compile_info.items():
            if "error" in data:
                lines.append(f"| {label} | error: {data['error']} | | | | | |")
                continue
            lines.append(
                f"| {label} | {data['import_s']:.2f} | {_num(data.get('warmup_s'), '.2f')} | "
                f"{data['cnn_first_step_s']:.3f} | "
                f"{data['cnn_second_step_s'] * 1e3:.1f} ms | {data['letters-cnn_first_step_s']:.3f} | "
                f"{data['letters-cnn_second_step_s'] * 1e3:.1f} ms |")
        lines.append("")
    lines += ["## Convolution layers, forward + backward, summed", "",
              "| network | backend | ms | GFLOP/s | % peak | x numpy | vs torch |",
              "|---|---|---:|---:|---:|---:|---:|"]
    totals = conv_totals(results["kernels"])
    for row in totals:
        row["pct_peak"] = 100 * row["gflops"] / results["peak_gflops"]
        row["above_peak"] = row["pct_peak"] > 100
        lines.append(
            f"| {row['network']} | {row['backend']} | {row['median_ms']:.1f} | {row['gflops']:.0f} | "
            f"{_pct_peak(row, '.0f')} | "
            f"{_num(row['speedup_vs_numpy'], '.1f')} | {_num(row['vs_torch'], '.2f')} |")
    notes = _peak_notes(totals)
    if notes:
        lines.append("")
        lines += notes
    lines += ["", "## Kernels", "",
              "| kernel | layer | shape | backend | median ms | IQR ms | x numpy | vs torch | GFLOP/s | % peak | algo |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in results["kernels"]:
        lines.append(
            f"| {row['kernel']} | {row['network']} {row['layer']} | {row['shape']} | {row['backend']} | "
            f"{row['median_ms']:.3f} | {row['q1_ms']:.3f}–{row['q3_ms']:.3f} | "
            f"{_num(row['speedup_vs_numpy'], '.1f')} | {_num(row['vs_torch'], '.2f')} | "
            f"{_num(row['gflops'], '.1f')} | {_pct_peak(row, '.0f')} | {row['algorithm']} |")
    notes = _peak_notes(results["kernels"])
    if notes:
        lines.append("")
        lines += notes
    for title, sweep in (("batch size", "batch"), ("channels", "channels"), ("threads", "threads")):
        rows = [r for r in results.get("scaling", []) if r["sweep"] == sweep]
        if not rows:
            continue
        backends = list(dict.fromkeys(r["backend"] for r in rows))
        values = list(dict.fromkeys(r["value"] for r in rows))
        lines += ["", f"## Scaling: 3x3 conv fwd+bwd (ms) vs {title}", "",
                  f"| {sweep} | " + " | ".join(backends) + " |", "|---" * (len(backends) + 1) + "|"]
        for value in values:
            cells = []
            for backend in backends:
                match = [r for r in rows if r["value"] == value and r["backend"] == backend]
                cells.append(f"{match[0]['median_ms']:.2f}" if match else "-")
            lines.append(f"| {value} | " + " | ".join(cells) + " |")
        lines += ["", AUTO_NOTE]
        if _numpy_stops(rows):
            lines += ["", NUMPY_STOPS_NOTE]
    lines += _under_load_lines(results.get("under_load") or [])
    return "\n".join(lines) + "\n"


def _under_load_lines(rows: list[dict]) -> list[str]:
    """The training step on 1 vs all threads, idle and beside a busy process."""
    if not rows:
        return []
    lines = ["", "## Under load: report 000 training step (numba), 1 vs all threads", "",
             "| machine | threads | median ms | IQR ms |", "|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['load']} | {row['threads']} | {row['median_ms']:.2f} | "
                     f"{row['q1_ms']:.2f}–{row['q3_ms']:.2f} |")
    lines += ["", "One busy-looping process pinned to a core: every kernel thread sharing that core "
              "is late at each parallel kernel's closing barrier. On a busy machine set "
              "FASTCONV_NUM_THREADS to the number of free cores (`fastconv train` says so when it "
              "sees other processes keeping cores busy)."]
    return lines


def _peak_rounds(results: dict) -> int:
    """Rounds the matmul peak was the fastest of (the run records it from now on)."""
    if "peak_rounds" in results:
        return int(results["peak_rounds"])
    from fastconv.benchmark import PEAK_ROUNDS

    return PEAK_ROUNDS


def _numpy_stops(rows: list[dict]) -> bool:
    """Whether the numpy backend was left out of some values of a sweep."""
    values = {r["value"] for r in rows}
    numpy_values = {r["value"] for r in rows if r["backend"] == "numpy"}
    return bool(numpy_values) and numpy_values != values


def _scaling_label(backend: str) -> str:
    """Legend text: plain "numba" is its automatic algorithm choice."""
    return "numba (auto: chosen per shape)" if backend == "numba" else backend


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_results(results: dict, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "results.json", json.dumps(results, indent=2))
    write_atomic(out_dir / "results.md", markdown(results))
    return [out_dir / "results.json", out_dir / "results.md", *plot_charts(results, out_dir)]


def _geomean(values) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def speedup_summary(kernels: list[dict]) -> list[dict]:
    """Per kernel function and backend (numpy excluded): the speedup over the numpy
    backend over every layer measured -- geometric mean, lowest, highest, count."""
    groups = {}
    for row in kernels:
        if row["backend"] != "numpy" and row.get("speedup_vs_numpy"):
            groups.setdefault((row["kernel"], row["backend"]), []).append(row["speedup_vs_numpy"])
    return [dict(kernel=kernel, backend=backend, geomean=_geomean(values), low=min(values),
                 high=max(values), count=len(values))
            for (kernel, backend), values in groups.items()]


def _plot_speedup_summary(plt, results: dict, path: Path) -> Path | None:
    """``speedup.png``: one row per kernel function, a bar per backend at the geometric
    mean of its speedup over the numpy backend, a line over its lowest..highest layer."""
    summary = speedup_summary(results["kernels"])
    if not summary:
        return None
    kernels = list(dict.fromkeys(s["kernel"] for s in summary))
    backends = list(dict.fromkeys(s["backend"] for s in summary))
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(kernels) * max(1, len(backends)) ** 0.5))
    height = 0.8 / len(backends)
    for i, backend in enumerate(backends):
        rows = [next((s for s in summary if s["kernel"] == k and s["backend"] == backend), None)
                for k in kernels]
        ys = [j + i * height for j, s in enumerate(rows) if s]
        shown = [s for s in rows if s]
        ax.barh(ys, [s["geomean"] for s in shown], height, label=backend)
        ax.errorbar([s["geomean"] for s in shown], ys,
                    # max(0, .): the geometric mean of one value can round a hair past it
                    xerr=[[max(0.0, s["geomean"] - s["low"]) for s in shown],
                          [max(0.0, s["high"] - s["geomean"]) for s in shown]],
                    fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
    ax.axvline(1, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks([j + height * (len(backends) - 1) / 2 for j in range(len(kernels))],
                  [f"{k} ({max(s['count'] for s in summary if s['kernel'] == k)} layers)" for k in kernels],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("speedup over the numpy backend (log)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"fastconv kernels vs the numpy backend, {results['dtype']}, "
                 f"{results['machine']['threads']} threads\nbar: geometric mean over the layers, line: lowest to "
                 "highest layer\n(every layer: speedup_layers.png and results.md)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_speedup_layers(plt, results: dict, path: Path) -> Path | None:
    """``speedup_layers.png``: every kernel and layer as a horizontal bar per backend,
    one panel per network, so no label has to be rotated or shrunk."""
    kernels = results["kernels"]
    others = [b for b in dict.fromkeys(r["backend"] for r in kernels) if b != "numpy"]
    if not others or not any(r.get("speedup_vs_numpy") for r in kernels):
        return None
    networks = list(dict.fromkeys(r["network"] for r in kernels))
    labels = {net: list(dict.fromkeys(f"{r['kernel']} {r['layer']}" for r in kernels if r["network"] == net))
              for net in networks}
    height = 0.8 / len(others)
    fig, axes = plt.subplots(len(networks), 1, sharex=True, squeeze=False,
                             figsize=(8, 1.0 + 0.2 * sum(len(v) for v in labels.values()) * len(others) ** 0.5
                                      + 0.5 * len(networks)),
                             gridspec_kw={"height_ratios": [len(labels[n]) + 1 for n in networks]})
    for ax, net in zip(axes[:, 0], networks):
        for i, backend in enumerate(others):
            values = []
            for label in labels[net]:
                match = [r for r in kernels if r["backend"] == backend and r["network"] == net
                         and f"{r['kernel']} {r['layer']}" == label]
                values.append((match[0]["speedup_vs_numpy"] or 0) if match else 0)
            ax.barh([j + i * height for j in range(len(labels[net]))], values, height,
                    label=backend, color=f"C{i}")
        ax.axvline(1, color="black", lw=0.8)
        ax.set_yticks([j + height * (len(others) - 1) / 2 for j in range(len(labels[net]))], labels[net],
                      fontsize=7)
        ax.invert_yaxis()
        ax.set_title(net, fontsize=9, loc="left")
        ax.grid(True, axis="x", which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="lower right")
    axes[-1, 0].set_xscale("log")
    axes[-1, 0].set_xlabel("speedup over the numpy backend (log)")
    fig.suptitle(f"fastconv kernels per layer, {results['dtype']}, {results['machine']['threads']} threads",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_gflops(plt, results: dict, path: Path) -> Path | None:
    """``gflops.png``: effective GFLOP/s per convolution layer and backend against the
    matmul peak; Winograd's bars hatched, results above the peak marked.  The legend
    sits outside the axes, so it hides neither a bar nor the peak line."""
    conv_rows = [r for r in results["kernels"] if r["gflops"]]
    if not conv_rows:
        return None

    def label_of(r):
        return f"{r['kernel'].replace('conv2d', 'conv')} {r['network']} {r['layer']}"

    conv_labels = list(dict.fromkeys(label_of(r) for r in conv_rows))
    backends = list(dict.fromkeys(r["backend"] for r in conv_rows))
    fig, ax = plt.subplots(figsize=(max(8.0, 0.5 * len(conv_labels) + 3.5), 5.5))
    width = 0.8 / len(backends)
    any_winograd, above_winograd, above_other = False, [], []
    for i, backend in enumerate(backends):
        rows = []
        for label in conv_labels:
            match = [r for r in conv_rows if r["backend"] == backend and label_of(r) == label]
            rows.append(match[0] if match else None)
        xs = [j + i * width for j in range(len(conv_labels))]
        bars = ax.bar(xs, [row["gflops"] if row else 0 for row in rows], width, label=backend, color=f"C{i}")
        for x, bar, row in zip(xs, bars, rows):
            if row and _is_winograd(row):
                bar.set_hatch("//")
                any_winograd = True
            if row and row.get("above_peak"):
                (above_winograd if _is_winograd(row) else above_other).append((x, row["gflops"]))
    peak = results["peak_gflops"]
    ax.axhline(peak, color="red", ls="--",
               label=f"float32 matmul peak, {peak:.0f} GFLOP/s\n(fastest of {_peak_rounds(results)} rounds, "
                     "measured before the kernels)")
    if above_winograd:
        ax.plot(*zip(*above_winograd), "kv", label="above the peak: Winograd's\nfewer multiplies")
    if above_other:
        ax.plot(*zip(*above_other), "k*", label="above the measured peak\n(see results.md)")
    top = max([peak] + [r["gflops"] for r in conv_rows])
    ax.set_ylim(0, top * 1.12)
    ax.set_ylabel("GFLOP/s (direct-convolution FLOPs / time)")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(conv_labels))], conv_labels, rotation=60,
                  ha="right", fontsize=8)
    handles, texts = ax.get_legend_handles_labels()
    if any_winograd:
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//"))
        texts.append("hatched: Winograd ran, an effective\nrate (direct-convolution FLOPs / time)")
    ax.legend(handles, texts, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title("convolution throughput vs the machine's matmul peak")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_scaling(plt, results: dict, sweep: str, xlabel: str, path: Path) -> Path | None:
    """``scaling_<sweep>.png``: one 3x3 layer's forward + backward time per backend."""
    rows = [r for r in results.get("scaling", []) if r["sweep"] == sweep]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.9))
    for backend in dict.fromkeys(r["backend"] for r in rows):
        points = [(r["value"], r["median_ms"]) for r in rows if r["backend"] == backend]
        ax.plot(*zip(*points), marker="o", label=_scaling_label(backend))
    fixed = "64 channels in and out, 16x16 images" if sweep == "batch" else "batch 32, 16x16 images"
    ax.set_title(f"3x3 conv layer, forward + backward, vs {xlabel}\n({fixed}; "
                 f"{results['dtype']}, {results['machine']['threads']} threads)", fontsize=10)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("3x3 conv forward+backward, ms (log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if _numpy_stops(rows):
        fig.text(0.01, 0.01, "The numpy line stops where the reference backend takes seconds per call:\n"
                             "it is timed only on the smaller layers of the sweep.", fontsize=7.5,
                 ha="left", va="bottom")
        fig.tight_layout(rect=(0, 0.07, 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_charts(results: dict, out_dir: Path) -> list[Path]:
    """Every chart of a run (see the module docstring); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = [
        _plot_speedup_summary(plt, results, out_dir / "speedup.png"),
        _plot_speedup_layers(plt, results, out_dir / "speedup_layers.png"),
        _plot_gflops(plt, results, out_dir / "gflops.png"),
        _plot_scaling(plt, results, "batch", "batch size", out_dir / "scaling_batch.png"),
        _plot_scaling(plt, results, "channels", "channels in = out", out_dir / "scaling_channels.png"),
    ]
    return [path for path in written if path is not None]
