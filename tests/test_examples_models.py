"""examples/build_your_own.py and examples/dcgan_fashion.py, run with tiny sizes on
the numpy backend."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv.data import sources, write_idx
from tests.test_examples import _load


@pytest.fixture
def numpy_backend():
    """The examples call fastconv.set_backend; put the previous backend back after."""
    with fastconv.use_backend("numpy"):
        yield


def test_build_your_own_trains_saves_and_reloads(tmp_path, capsys, numpy_backend):
    example = _load("build_your_own")
    out = tmp_path / "run"
    assert example.main(["--dataset", "random", "--steps", "3", "--batch-size", "4", "--width", "2",
                         "--limit", "8", "--backend", "numpy", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "step     3/3: loss" in printed and "reloaded model gives the same outputs" in printed
    with pytest.raises(ValueError, match=r"SmallResNet whose architecture .*model=instance"):
        fastconv.load(out / "model.npz")
    model = fastconv.load(out / "model.npz", model=example.SmallResNet(2, width=2))
    assert [name for name, _ in model.named_children()] == ["stem", "stem_bn", "stem_relu", "blocks", "pool",
                                                             "flatten", "fc"]
    assert model.blocks[1].shortcut is not None and model.blocks[0].shortcut is None


def test_build_your_own_hand_written_backward_is_right():
    from tests.test_nn import check_directional_derivatives

    example = _load("build_your_own")
    model = example.SmallResNet(3, width=2, seed=1)
    for param in model.parameters():              # float64 for the finite differences
        param.data = param.data.astype(np.float64)
        param.grad = np.zeros_like(param.data)
    for module in model.modules():
        for name in module._buffer_names:
            setattr(module, name, getattr(module, name).astype(np.float64))
    model.stem.input_grad = True
    x = np.random.default_rng(0).random((2, 1, 12, 12))
    with fastconv.use_backend("numpy"):
        checked = check_directional_derivatives(model, x)
    assert len(checked) == 1 + len(model.parameters())


def test_build_your_own_help_shows_defaults(capsys):
    example = _load("build_your_own")
    with pytest.raises(SystemExit) as done:
        example.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for flag, default in (("--steps", "200"), ("--batch-size", "64"), ("--width", "16"), ("--dataset", "digits")):
        assert flag in text and f"(default: {default})" in text


def fake_fashion_mnist(root, train=12, test=6):
    """Tiny IDX files under the standard names: enough to run the example."""
    rng = np.random.default_rng(0)
    for stem_images, stem_labels, n in (("train-images-idx3-ubyte", "train-labels-idx1-ubyte", train),
                                        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", test)):
        write_idx(root / stem_images, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / stem_labels, (np.arange(n) % 10).astype(np.uint8))
    return root


def test_dcgan_trains_a_tiny_pair(tmp_path, capsys, numpy_backend):
    example = _load("dcgan_fashion")
    data = fake_fashion_mnist(tmp_path / "data")
    out = tmp_path / "run"
    assert example.main(["--data-root", str(data), "--limit", "8", "--batch-size", "4", "--latent-dim", "4",
                         "--width", "2", "--samples", "4", "--backend", "numpy", "--out", str(out)]) == 0
    assert "epoch 1:" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["discriminator.npz", "generator.npz", "samples.png"]
    generator = fastconv.load(out / "generator.npz").eval()
    images = generator(np.zeros((2, 4, 1, 1), dtype=np.float32))
    assert images.shape == (2, 1, 28, 28) and np.abs(images).max() < 1


def test_dcgan_says_in_one_line_when_the_data_is_missing(tmp_path, capsys, monkeypatch):
    example = _load("dcgan_fashion")
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setenv("FASTCONV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIRS", [])
    assert example.main(["--data-root", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Fashion-MNIST is not on disk" in error
    assert not (tmp_path / "run").exists()
