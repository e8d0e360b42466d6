"""Lines `fastconv bench` prints as it measures (the report itself goes to results.md,
`report`): every section once, none of them a raw Python structure."""

from __future__ import annotations

from fastconv.benchmark.report import conv_totals

# `runner.first_step_latency`'s fields as printed: (key, label, scale, unit)
_COMPILE_FIELDS = (("import_s", "import", 1, "s"), ("warmup_s", "warmup", 1, "s"),
                   ("cnn_first_step_s", "report000 first step", 1, "s"),
                   ("cnn_second_step_s", "second", 1e3, "ms"),
                   ("letters-cnn_first_step_s", "letters first step", 1, "s"),
                   ("letters-cnn_second_step_s", "second", 1e3, "ms"),
                   ("process_wall_s", "whole process", 1, "s"))


def compile_line(label: str, data: dict) -> str:
    """One printed line of a `first_step_latency` result."""
    if "error" in data:
        return f"  compile, {label}: failed: {data['error']}"
    parts = [f"{name} {data[key] * scale:.{1 if unit == 'ms' else 2}f} {unit}"
             for key, name, scale, unit in _COMPILE_FIELDS if data.get(key) is not None]
    return f"  compile, {label}: " + (", ".join(parts) or "no timings")


def conv_totals_text(kernels: list[dict]) -> str:
    """Every conv layer's forward + backward summed per network and backend
    (`report.conv_totals`), as printed lines."""
    rows = conv_totals(kernels)
    if not rows:
        return "convolution layers, forward + backward summed: none measured"
    lines = ["convolution layers, forward + backward summed:"]
    for row in rows:
        ratios = "".join(f"  {name} {row[key]:.2f}" for key, name in (("speedup_vs_numpy", "x numpy"),
                                                                      ("vs_torch", "vs torch"))
                         if row[key] is not None)
        lines.append(f"  {row['network']:9s} {row['backend']:8s} {row['median_ms']:10.1f} ms "
                     f"{row['gflops']:7.1f} GFLOP/s{ratios}")
    return "\n".join(lines)


def scaling_line(sweep: str, value: int, rows: list[dict]) -> str:
    """One sweep point's forward+backward times, as printed."""
    times = ", ".join(f"{row['backend']} {row['median_ms']:.2f} ms" for row in rows
                      if row["sweep"] == sweep and row["value"] == value)
    return f"  scaling, 3x3 conv fwd+bwd, {sweep} {value}: {times}"
