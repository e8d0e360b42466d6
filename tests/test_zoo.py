"""The model zoo (resnet20, vgg11, mobilenetv2, the DCGAN pair): shapes, parameter
counts, the registry, and -- where PyTorch is installed -- the same architectures
written in PyTorch (tests/torch_zoo.py) agreeing on parameter count, outputs,
gradients and two SGD-momentum steps in float64."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv import models, nn
from fastconv.optim import SGD

CLASSIFIERS = ["resnet20", "vgg11", "mobilenetv2"]


def resnet20_param_count(in_channels: int, num_classes: int) -> int:
    """Counted by hand: convolutions without bias, two BN parameters per channel."""
    conv = lambda c_in, c_out, k: c_in * c_out * k * k       # noqa: E731
    total = conv(in_channels, 16, 3) + 2 * 16
    c_in = 16
    for stage, width in enumerate((16, 32, 64)):
        for block in range(3):
            total += conv(c_in, width, 3) + conv(width, width, 3) + 4 * width
            if c_in != width:
                total += conv(c_in, width, 1) + 2 * width      # the projection shortcut
            c_in = width
    return total + 64 * num_classes + num_classes


def test_resnet20_layout_and_count():
    model = models.resnet20()
    assert model.num_parameters() == resnet20_param_count(1, 10) == 272186
    assert models.resnet20(in_channels=3, num_classes=100).num_parameters() == resnet20_param_count(3, 100)
    residuals = [m for m in model.modules() if isinstance(m, nn.Residual)]
    assert len(residuals) == 9
    assert [r.shortcut is not None for r in residuals] == [False] * 3 + [True, False, False] * 2
    projection = residuals[3].shortcut
    assert [type(m).__name__ for m in projection] == ["Conv2d", "BatchNorm2d"]
    assert projection[0].kernel_size == (1, 1) and projection[0].stride == (2, 2)


def test_mobilenetv2_blocks():
    model = models.mobilenetv2()
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 9
    assert all(m.groups == m.in_channels == m.out_channels and m.kernel_size == (3, 3) for m in depthwise)
    assert [m.in_channels for m in depthwise] == [32, 16 * 6, 24 * 6, 24 * 6, 32 * 6, 32 * 6, 32 * 6, 64 * 6, 64 * 6]
    assert sum(isinstance(m, nn.Residual) for m in model.modules()) == 4
    assert any(isinstance(m, nn.ReLU6) for m in model.modules())
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_vgg11_has_eight_batch_normed_convolutions():
    model = models.vgg11()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 8
    assert not convs[0].input_grad and all(c.input_grad for c in convs[1:])


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("size, in_channels, n", [(28, 1, 1), (32, 3, 2), (30, 2, 3)])
def test_zoo_classifiers_take_28_to_32_px(name, size, in_channels, n):
    model = models.build_model(name, num_classes=7, in_channels=in_channels, seed=1).eval()
    x = np.random.default_rng(0).random((n, in_channels, size, size), dtype=np.float32)
    with fastconv.use_backend("numpy"):
        y = model(x)
    assert y.shape == (n, 7) and y.dtype == np.float32 and np.isfinite(y).all()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_zoo_registry(name):
    assert name in models.MODELS
    assert isinstance(models.default_loss(name), nn.SoftmaxCrossEntropyLoss)
    first, second = models.build_model(name, seed=5), models.build_model(name, seed=5)
    for key, value in first.state_dict().items():
        np.testing.assert_array_equal(value, second.state_dict()[key], err_msg=key)
    assert first.build_config == {"model": name, "model_config": {"seed": 5}}
    with pytest.raises(ValueError, match="num_classes"):
        models.build_model(name, num_classes=0)
    with pytest.raises(ValueError, match="in_channels"):
        models.build_model(name, in_channels=True)


def test_dcgan_shapes_and_init():
    generator = models.dcgan_generator(latent_dim=8, width=4, seed=0)
    discriminator = models.dcgan_discriminator(width=4, seed=0)
    z = np.random.default_rng(0).standard_normal((3, 8, 1, 1)).astype(np.float32)
    with fastconv.use_backend("numpy"):
        images = generator(z)
        logits = discriminator(images)
    assert images.shape == (3, 1, 28, 28) and np.abs(images).max() < 1
    assert logits.shape == (3, 1)
    weights = np.concatenate([m.weight.data.ravel() for m in generator.modules()
                              if isinstance(m, nn.ConvTranspose2d)])
    assert weights.std() == pytest.approx(0.02, rel=0.1)
    with pytest.raises(ValueError, match="width"):
        models.dcgan_generator(width=0)


def test_zoo_model_learns_a_fixed_batch():
    """A few SGD steps of resnet20 fit a small separable batch (numba, float32)."""
    rng = np.random.default_rng(0)
    labels = np.arange(8) % 4
    x = 0.1 * rng.random((8, 1, 28, 28), dtype=np.float32)
    for i, label in enumerate(labels):
        x[i, 0, 7 * label: 7 * label + 7, :] += 1.0
    model = models.resnet20(num_classes=4, seed=0)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    with fastconv.use_backend("numba"):
        for _ in range(8):
            optimizer.zero_grad()
            losses.append(loss_fn(model(x), labels))
            model.backward(loss_fn.backward())
            optimizer.step()
    assert losses[-1] < 0.5 * losses[0], losses


# --------------------------------------------------------------------- PyTorch parity
def assert_close(ours, theirs, what, rtol=1e-9, scale=None):
    """Relative agreement, with an absolute floor of ``rtol * scale`` (default: the
    largest magnitude of ``theirs``) for entries that are rounding noise around 0."""
    theirs = np.asarray(theirs)
    scale = float(np.abs(theirs).max()) if scale is None else scale
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * scale, err_msg=what)


def copy_weights(ours: nn.Module, theirs) -> None:
    """Our state, in order, into the torch model's (without its batch counters)."""
    import torch

    target = [(k, v) for k, v in theirs.state_dict().items() if not k.endswith("num_batches_tracked")]
    source = list(ours.state_dict().items())
    assert [v.shape for _, v in source] == [tuple(v.shape) for _, v in target]
    with torch.no_grad():
        for (_, value), (_, tensor) in zip(source, target):
            tensor.copy_(torch.from_numpy(value))


