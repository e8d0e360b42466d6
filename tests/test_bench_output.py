"""`fastconv bench`'s output folders and printed output: the quick and the full run
keep separate folders, replacing earlier results is said, the report is printed once
and no raw Python structure is printed.  The measurements themselves are stubbed."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("numba")

import fastconv.benchmark as bench  # noqa: E402
from fastconv import startup  # noqa: E402
from fastconv.backends.numba_backend import runtime  # noqa: E402
from fastconv.benchmark import report, runner, timing  # noqa: E402

REPORT_TEXT = "THE WHOLE REPORT"


@pytest.fixture
def stubbed(monkeypatch, tmp_path):
    """The bench with every measurement stubbed, run in an empty folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(startup, "prepare_backend", lambda *args, **kwargs: None)
    monkeypatch.setattr(runner, "first_step_latency", lambda cache_dir, warmup=True: dict(
        import_s=1.25, warmup_s=30.5 if warmup else None, cnn_first_step_s=0.5, cnn_second_step_s=0.003,
        **{"letters-cnn_first_step_s": 0.75, "letters-cnn_second_step_s": 0.004}, process_wall_s=33.0))
    monkeypatch.setattr(timing, "matmul_peak_gflops", lambda *args, **kwargs: 100.0)
    for name in ("run_kernels", "run_steps", "run_scaling", "run_under_load"):
        monkeypatch.setattr(runner, name, lambda *args, **kwargs: [])
    monkeypatch.setattr(report, "markdown", lambda results: REPORT_TEXT)

    def write_results(results, out_dir):
        (out_dir / "results.md").write_text(report.markdown(results))
        (out_dir / "results.json").write_text(json.dumps({}))
        return [out_dir / "results.json", out_dir / "results.md"]

    monkeypatch.setattr(report, "write_results", write_results)
    threads = runtime.get_num_threads()
    yield tmp_path
    runtime.set_num_threads(threads)            # --threads applies to this process's numba


FULL = ["--backends", "numba", "--threads", "1", "--no-zoo", "--no-load"]


def test_quick_and_full_runs_keep_separate_folders(stubbed, capsys):
    assert bench.main(["--quick", *FULL]) == 0
    assert bench.main(FULL) == 0
    assert (stubbed / "bench-results-quick" / "results.md").exists()
    assert (stubbed / "bench-results" / "results.md").exists()
    assert "replaces" not in capsys.readouterr().out


def test_replacing_earlier_results_is_said_in_one_line(stubbed, capsys):
    assert bench.main(["--quick", *FULL]) == 0
    capsys.readouterr()
    assert bench.main(["--quick", *FULL]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "replaces" in line]
    assert said == ["bench-results-quick: this run replaces the earlier results there (results.json, "
                    "results.md); pass --out to keep them"]


def test_the_report_is_printed_once_then_its_path(stubbed, capsys):
    assert bench.main(FULL) == 0
    out = capsys.readouterr().out
    assert REPORT_TEXT not in out                     # its rows were printed as measured
    assert out.rstrip().splitlines()[-1].startswith("report: bench-results/results.md")


def test_nothing_prints_a_python_structure(stubbed, capsys):
    assert bench.main(FULL) == 0
    out = capsys.readouterr().out
    assert "{" not in out and "[" not in out, out
    compile_lines = [line for line in out.splitlines() if line.startswith("  compile, ")]
    assert len(compile_lines) == 3
    assert compile_lines[1] == ("  compile, cold, warmup first (as fastconv train): import 1.25 s, warmup 30.50 s, "
                                "report000 first step 0.50 s, second 3.0 ms, letters first step 0.75 s, "
                                "second 4.0 ms, whole process 33.00 s")
