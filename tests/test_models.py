"""`fastconv.models`: the reports' architectures, parameter counts, registry, and that
whole models backpropagate correctly and learn."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import models, nn
from fastconv.optim import SGD
from tests.test_nn import check_directional_derivatives, check_gradients, reseed


def conv_params(c_in, c_out, k, bias=True):
    return c_out * c_in * k * k + (c_out if bias else 0)


def linear_params(n_in, n_out):
    return n_in * n_out + n_out


def letters_param_count(batch_norm, num_classes=26):
    """Report 003's network counted layer by layer (each BN adds gamma and beta)."""
    convs = [(1, 32, 5), (32, 64, 5), (64, 64, 3), (64, 128, 3), (128, 128, 3)]
    total = sum(conv_params(*conv) for conv in convs)
    total += linear_params(128 * 8 * 8, 256) + linear_params(256, num_classes)
    if batch_norm:
        total += sum(2 * c_out for _, c_out, _ in convs) + 2 * 256
    return total


# --------------------------------------------------------------------- counts, shapes
def test_report000_parameter_counts():
    assert models.report000_cnn().num_parameters() == 4842
    assert nn.count_parameters(models.mlp1()) == 311650
    assert nn.count_parameters(models.mlp2()) == 386718
    # report 000's table, term by term
    assert 4842 == conv_params(1, 4, 5) + conv_params(4, 8, 5) + linear_params(392, 10)
    assert 386718 == linear_params(784, 392) + linear_params(392, 196) + linear_params(196, 10)


@pytest.mark.parametrize("name", ["cnn", "mlp1", "mlp2"])
def test_mnist_models_map_digits_to_ten_logits(backend, name):
    model = models.build_model(name)
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    y = model(x)
    assert y.shape == (3, 10) and y.dtype == np.float32
    grad_x = model.backward(np.ones_like(y))
    if name == "cnn":
        assert grad_x is None          # its first conv skips the gradient of the images
    else:
        assert grad_x.shape == x.shape


def test_report000_cnn_layout():
    model = models.report000_cnn()
    kinds = [type(layer).__name__ for layer in model]
    assert kinds == ["Conv2dReLUAvgPool", "Conv2dReLUAvgPool", "Flatten", "Linear"]
    assert model[0].weight.shape == (4, 1, 5, 5) and model[0].padding == (2, 2)
    assert not model[0].input_grad and model[1].input_grad
    assert model[1].weight.shape == (8, 4, 5, 5)
    assert model[3].weight.shape == (10, 392)


def test_report000_cnn_equals_its_unfused_form(backend):
    """Fusing conv+ReLU+pool and skipping the image gradient change nothing else."""
    fused = models.report000_cnn(dtype=np.float64, seed=3)
    conv1, conv2, linear = fused[0], fused[1], fused[3]
    plain = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2, dtype=np.float64), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Conv2d(4, 8, 5, padding=2, dtype=np.float64), nn.ReLU(), nn.AvgPool2d(2),
                          nn.Flatten(), nn.Linear(392, 10, dtype=np.float64))
    plain.load_state_dict({"layers.0.weight": conv1.weight.data, "layers.0.bias": conv1.bias.data,
                           "layers.3.weight": conv2.weight.data, "layers.3.bias": conv2.bias.data,
                           "layers.7.weight": linear.weight.data, "layers.7.bias": linear.bias.data})
    x = np.random.default_rng(0).random((4, 1, 28, 28))
    grad_y = np.random.default_rng(1).standard_normal((4, 10))
    np.testing.assert_allclose(fused.forward(x), plain.forward(x), rtol=1e-12, atol=1e-12)
    fused.zero_grad()
    plain.zero_grad()
    fused.backward(grad_y)
    plain.backward(grad_y)
    assert np.abs(fused[0].weight.grad).max() > 0
    for f, p in zip(fused.parameters(), plain.parameters()):
        np.testing.assert_allclose(f.grad, p.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "no-bn"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_letters_cnn_shape_and_count(backend, batch_norm, dropout):
    model = models.letters_cnn(batch_norm=batch_norm, dropout=dropout)
    assert model.num_parameters() == letters_param_count(batch_norm)
    x = np.random.default_rng(0).random((2, 1, 32, 32), dtype=np.float32)
    y = model(x)
    assert y.shape == (2, 26) and y.dtype == np.float32
    modules = model.modules()
    n_bn = sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in modules)
    dropouts = [m for m in modules if isinstance(m, nn.Dropout)]
    assert n_bn == (6 if batch_norm else 0)
    assert [d.p for d in dropouts] == ([0.3, 0.3] if dropout else [])
    assert sum(isinstance(m, nn.Residual) for m in modules) == 2


