"""The ``fastconv`` command: exit codes, one-line errors, and the sub-commands end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fastconv
from fastconv.cli import main


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("fastconv: error: ")
    return err


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"fastconv {fastconv.__version__}" in out
    for name in fastconv.available_backends():
        assert name in out
    assert "cpu cores" in out


def test_usage_errors_exit_2(capsys):
    assert main(["train", "--model", "resnet"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["train", "--epochs", "0"]) == 2
    assert main(["--help"]) == 0


def test_unknown_dataset_is_one_clear_line(capsys, tmp_path):
    assert main(["train", "--dataset", "no-such-set", "--out", str(tmp_path / "run")]) == 1
    assert "unknown dataset 'no-such-set'" in one_line_error(capsys)


def test_missing_data_is_reported_not_raised(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setenv("FASTCONV_CACHE", str(tmp_path / "cache"))
    from fastconv.data import sources

    if sources.find_dataset_dir("mnist", "test") is not None:
        pytest.skip("MNIST is installed system-wide here")
    assert main(["train", "--dataset", "mnist", "--data-root", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    assert "mnist (test split) not found" in one_line_error(capsys)


def test_unknown_backend_and_misplaced_options(capsys, tmp_path):
    assert main(["train", "--backend", "cuda", "--dataset", "digits"]) == 1
    err = one_line_error(capsys)
    assert "unknown backend 'cuda'" in err and "numpy" in err
    assert main(["train", "--model", "cnn", "--no-bn", "--dataset", "digits", "--out", str(tmp_path)]) == 1
    assert "letters-cnn" in one_line_error(capsys)


def test_train_resume_and_viz(capsys, tmp_path):
    run = tmp_path / "run"
    common = ["--model", "cnn", "--dataset", "digits", "--limit", "150", "--backend", "numpy",
              "--out", str(run), "--no-progress"]
    assert main(["train", "--epochs", "1", *common]) == 0
    assert len(json.loads((run / "history.json").read_text())) == 1
    # Same folder again without --resume: refused, nothing overwritten
    assert main(["train", "--epochs", "1", *common]) == 1
    assert "--resume" in one_line_error(capsys)
    assert main(["train", "--epochs", "2", "--resume", *common]) == 0
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    with np.load(run / "model.npz", allow_pickle=False) as npz:
        assert json.loads(str(npz["meta"]))["limit"] == 150

    figures = tmp_path / "figures"
    assert main(["viz", "--checkpoint", str(run / "model.npz"), "--out", str(figures),
                 "--tsne-points", "40"]) == 0
    assert (figures / "entropy.json").exists() and (figures / "kernels_conv2.png").exists()
    assert main(["viz", "--checkpoint", str(tmp_path / "nothing.npz")]) == 1
    assert "no checkpoint" in one_line_error(capsys)


def test_compare_writes_plot_and_tables(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--dataset", "digits", "--limit", "100", "--epochs", "1",
                 "--backends", "numpy", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "comparison.json").read_text())
    rows = {row["model"]: row for row in summary["rows"]}
    assert {m: r["parameters"] for m, r in rows.items()} == {"cnn": 4842, "mlp1": 311_650, "mlp2": 386_718}
    assert rows["mlp2"]["loss"] == "EuclideanLoss" and rows["cnn"]["loss"] == "SoftmaxCrossEntropyLoss"
    assert all(r["seconds_per_epoch"] > 0 and 0 <= r["test_acc"] <= 1 for r in rows.values())
    assert rows["cnn"]["speedup_vs_numpy"] == pytest.approx(1.0)
    markdown = (out / "comparison.md").read_text()
    assert "| numpy | cnn |" in markdown and "4,842" in markdown
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["compare", "--backends", "gpu", "--out", str(out)]) == 1
    assert "not available" in one_line_error(capsys)


def test_bench_forwards_its_arguments(monkeypatch):
    import fastconv.benchmark

    received = []
    monkeypatch.setattr(fastconv.benchmark, "main", lambda argv: received.append(argv) or 7)
    assert main(["bench", "--quick", "--backends", "numpy"]) == 7
    assert received == [["--quick", "--backends", "numpy"]]


def test_bare_command_prints_help_and_version_flag(capsys):
    assert main([]) == 0
    assert capsys.readouterr().out.startswith("usage: fastconv")
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fastconv {fastconv.__version__}"


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bench_threads_must_be_positive(capsys, value):
    assert main(["bench", "--threads", value]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"argument --threads: must be a positive integer, got {value}" in err


def test_bench_user_errors_are_one_line(capsys):
    assert main(["bench", "--backends", "cuda"]) == 1
    assert "--backends: not available: 'cuda'" in one_line_error(capsys)
    with pytest.raises(ValueError):
        main(["--debug", "bench", "--backends", "cuda"])


def _parsers():
    from fastconv.benchmark import build_parser as bench_parser
    from fastconv.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    return {"fastconv": parser, **commands, "bench": bench_parser()}


def test_every_option_help_shows_its_default():
    from fastconv.cli import HelpFormatter

    for name, parser in _parsers().items():
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "version") or action.required:
                continue
            # argparse prints nothing for an option without help text
            text = HelpFormatter(name)._get_help_string(action) if action.help else ""
            assert "default" in text, f"{name} {action.option_strings[0]}: {text!r}"


def test_viz_takes_the_checkpoint_positionally_or_as_option(capsys, monkeypatch, tmp_path):
    import fastconv.viz

    seen = []
    monkeypatch.setattr(fastconv.viz, "visualize", lambda checkpoint, out, **kw: seen.append(checkpoint)
                        or {"files": []})
    path = tmp_path / "model.npz"
    assert main(["viz", str(path)]) == 0
    assert main(["viz", "--checkpoint", str(path)]) == 0
    assert seen == [path, path]
    assert main(["viz"]) == 2
    assert main(["viz", str(path), "--checkpoint", str(tmp_path / "other.npz")]) == 2
    assert "give one checkpoint" in capsys.readouterr().err


def test_bench_checks_its_output_folder_first(capsys, tmp_path):
    occupied = tmp_path / "a-file"
    occupied.write_text("")
    assert main(["bench", "--quick", "--out", str(occupied / "results")]) == 1
    assert f"--out {occupied / 'results'}: cannot create the output folder" in one_line_error(capsys)
