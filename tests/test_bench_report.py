"""`fastconv.benchmark.report`: what results.md and the charts say about the numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from fastconv.benchmark import report  # noqa: E402


def _kernel(kernel, network, layer, backend, median, speedup, gflops=None, pct=None, algorithm="",
            above=False):
    return dict(kernel=kernel, network=network, layer=layer, shape="s", backend=backend, median_ms=median,
                q1_ms=median, q3_ms=median, speedup_vs_numpy=speedup, vs_torch=None, gflops=gflops,
                pct_peak=pct, above_peak=above, algorithm=algorithm, flops=(gflops or 0) * median * 1e6)


def _results(kernels=(), scaling=()):
    return dict(date="d", command="fastconv bench", dtype="float32", peak_size=2048, peak_gflops=100.0,
                machine=dict(cpu="cpu", cores=2, threads=2, python="3", numpy="2", blas="b", numba="n",
                             torch=None),
                steps=[], kernels=list(kernels), scaling=list(scaling), under_load=[])


KERNELS = [
    _kernel("conv2d", "report003", "conv3", "numpy", 10.0, 1.0, 10.0, 10.0),
    _kernel("conv2d", "report003", "conv3", "numba", 0.8, 12.5, 125.0, 125.0, "winograd", True),
    _kernel("conv2d", "report003", "conv4", "numpy", 10.0, 1.0, 10.0, 10.0),
    _kernel("conv2d", "report003", "conv4", "numba", 0.9, 11.1, 110.0, 110.0, "gemm", True),
    _kernel("im2col", "report003", "conv3", "numpy", 4.0, 1.0),
    _kernel("im2col", "report003", "conv3", "numba", 0.4, 10.0),
    _kernel("im2col", "report003", "conv4", "numpy", 4.0, 1.0),
    _kernel("im2col", "report003", "conv4", "numba", 0.1, 40.0),
]


def test_results_md_says_auto_is_autotuning_not_a_heuristic():
    scaling = [dict(sweep="batch", value=v, backend=b, threads=2, median_ms=1.0, gflops=1.0)
               for v in (1, 2) for b in ("numpy", "numba")]
    text = report.markdown(_results(scaling=scaling))
    assert "heuristic" not in text
    assert "autotuning" in text and report.AUTO_NOTE in text


def test_winograd_above_the_peak_is_explained_as_fewer_multiplies_not_noise():
    text = report.markdown(_results(KERNELS))
    assert f"| 125{report.WINOGRAD_MARK} |" in text and report.WINOGRAD_NOTE in text
    assert f"| 110{report.ABOVE_PEAK_MARK} |" in text and report.ABOVE_PEAK_NOTE in text
    assert "fewer multiplies" in report.WINOGRAD_NOTE
    assert "noise" not in report.WINOGRAD_NOTE and "idle" not in report.ABOVE_PEAK_NOTE
    assert report.format_row(KERNELS[1]).rstrip().endswith(f"125.0{report.WINOGRAD_MARK} winograd")


def test_the_numpy_line_that_stops_is_explained():
    scaling = [dict(sweep="channels", value=v, backend=b, threads=2, median_ms=1.0, gflops=1.0)
               for v in (1, 2, 4) for b in ("numpy", "numba") if not (b == "numpy" and v == 4)]
    assert report.NUMPY_STOPS_NOTE in report.markdown(_results(scaling=scaling))
    complete = [row for row in scaling if row["value"] < 4]
    assert report.NUMPY_STOPS_NOTE not in report.markdown(_results(scaling=complete))


def test_speedup_summary_is_a_geometric_mean_with_its_range():
    summary = {(s["kernel"], s["backend"]): s for s in report.speedup_summary(KERNELS)}
    assert set(summary) == {("conv2d", "numba"), ("im2col", "numba")}
    im2col = summary[("im2col", "numba")]
    assert im2col["geomean"] == pytest.approx(20.0) and (im2col["low"], im2col["high"]) == (10.0, 40.0)
    assert im2col["count"] == 2


def test_charts_are_readable(tmp_path, monkeypatch):
    figures = []
    real_savefig = matplotlib.figure.Figure.savefig

    def recording_savefig(fig, path, *args, **kwargs):
        figures.append((fig, str(path)))
        return real_savefig(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording_savefig)
    monkeypatch.setattr(plt, "close", lambda fig=None: None)   # keep them for inspection
    scaling = [dict(sweep="batch", value=v, backend=b, threads=2, median_ms=1.0, gflops=1.0)
               for v in (1, 2, 4) for b in ("numpy", "numba") if not (b == "numpy" and v == 4)]
    written = report.plot_charts(_results(KERNELS, scaling), tmp_path)
    names = sorted(path.name for path in written)
    assert names == ["gflops.png", "scaling_batch.png", "speedup.png", "speedup_layers.png"]
    by_name = {path.rsplit("/", 1)[-1]: fig for fig, path in figures}

    # speedup: one row per kernel function, labels horizontal, not one per layer
    (ax,) = by_name["speedup.png"].axes
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels == ["conv2d (2 layers)", "im2col (2 layers)"]
    assert all(label.get_rotation() == 0 for label in ax.get_yticklabels())

    # gflops: the legend sits outside the axes (it can hide neither the peak line nor a
    # bar), the peak is not called idle, Winograd's rate is explained
    fig = by_name["gflops.png"]
    (ax,) = fig.axes
    fig.canvas.draw()
    legend_box = ax.get_legend().get_window_extent()
    axes_box = ax.get_window_extent()
    assert legend_box.x0 >= axes_box.x1
    texts = [text.get_text() for text in ax.get_legend().get_texts()]
    peak = next(text for text in texts if "peak" in text and "matmul" in text)
    assert "idle" not in peak and "100 GFLOP/s" in peak
    assert any("Winograd" in text for text in texts)
    assert not any("noise" in text for text in texts)
    assert ax.get_ylim()[1] > 125.0

    # scaling: the caption says why the numpy line stops
    fig = by_name["scaling_batch.png"]
    assert any("numpy line stops" in text.get_text() for text in fig.texts)


def test_a_kernel_measured_on_one_layer_plots(tmp_path):
    """The geometric mean of one speedup can round a hair above it (exp(log(0.1)) >
    0.1): the chart's range must not turn negative."""
    one = [dict(KERNELS[1], speedup_vs_numpy=0.1)]          # a numba row
    (row,) = [s for s in report.speedup_summary(one)]
    assert row["geomean"] > row["low"]             # the rounding this guards against
    assert any(path.name == "speedup.png" for path in report.plot_charts(_results(one, []), tmp_path))