def test_letters_cnn_num_classes_and_bad_dropout():
    assert models.letters_cnn(num_classes=10).num_parameters() == letters_param_count(True, 10)
    with pytest.raises(ValueError, match="dropout"):
        models.letters_cnn(dropout=-0.1)


# --------------------------------------------------------------------- registry
def test_registry_rebuilds_the_same_model():
    for name in ("cnn", "mlp1", "mlp2", "letters-cnn"):
        assert name in models.MODELS
    config = dict(batch_norm=False, dropout=0.3, seed=7)
    first, second = models.build_model("letters-cnn", **config), models.build_model("letters-cnn", **config)
    assert list(first.state_dict()) == list(second.state_dict())
    for key, value in first.state_dict().items():
        np.testing.assert_array_equal(value, second.state_dict()[key], err_msg=key)
    other_seed = models.build_model("letters-cnn", **{**config, "seed": 8})
    assert not np.array_equal(first[0].weight.data, other_seed[0].weight.data)


def test_registry_dtype_and_errors():
    model = models.build_model("mlp2", dtype=np.float64)
    assert all(p.data.dtype == np.float64 for p in model.parameters())
    with pytest.raises(ValueError, match="valid models are: cnn, mlp1, mlp2, letters-cnn"):
        models.build_model("resnet")
    with pytest.raises(TypeError):
        models.build_model("cnn", batch_norm=True)       # not a parameter of report000_cnn


def test_default_losses():
    assert isinstance(models.default_loss("mlp2"), nn.EuclideanLoss)
    for name in ("cnn", "mlp1", "letters-cnn"):
        assert isinstance(models.default_loss(name), nn.SoftmaxCrossEntropyLoss)
    with pytest.raises(ValueError, match="unknown model"):
        models.default_loss("nope")


# --------------------------------------------------------------------- whole-model backprop
def test_report000_cnn_gradients(backend):
    model = models.report000_cnn(dtype=np.float64, seed=1)
    x = np.random.default_rng(2).random((2, 1, 28, 28))
    checked = check_gradients(model, x, samples_per_tensor=6)
    assert len(checked) == 6 and "input" not in checked        # first conv: input_grad=False
    assert check_directional_derivatives(model, x) == checked


def test_letters_cnn_gradients_in_training_mode():
    """The full report-003 network (BN in training mode, dropout, both residual blocks).

    To stay cheap (two forwards per checked tensor, ~0.1 s each on the NumPy backend)
    this runs on the current backend only and checks the input plus every conv/linear
    weight; biases, BN parameters and other backends are covered layer by layer in
    test_nn, and the input gradient already passes through every layer's backward."""
    model = models.letters_cnn(dropout=0.3, dtype=np.float64, seed=1)
    assert not model[0].input_grad
    model[0].input_grad = True            # so the check covers every layer's backward
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]

    def reseed_all():
        for index, layer in enumerate(dropouts):
            reseed(layer, seed=index)()

    x = np.random.default_rng(2).random((2, 1, 32, 32))
    weights = {f"{name}.weight" for name, module in model.named_modules()
               if isinstance(module, (nn.Conv2d, nn.Linear))}
    checked = check_directional_derivatives(model, x, before_forward=reseed_all,
                                            include=weights.__contains__)
    assert len(checked) == 1 + 7                 # input, conv/linear weights


def separable_digits(n=20):
    """A batch a small model can fit in a few steps: each class lights its own patch."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 10
    x = 0.1 * rng.random((n, 1, 28, 28), dtype=np.float32)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        x[i, 0, 2 + 12 * row: 10 + 12 * row, 1 + 5 * col: 5 + 5 * col] += 1.0
    return x, labels


@pytest.mark.parametrize("name", ["cnn", "mlp1", "mlp2"])
def test_models_learn_a_fixed_batch(backend, name):
    """Ten SGD steps (report 000's optimiser settings) fit a separable batch."""
    model = models.build_model(name, seed=0)
    loss_fn = models.default_loss(name)
    x, labels = separable_digits()
    opt = SGD(model.parameters(), lr=0.1, momentum=1e-4, weight_decay=2e-4)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        losses.append(loss_fn(model(x), labels))
        model.backward(loss_fn.backward())
        opt.step()
    assert losses[-1] < 0.25 * losses[0], losses
    assert np.mean(model(x).argmax(axis=1) == labels) == 1.0
