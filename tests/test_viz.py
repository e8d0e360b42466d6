"""Plots, activations and report 003's entropies."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fastconv import entropy
from fastconv.activations import collect_activations, conv_block_ends, conv_layers, flatten_layers
from fastconv.data import Dataset, load_dataset
from fastconv.models import build_model
from fastconv.train import train
from fastconv.viz import (
    default_sample_indices,
    moving_average,
    plot_comparison,
    plot_feature_maps,
    plot_kernels,
    visualize,
)


def quiet(message):
    pass


# ------------------------------------------------------------------ entropies
def test_entropy_of_constant_and_uniform_images():
    assert entropy.image_entropy(np.full((28, 28), 0.37)) == 0.0
    uniform = np.arange(256).reshape(16, 16) / 255.0  # each grey level exactly once
    assert entropy.image_entropy(uniform) == pytest.approx(8.0)
    two_levels = np.array([0.0, 1.0] * 50)
    assert entropy.image_entropy(two_levels) == pytest.approx(1.0)
    assert entropy.image_entropy(uniform, base=math.e) == pytest.approx(math.log(256))


def test_entropy_of_feature_maps_prediction_guess_and_labels():
    assert entropy.feature_entropy(np.zeros((4, 7, 7))) == 0.0  # all ReLUs off
    assert entropy.feature_entropy(np.arange(512.0).reshape(2, 16, 16) * 3.5 + 2) == pytest.approx(8.0)
    batch = np.random.default_rng(0).random((5, 3, 6, 6))
    np.testing.assert_allclose(entropy.feature_entropies(batch), [entropy.feature_entropy(b) for b in batch])
    np.testing.assert_allclose(entropy.image_entropies(batch), [entropy.image_entropy(b) for b in batch])
    assert entropy.random_guess_entropy(26) == pytest.approx(math.log2(26))
    assert entropy.random_guess_entropy(10) == pytest.approx(math.log2(10))
    np.testing.assert_allclose(entropy.prediction_entropy(np.zeros((3, 26))), math.log2(26))
    assert entropy.prediction_entropy(np.array([[100.0, 0.0, 0.0]]))[0] == pytest.approx(0.0, abs=1e-12)
    assert entropy.label_entropy([0, 1, 2, 3] * 5) == pytest.approx(2.0)
    assert entropy.label_entropy([2, 2, 2], num_classes=5) == 0.0
    with pytest.raises(ValueError):
        entropy.shannon_entropy([0.5, -0.5])


# ------------------------------------------------------------------ activations
def test_letters_cnn_has_the_reports_five_feature_blocks():
    model = build_model("letters-cnn", dropout=0.3).eval()
    layers = flatten_layers(model)
    assert len(conv_block_ends(layers)) == 5  # x1 .. x5 of report 003
    acts = collect_activations(model, np.random.default_rng(0).random((2, 1, 32, 32), dtype=np.float32))
    assert [b.shape[1:] for b in acts.blocks] == [(32, 32, 32), (64, 32, 32), (64, 16, 16),
                                                 (128, 16, 16), (128, 8, 8)]
    assert acts.features.shape == (2, 256) and acts.logits.shape == (2, 26)
    np.testing.assert_allclose(acts.logits, model.forward(np.ascontiguousarray(
        np.random.default_rng(0).random((2, 1, 32, 32), dtype=np.float32))), rtol=1e-5, atol=1e-6)
    assert [tuple(c.weight.data.shape) for c in conv_layers(model)][:2] == [(32, 1, 5, 5), (64, 32, 5, 5)]


def test_report000_cnn_blocks_are_its_relu_outputs():
    model = build_model("cnn").eval()
    x = np.random.default_rng(1).random((3, 1, 28, 28), dtype=np.float32)
    acts = collect_activations(model, x)
    assert [b.shape for b in acts.blocks] == [(3, 4, 28, 28), (3, 8, 14, 14)]
    assert all((b >= 0).all() for b in acts.blocks)
    assert acts.features.shape == (3, 392)
    np.testing.assert_array_equal(acts.logits, model.forward(x))


# ------------------------------------------------------------------ plots
def test_plots_write_pngs(tmp_path):
    plot_kernels(np.random.default_rng(0).normal(size=(64, 32, 5, 5)), tmp_path / "k.png")
    plot_feature_maps(np.random.rand(1, 28, 28), np.random.rand(8, 14, 14), tmp_path / "f.png")
    history = [{"epoch": e, "test_acc": 0.5 + e / 10, "test_loss": 1 / e} for e in (1, 2)]
    plot_comparison([{"label": "cnn (numpy)", "model": "cnn", "backend": "numpy", "history": history},
                     {"label": "cnn (numba)", "model": "cnn", "backend": "numba", "history": history}],
                    tmp_path / "c.png")
    for name in ("k.png", "f.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_helpers():
    np.testing.assert_allclose(moving_average([1, 3, 5, 7], 2), [1, 2, 4, 6])
    labels = np.array([5, 0, 9, 3, 6, 3])
    assert default_sample_indices(labels, 10) == [1, 3, 4, 2]  # first 0, 3, 6, 9


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    data = load_dataset("digits")
    small = Dataset("digits", data.train_x[:200], data.train_y[:200], data.test_x[:150],
                    data.test_y[:150], data.classes)
    out = tmp_path_factory.mktemp("run")
    train("cnn", small, epochs=1, out_dir=out, progress=False, log=quiet)
    return out, small


def test_visualize_writes_every_figure_and_a_sane_entropy_table(trained_run, tmp_path):
    run_dir, data = trained_run
    printed = []
    result = visualize(run_dir / "model.npz", tmp_path, dataset=data, tsne_points=60, log=printed.append)
    names = {p.split("/")[-1] for p in result["files"]}
    samples = default_sample_indices(data.test_y, 10)
    expected = {"curves_iteration.png", "curves_epoch.png", "kernels_conv1.png", "kernels_conv2.png",
                "tsne_features.png", "tsne_logits.png", "entropy.json"}
    expected |= {f"features_block{b}_image{i}.png" for b in (1, 2) for i in samples}
    assert names == expected
    for name in expected - {"entropy.json"}:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    table = json.loads((tmp_path / "entropy.json").read_text())
    mean = table["mean"]
    assert table["unit"] == "bits" and table["num_images"] == 150
    assert mean["random_guess"] == pytest.approx(math.log2(10))
    assert 0 < mean["input_image"] <= 8 and all(0 < v <= 8 for v in mean["features"])
    assert len(mean["features"]) == 2
    assert 0 <= mean["prediction"] < math.log2(10)  # a trained model is surer than chance
    assert 3.0 < mean["label_distribution"] <= math.log2(10)
    assert [s["index"] for s in table["samples"]] == samples
    assert "Entropy of random guess = 3.32" in printed[-1]


def test_visualize_reloads_the_named_data_set(trained_run, tmp_path):
    """No dataset given: the checkpoint's ("digits", the in-memory set's name) is loaded."""
    run_dir, _ = trained_run
    result = visualize(run_dir, tmp_path, tsne_points=30, entropy_images=50, sample_indices=[5], log=quiet)
    assert result["entropy"]["num_images"] == 50
    assert (tmp_path / "features_block1_image5.png").exists()
    with pytest.raises(ValueError, match="outside the test set"):
        visualize(run_dir, tmp_path, sample_indices=[10**6], log=quiet)


@pytest.mark.parametrize("epochs", [[1], [1, 2], list(range(1, 31))])
def test_epoch_axes_have_whole_number_ticks(monkeypatch, tmp_path, epochs):
    """A one-epoch run used to get ticks 0.96, 0.98, ...."""
    import fastconv.viz as viz

    figures = []
    monkeypatch.setattr(viz, "_save", lambda fig, path: figures.append(fig) or path)
    history = [dict(epoch=e, train_loss=1 / e, test_loss=1 / e, train_acc=0.5, test_acc=0.5) for e in epochs]
    viz.plot_epoch_curves(history, tmp_path / "curves.png")
    viz.plot_comparison([{"label": "cnn (numba)", "history": history}], tmp_path / "cmp.png")
    for fig in figures:
        for ax in fig.axes:
            low, high = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if low <= t <= high]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
