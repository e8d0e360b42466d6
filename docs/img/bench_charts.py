"""Re-draw the charts of the 2026-11-24 full run (docs/bench-results.md) with the current
`fastconv.benchmark.report`:  python docs/img/bench_charts.py docs/img

The data are that run's medians as its results.md printed them; nothing is measured here."""
import re, sys
from pathlib import Path
from fastconv.benchmark import report

text = Path("docs/bench-results.md").read_text()
peak = float(re.search(r"\*\*(\d+) GFLOP/s\*\*", text).group(1))
kernels = []
section = None
for line in text.splitlines():
    if line.startswith("## "):
        section = line[3:]
        continue
    if section == "Kernels" and line.startswith("| ") and not line.startswith("| kernel") :
        cells = [c.strip() for c in line.strip("|").split("|")]
        kernel, layer, shape, backend, med, iqr, xn, vt, gf, pct, algo = cells
        network, label = layer.split(" ", 1)
        num = lambda s: None if s in ("-", "") else float(s.rstrip("*"))
        q1, q3 = iqr.split("–")
        g = num(gf)
        kernels.append(dict(kernel=kernel, network=network, layer=label, shape=shape, backend=backend,
                            median_ms=float(med), q1_ms=float(q1), q3_ms=float(q3), speedup_vs_numpy=num(xn),
                            vs_torch=num(vt), gflops=g, pct_peak=num(pct), above_peak=bool(g and g > peak),
                            algorithm=algo, flops=(g or 0) * float(med) * 1e6))
scaling = []
for sweep, title in (("batch", "batch size"), ("channels", "channels"), ("threads", "threads")):
    m = re.search(rf"## Scaling: 3x3 conv fwd\+bwd \(ms\) vs {title}\n\n(.*?)(\n\n|\Z)", text, re.S)
    lines = m.group(1).splitlines()
    backends = [c.strip() for c in lines[0].strip("|").split("|")][1:]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for b, c in zip(backends, cells[1:]):
            if c != "-":
                scaling.append(dict(sweep=sweep, value=int(cells[0]), backend=b, threads=2, median_ms=float(c), gflops=0))
results = dict(date="2026-11-24", dtype="float32", peak_gflops=peak, peak_size=2048,
               machine=dict(threads=2), kernels=kernels, scaling=scaling)
out = Path(sys.argv[1]); out.mkdir(exist_ok=True, parents=True)
print(report.plot_charts(results, out))
