"""`fastconv bench --networks`: the torch.nn copy computes what the fastconv network
computes, and a tiny run measures and writes its tables (no timings are checked)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fastconv
from fastconv import models

torch = pytest.importorskip("torch", reason="PyTorch is not installed")

from fastconv.benchmark import networks  # noqa: E402  (needs torch for its converter)
from fastconv.benchmark.torch_convert import to_torch  # noqa: E402
from tests.test_save_load import user_sequential  # noqa: E402


@pytest.mark.parametrize("name", list(networks.NETWORKS) + ["dcgan-generator", "user Sequential"])
def test_the_torch_copy_is_the_same_network(name):
    rng = np.random.default_rng(0)
    if name == "dcgan-generator":
        model, x = models.dcgan_generator(latent_dim=4, width=3, dtype=np.float64), rng.standard_normal((2, 4, 1, 1))
    elif name == "user Sequential":
        model, x = user_sequential(), rng.random((2, 1, 5, 7))
    else:
        model_name, options, image_shape, _ = networks.NETWORKS[name]
        model = models.build_model(model_name, dtype="float64", seed=1, **options)
        x = rng.random((2, *image_shape))
    with fastconv.use_backend("numpy"):
        model.train()
        model(x)                          # batch statistics away from their initial values
        model.eval()
        ours = model(x)
    theirs = to_torch(model).eval()
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())


def test_a_module_without_counterpart_is_named():
    from fastconv import nn

    class Custom(nn.Module):
        pass

    with pytest.raises(TypeError, match="no torch.nn counterpart for Custom"):
        to_torch(nn.Sequential(nn.Linear(2, 2), Custom()))


def test_a_tiny_run_measures_every_mode(monkeypatch):
    monkeypatch.setattr(networks, "FASTCONV_BACKEND", "numpy")     # no JIT compile in a test
    logged = []
    rows = networks.run_networks(repeat=1, quick=True, log=logged.append,
                                 networks=["report000 cnn"], batches=(1, 2))
    rows += networks.run_networks(repeat=1, quick=True, log=logged.append, networks=["letters-cnn"], batches=(1,))
    assert [(r["network"], r["mode"], r["batch"]) for r in rows] == [
        ("report000 cnn", "train", 1), ("report000 cnn", "train", 2),
        ("report000 cnn", "inference", 1), ("report000 cnn", "inference", 2),
        ("letters-cnn", "inference", 1)]      # BatchNorm1d cannot train on one image
    for row in rows:
        assert row["fastconv_ms"] > 0 and row["torch_ms"] > 0
        assert row["torch_over_fastconv"] == pytest.approx(row["torch_ms"] / row["fastconv_ms"])
    assert any("skipped (BatchNorm1d needs batch > 1)" in line for line in logged)
    assert networks.markdown(rows).count("\n") == 2 + len(rows)
    train, inference = networks.summary(rows)
    assert train.startswith("train: geometric mean") and "over 2 rows" in train
    assert inference.startswith("inference: geometric mean") and "over 3 rows" in inference


def test_training_is_measured_at_training_batches_and_inference_at_1_and_8():
    assert min(networks.BATCHES["train"]) >= 32 and 128 in networks.BATCHES["train"]
    assert networks.BATCHES["inference"] == (1, 8)


def test_fastconv_bench_networks_writes_its_tables(monkeypatch, tmp_path, capsys):
    from fastconv import benchmark

    monkeypatch.setattr(networks, "FASTCONV_BACKEND", "numpy")
    monkeypatch.setattr(networks, "NETWORKS", {"report000 cnn": networks.NETWORKS["report000 cnn"]})
    monkeypatch.setattr(networks, "BATCHES", {"train": (1,), "inference": (1,)})
    with fastconv.use_backend("numpy"):
        assert benchmark.main(["--networks", "--quick", "--repeat", "1", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "networks.json").read_text())
    assert [(r["mode"], r["batch"]) for r in written["rows"]] == [("train", 1), ("inference", 1)]
    (split,) = written["breakdown"]
    assert split["network"] == "report000 cnn" and split["fastconv_ms"]["conv"] > 0
    assert split["torch_ms"]["conv"] > 0 and split["torch_ms"]["optimizer"] > 0
    text = (tmp_path / "networks.md").read_text()
    assert "| report000 cnn | train | 1 |" in text and "| conv |" in text
    assert "wrote" in capsys.readouterr().out


def test_a_step_is_split_by_kind_of_layer():
    """Every kind of layer a ResNet has gets its share; the modules are unwrapped after."""
    import numpy as np

    from fastconv.benchmark import breakdown

    model, torch_model, images, labels = networks._problem("resnet20", 2, np.float64)
    with fastconv.use_backend("numpy"):
        ours = breakdown.fastconv_split(model, images, labels, steps=1)
    theirs = breakdown.torch_split(torch_model, images, labels, steps=1)
    for split in (ours, theirs):
        assert {"conv", "batch norm", "activation", "adds and joins", "optimizer"} <= set(split)
        assert all(value >= 0 for value in split.values()) and split["conv"] > 0
    assert not any(callable(module.__dict__.get("forward")) for module in model.modules())  # unwrapped