def torch_pair(name: str, torch_zoo):
    """(ours, theirs, input, training target) for zoo model ``name``, float64."""
    rng = np.random.default_rng(1)
    if name == "dcgan-generator":
        ours = models.dcgan_generator(latent_dim=6, width=3, dtype=np.float64, seed=2)
        return ours, torch_zoo.dcgan_generator(6, 1, 3), rng.standard_normal((2, 6, 1, 1)), None
    if name == "dcgan-discriminator":
        ours = models.dcgan_discriminator(width=3, dtype=np.float64, seed=2)
        return ours, torch_zoo.dcgan_discriminator(1, 3), rng.random((3, 1, 28, 28)), rng.random((3, 1))
    theirs = {"resnet20": torch_zoo.ResNet20, "vgg11": torch_zoo.vgg11, "mobilenetv2": torch_zoo.MobileNetV2}[name]
    ours = models.build_model(name, num_classes=5, in_channels=2, dtype="float64", seed=2)
    size = 28 if name == "vgg11" else 32
    return ours, theirs(5, 2), rng.random((2, 2, size, size)), rng.integers(0, 5, 2)


def losses_for(name: str, torch):
    if name == "dcgan-generator":   # any scalar of the images: a fixed projection
        projection = np.random.default_rng(3).standard_normal((2, 1, 28, 28))

        class Projection(nn.Loss):
            def forward(self, outputs, labels):
                self._grad = projection / projection.size
                return float(np.sum(outputs * projection) / projection.size)

        return Projection(), lambda y, t: (y * torch.from_numpy(projection)).sum() / projection.size
    if name == "dcgan-discriminator":
        return nn.BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss()
    return nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()


@pytest.mark.parametrize("name", CLASSIFIERS + ["dcgan-generator", "dcgan-discriminator"])
def test_zoo_matches_pytorch(name):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    torch_zoo = pytest.importorskip("tests.torch_zoo")
    ours, theirs, x, target = torch_pair(name, torch_zoo)
    theirs = theirs.double()
    copy_weights(ours, theirs)
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    loss_fn, torch_loss = losses_for(name, torch)
    optimizer = SGD(ours.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    torch_optimizer = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x_t = torch.from_numpy(x)
    target_t = None if target is None else torch.from_numpy(target)
    with fastconv.use_backend("numpy"):
        for step in range(2):
            optimizer.zero_grad()
            torch_optimizer.zero_grad()
            outputs = ours(x)
            loss = loss_fn(outputs, target)
            ours.backward(loss_fn.backward())
            outputs_t = theirs(x_t)
            loss_t = torch_loss(outputs_t, target_t)
            loss_t.backward()
            assert_close(outputs, outputs_t.detach().numpy(), f"step {step} outputs")
            assert loss == pytest.approx(loss_t.item(), rel=1e-10)
            # a conv bias feeding batch norm has a gradient of exactly 0 up to rounding:
            # such entries are held to the scale of the largest gradient in the model
            largest = max(float(p.grad.abs().max()) for p in theirs.parameters())
            for (key, param), param_t in zip(ours.named_parameters(), theirs.parameters()):
                assert_close(param.grad, param_t.grad.numpy(), f"step {step} gradient of {key}", rtol=1e-8,
                             scale=max(largest * 1e-3, float(param_t.grad.abs().max())))
            optimizer.step()
            torch_optimizer.step()
        ours.eval()
        theirs.eval()
        assert_close(ours(x), theirs(x_t).detach().numpy(), "eval outputs after two steps", rtol=1e-8)
