"""Turn benchmark rows into the printed table, results.md, results.json and charts."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

KERNEL_HEADER = (f"{'kernel':22s} {'net':9s} {'layer':6s} {'shape':28s} {'backend':8s} "
                 f"{'median ms':>10s} {'IQR ms':>17s} {'x numpy':>8s} {'vs torch':>8s} "
                 f"{'GFLOP/s':>8s} {'%peak':>6s} algo")


ABOVE_PEAK_MARK = "*"
ABOVE_PEAK_NOTE = (f"{ABOVE_PEAK_MARK} above the measured matmul peak: measurement noise (the peak is the "
                   "best of several rounds on an idle machine, no kernel really exceeds it).")
AUTO_NOTE = ('"numba" is the backend\'s automatic choice of algorithm per shape (the `auto` heuristic); '
             '"numba (direct)" and "numba (gemm)" force one algorithm.')


def _num(value, fmt):
    return format(value, fmt) if value is not None else "-"


def _pct_peak(row, fmt) -> str:
    """% of peak, marked when above 100 (noise, see ABOVE_PEAK_NOTE)."""
    mark = ABOVE_PEAK_MARK if row.get("above_peak") else ""
    return _num(row["pct_peak"], fmt) + mark


def format_row(row: dict) -> str:
    iqr = f"{row['q1_ms']:.3f}-{row['q3_ms']:.3f}"
    return (f"{row['kernel']:22s} {row['network']:9s} {row['layer']:6s} {row['shape']:28s} "
            f"{row['backend']:8s} {row['median_ms']:10.3f} {iqr:>17s} "
            f"{_num(row['speedup_vs_numpy'], '8.1f')} {_num(row['vs_torch'], '8.2f')} "
            f"{_num(row['gflops'], '8.1f')} {_pct_peak(row, '6.1f')} {row['algorithm']}")


def conv_totals(kernels: list[dict]) -> list[dict]:
    """Per network and backend: every conv layer's forward + backward medians summed
    (issue 3's "report 003 conv layers" figure), with the same ratios as a kernel row."""
    totals = {}
    for row in kernels:
        if row["kernel"] in ("conv2d", "conv2d_backward"):
            total = totals.setdefault((row["network"], row["backend"]),
                                      dict(network=row["network"], backend=row["backend"],
                                           median_ms=0.0, flops=0.0))
            total["median_ms"] += row["median_ms"]
            total["flops"] += row["flops"]
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
        f"dtype {results['dtype']}. float32 matmul peak ({results['peak_size']}³, the faster of numpy and the kernels' BLAS on every thread): "
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
    for row in conv_totals(results["kernels"]):
        row["pct_peak"] = 100 * row["gflops"] / results["peak_gflops"]
        row["above_peak"] = row["pct_peak"] > 100
        lines.append(
            f"| {row['network']} | {row['backend']} | {row['median_ms']:.1f} | {row['gflops']:.0f} | "
            f"{_pct_peak(row, '.0f')} | "
            f"{_num(row['speedup_vs_numpy'], '.1f')} | {_num(row['vs_torch'], '.2f')} |")
    lines += ["", "## Kernels", "",
              "| kernel | layer | shape | backend | median ms | IQR ms | x numpy | vs torch | GFLOP/s | % peak | algo |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in results["kernels"]:
        lines.append(
            f"| {row['kernel']} | {row['network']} {row['layer']} | {row['shape']} | {row['backend']} | "
            f"{row['median_ms']:.3f} | {row['q1_ms']:.3f}–{row['q3_ms']:.3f} | "
            f"{_num(row['speedup_vs_numpy'], '.1f')} | {_num(row['vs_torch'], '.2f')} | "
            f"{_num(row['gflops'], '.1f')} | {_pct_peak(row, '.0f')} | {row['algorithm']} |")
    if any(row.get("above_peak") for row in results["kernels"]):
        lines += ["", ABOVE_PEAK_NOTE]
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


def plot_charts(results: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    kernels = results["kernels"]
    others = [b for b in dict.fromkeys(r["backend"] for r in kernels) if b != "numpy"]
    labels = list(dict.fromkeys(f"{r['kernel']}\n{r['network']} {r['layer']}" for r in kernels))
    if others and any(r["speedup_vs_numpy"] for r in kernels):
        fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(labels)), 5))
        width = 0.8 / len(others)
        for i, backend in enumerate(others):
            values = []
            for label in labels:
                match = [r for r in kernels if r["backend"] == backend
                         and f"{r['kernel']}\n{r['network']} {r['layer']}" == label]
                values.append(match[0]["speedup_vs_numpy"] or 0 if match else 0)
            ax.bar([j + i * width for j in range(len(labels))], values, width, label=backend)
        ax.axhline(1, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylabel("speedup over the numpy backend (log)")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, rotation=90, fontsize=7)
        ax.legend()
        ax.set_title(f"fastconv kernels, {results['dtype']}, {results['machine']['threads']} threads")
        fig.tight_layout()
        written.append(out_dir / "speedup.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    conv_rows = [r for r in kernels if r["gflops"]]
    if conv_rows:
        conv_labels = list(dict.fromkeys(f"{r['kernel'].replace('conv2d', 'conv')} {r['network']} {r['layer']}"
                                         for r in conv_rows))
        backends = list(dict.fromkeys(r["backend"] for r in conv_rows))
        fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(conv_labels)), 5))
        width = 0.8 / len(backends)
        for i, backend in enumerate(backends):
            values = []
            for label in conv_labels:
                match = [r for r in conv_rows if r["backend"] == backend and
                         f"{r['kernel'].replace('conv2d', 'conv')} {r['network']} {r['layer']}" == label]
                values.append(match[0]["gflops"] if match else 0)
            ax.bar([j + i * width for j in range(len(conv_labels))], values, width, label=backend)
        ax.axhline(results["peak_gflops"], color="red", ls="--", label="float32 matmul peak (best of rounds, idle)")
        above = [(j + i * width, r["gflops"]) for i, backend in enumerate(backends)
                 for j, label in enumerate(conv_labels) for r in conv_rows
                 if r["backend"] == backend and r.get("above_peak")
                 and f"{r['kernel'].replace('conv2d', 'conv')} {r['network']} {r['layer']}" == label]
        if above:
            ax.plot(*zip(*above), "k*", label="above the peak: measurement noise")
        ax.set_ylabel("GFLOP/s")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(conv_labels))], conv_labels, rotation=60,
                      ha="right", fontsize=8)
        ax.legend()
        ax.set_title("convolution throughput vs the machine's matmul peak")
        fig.tight_layout()
        written.append(out_dir / "gflops.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    for sweep, xlabel in (("batch", "batch size"), ("channels", "channels in = out")):
        rows = [r for r in results.get("scaling", []) if r["sweep"] == sweep]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
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
        fig.tight_layout()
        written.append(out_dir / f"scaling_{sweep}.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written
