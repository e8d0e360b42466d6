"""examples/conv_autoencoder.py on a tiny setting: it trains on both backends (same
seed, so the same losses), writes its picture and results, and learns."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import fastconv

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "conv_autoencoder.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("conv_autoencoder", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_on_both_backends(example, tmp_path):
    backends = [b for b in ("numba", "numpy") if b in fastconv.available_backends()]
    assert example.main(["--dataset", "digits", "--limit", "96", "--epochs", "3", "--numpy-epochs", "1",
                         "--batch-size", "32", "--backends", ",".join(backends), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "reconstructions.png").stat().st_size > 1000
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["dataset"] == "digits" and results["train_images"] == 96
    runs = results["backends"]
    assert set(runs) == set(backends)
    first = runs[backends[0]]
    assert first[-1]["test_mse"] < 0.5 * first[0]["train_mse"]          # it learns
    if len(backends) == 2:                                              # same seed, same maths
        np.testing.assert_allclose(runs["numba"][0]["test_mse"], runs["numpy"][0]["test_mse"], rtol=1e-3)


def test_autoencoder_shapes_and_gradients(example):
    from tests.test_nn import check_directional_derivatives

    model = example.build_autoencoder(dtype=np.float64, seed=1)
    x = np.random.default_rng(0).random((2, 1, 28, 28))
    assert model.forward(x).shape == x.shape
    model.layers[0].input_grad = True
    assert "input" in check_directional_derivatives(model, x)
