"""The layers mainstream CNNs need: adaptive pooling, activations, upsampling, the
branch containers and the losses.  Every backward against central differences
(float64, every backend), every forward against an independent computation, and
against PyTorch where it is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastconv import nn
from tests.test_nn import GRAD_TOL, check_gradients, numerical_gradient, random_input


def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is not installed")


def torch_forward_backward(torch_fn, x: np.ndarray, grad_y: np.ndarray):
    """``(y, grad_x)`` of a torch function at ``x`` for the output gradient ``grad_y``."""
    torch = torch_or_skip()
    x_t = torch.from_numpy(x.copy()).requires_grad_(True)
    y_t = torch_fn(x_t)
    y_t.backward(torch.from_numpy(grad_y))
    return y_t.detach().numpy(), x_t.grad.numpy()


# --------------------------------------------------------------------- adaptive pooling
def bins_by_formula(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's bins written from its definition, with float floor/ceil."""
    return [(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]


def adaptive_by_loops(x: np.ndarray, out: tuple[int, int], reduce) -> np.ndarray:
    n, c, height, width = x.shape
    y = np.empty((n, c, *out))
    for i, (top, bottom) in enumerate(bins_by_formula(height, out[0])):
        for j, (left, right) in enumerate(bins_by_formula(width, out[1])):
            y[:, :, i, j] = reduce(x[:, :, top:bottom, left:right], axis=(2, 3))
    return y


ADAPTIVE_CASES = [
    # (x shape, output_size, expected output (h, w), path the layer takes)
    ((1, 1, 7, 9), (3, 4), (3, 4), "bins"),           # overlapping bins
    ((2, 3, 8, 6), (4, 3), (4, 3), "kernel"),         # uniform bins: the pooling kernel
    ((2, 1, 5, 5), 1, (1, 1), "global"),
    ((1, 2, 3, 5), (5, 7), (5, 7), "bins"),           # more outputs than inputs
    ((3, 2, 6, 7), (None, 3), (6, 3), "bins"),        # None keeps the input's height
    ((1, 3, 9, 4), (3, 2), (3, 2), "kernel"),
]


@pytest.mark.parametrize("pool_cls, reduce", [(nn.AdaptiveAvgPool2d, np.mean), (nn.AdaptiveMaxPool2d, np.max)],
                         ids=["avg", "max"])
@pytest.mark.parametrize("shape, output_size, out_hw, path", ADAPTIVE_CASES)
def test_adaptive_pool_forward_and_gradients(backend, pool_cls, reduce, shape, output_size, out_hw, path):
    layer = pool_cls(output_size)
    x = random_input(shape)
    y = layer(x)
    assert layer._path == path
    assert y.shape == (*shape[:2], *out_hw) and y.dtype == x.dtype
    np.testing.assert_allclose(y, adaptive_by_loops(x, out_hw, reduce), rtol=1e-13, atol=1e-15)
    assert check_gradients(layer, x) == ["input"]


@pytest.mark.parametrize("pool_cls", [nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d], ids=["avg", "max"])
@pytest.mark.parametrize("shape, output_size, out_hw, path", ADAPTIVE_CASES)
def test_adaptive_pool_matches_torch(pool_cls, shape, output_size, out_hw, path):
    torch = torch_or_skip()
    layer = pool_cls(output_size)
    x = random_input(shape)
    grad_y = random_input((*shape[:2], *out_hw), seed=2)
    y, grad_x = layer(x), layer.backward(grad_y)
    torch_cls = getattr(torch.nn, pool_cls.__name__)
    y_t, grad_t = torch_forward_backward(torch_cls(output_size), x, grad_y)
    np.testing.assert_allclose(y, y_t, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grad_x, grad_t, rtol=1e-13, atol=1e-15)


def test_adaptive_max_pool_routes_ties_to_the_first_maximum(backend):
    x = np.zeros((1, 1, 3, 3), dtype=np.float32)      # all tied: the first of each bin wins
    layer = nn.AdaptiveMaxPool2d(2)                   # bins [0, 2) and [1, 3): overlapping
    layer(x)
    grad = layer.backward(np.ones((1, 1, 2, 2), dtype=np.float32))
    assert grad.dtype == np.float32
    np.testing.assert_array_equal(grad[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


def test_global_average_pooling_is_a_plain_mean_in_float32():
    x = np.random.default_rng(0).random((2, 5, 7, 3), dtype=np.float32)
    layer = nn.AdaptiveAvgPool2d((1, 1))
    y = layer(x)
    assert y.dtype == np.float32 and y.shape == (2, 5, 1, 1)
    np.testing.assert_allclose(y[:, :, 0, 0], x.mean(axis=(2, 3), dtype=np.float64), rtol=1e-6)
    grad = layer.backward(np.ones((2, 5, 1, 1), dtype=np.float32))
    assert grad.dtype == np.float32 and grad.flags.c_contiguous and grad.flags.writeable
    np.testing.assert_allclose(grad, np.full(x.shape, 1 / 21), rtol=1e-6)


# --------------------------------------------------------------------- activations
def test_sigmoid_gradients_and_values(backend):
    x = random_input((2, 3, 4, 5)) * 3
    layer = nn.Sigmoid()
    np.testing.assert_allclose(layer(x), 1 / (1 + np.exp(-x)), rtol=1e-14)
    assert check_gradients(layer, x) == ["input"]


def test_sigmoid_is_accurate_in_both_tails():
    x = np.array([-800.0, -40.0, -1.0, 0.0, 1.0, 40.0, 800.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # underflow to 0 is fine
        y = nn.Sigmoid()(x)
    np.testing.assert_allclose(y[1:-1], [math.exp(-40) / (1 + math.exp(-40)), 1 / (1 + math.e), 0.5,
                                         1 / (1 + math.exp(-1)), 1.0], rtol=1e-15)
    assert y[0] == 0.0 and y[-1] == 1.0


def test_tanh_gradients_and_values(backend):
    x = random_input((3, 7)) * 2
    layer = nn.Tanh()
    np.testing.assert_array_equal(layer(x), np.tanh(x))
    assert check_gradients(layer, x) == ["input"]


@pytest.mark.parametrize("slope", [0.01, 0.2, -0.5])
def test_leaky_relu_gradients(backend, slope):
    x = random_input((2, 3, 5, 4), away_from_zero=True)
    layer = nn.LeakyReLU(slope)
    np.testing.assert_array_equal(layer(x), np.where(x > 0, x, slope * x))
    assert check_gradients(layer, x) == ["input"]


def test_relu6_gradients(backend):
    x = random_input((2, 3, 6, 5), away_from_zero=True) * 5
    x[np.abs(x - 6) < 1e-3] += 0.01                # no kink within the difference step
    layer = nn.ReLU6()
    y = layer(x)
    assert (y == 0).any() and (y == 6).any() and ((y > 0) & (y < 6)).any()
    np.testing.assert_array_equal(y, np.minimum(np.maximum(x, 0), 6))
    assert check_gradients(layer, x) == ["input"]


@pytest.mark.parametrize("make, torch_name", [
    (lambda: nn.LeakyReLU(0.3), "LeakyReLU(0.3)"), (nn.ReLU6, "ReLU6()"), (nn.Sigmoid, "Sigmoid()"),
    (nn.Tanh, "Tanh()"), (nn.Identity, "Identity()")], ids=["leaky", "relu6", "sigmoid", "tanh", "identity"])
def test_activations_match_torch_including_the_kinks(make, torch_name):
    torch = torch_or_skip()
    x = np.concatenate([random_input((40,)) * 8, [0.0, 6.0, -0.0, 1e-300, -30.0, 30.0]]).reshape(2, 23)
    grad_y = random_input(x.shape, seed=3)
    layer = make()
    y, grad_x = layer(x), layer.backward(grad_y)
    y_t, grad_t = torch_forward_backward(eval(f"torch.nn.{torch_name}", {"torch": torch}), x, grad_y)
    np.testing.assert_allclose(y, y_t, rtol=1e-15, atol=1e-300)
    # 1 - y*y (tanh) and y*(1 - y) (sigmoid) carry y's rounding: absolute, not relative
    np.testing.assert_allclose(grad_x, grad_t, rtol=1e-15, atol=1e-15 * np.abs(grad_t).max())


def test_identity_passes_through_and_ignores_arguments():
    layer = nn.Identity(54, unused=0.1)
    x = random_input((2, 3))
    assert layer(x) is x and layer.backward(x) is x
    assert layer.num_parameters() == 0


def test_float32_stays_float32():
    x = random_input((2, 3, 4, 4)).astype(np.float32)
    for layer in (nn.Sigmoid(), nn.Tanh(), nn.LeakyReLU(), nn.ReLU6(), nn.Upsample(scale_factor=2),
                  nn.AdaptiveAvgPool2d(3), nn.AdaptiveMaxPool2d(3), nn.AdaptiveAvgPool2d(2)):
        y = layer(x)
        grad = layer.backward(np.ones_like(y))
        assert y.dtype == np.float32 and grad.dtype == np.float32, type(layer).__name__


# --------------------------------------------------------------------- upsampling
@pytest.mark.parametrize("shape, scale", [((1, 1, 3, 4), 2), ((2, 3, 2, 5), (3, 1)), ((1, 2, 1, 1), (2, 3))])
def test_upsample_gradients_and_values(backend, shape, scale):
    layer = nn.Upsample(scale_factor=scale)
    x = random_input(shape)
    sh, sw = (scale, scale) if isinstance(scale, int) else scale
    y = layer(x)
    np.testing.assert_array_equal(y, x.repeat(sh, axis=2).repeat(sw, axis=3))
    assert y.flags.c_contiguous
    assert check_gradients(layer, x) == ["input"]


def test_upsample_matches_torch():
    torch = torch_or_skip()
    x = random_input((2, 3, 3, 5))
    grad_y = random_input((2, 3, 6, 15), seed=4)
    layer = nn.Upsample(scale_factor=(2, 3))
    y, grad_x = layer(x), layer.backward(grad_y)
    y_t, grad_t = torch_forward_backward(torch.nn.Upsample(scale_factor=(2, 3), mode="nearest"), x, grad_y)
    np.testing.assert_array_equal(y, y_t)
    np.testing.assert_allclose(grad_x, grad_t, rtol=1e-13, atol=1e-15)    # sums of 6, another order


# --------------------------------------------------------------------- containers
def conv(c_in, c_out, k, stride=1, seed=0, **kw):
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, dtype=np.float64, rng=seed, **kw)


def test_residual_with_a_projection_shortcut_gradients(backend):
    body = nn.Sequential(conv(2, 3, 3, stride=2, seed=1), nn.BatchNorm2d(3, dtype=np.float64), nn.ReLU(),
                         conv(3, 3, 3, seed=2, bias=False))
    shortcut = nn.Sequential(conv(2, 3, 1, stride=2, seed=3, bias=False), nn.BatchNorm2d(3, dtype=np.float64))
    block = nn.Residual(body, shortcut)
    x = random_input((2, 2, 7, 5))
    y = block(x)
    assert y.shape == (2, 3, 4, 3)
    np.testing.assert_allclose(y, body(x) + shortcut(x), rtol=1e-14)
    checked = check_gradients(block, x)
    assert checked == ["input", "body.layers.0.weight", "body.layers.0.bias", "body.layers.1.weight",
                       "body.layers.1.bias", "body.layers.3.weight", "shortcut.layers.0.weight",
                       "shortcut.layers.1.weight", "shortcut.layers.1.bias"]


def test_residual_without_shortcut_keeps_its_state_names():
    block = nn.Residual(nn.Linear(3, 3, rng=0))
    assert block.shortcut is None
    assert list(block.state_dict()) == ["body.weight", "body.bias"]


def test_residual_shapes_must_agree():
    block = nn.Residual(conv(2, 3, 3, stride=2), conv(2, 3, 1))
    with pytest.raises(ValueError, match=r"body gives shape \(1, 3, 3, 3\) but the shortcut gives \(1, 3, 5, 5\)"):
        block(np.zeros((1, 2, 5, 5)))


def test_concat_gradients(backend):
    block = nn.Concat(conv(3, 2, 1, seed=1),
                      nn.Sequential(conv(3, 1, 3, seed=2), nn.ReLU()),
                      nn.MaxPool2d(3, stride=1, padding=1))
    x = random_input((2, 3, 5, 4), away_from_zero=True)
    y = block(x)
    assert y.shape == (2, 2 + 1 + 3, 5, 4)
    np.testing.assert_array_equal(y[:, :2], block.branches[0](x))
    np.testing.assert_array_equal(y[:, 3:], block.branches[2](x))
    checked = check_gradients(block, x)
    assert checked == ["input", "branches.0.weight", "branches.0.bias",
                       "branches.1.layers.0.weight", "branches.1.layers.0.bias"]


def test_add_gradients(backend):
    block = nn.Add(conv(2, 2, 3, seed=1), nn.Identity(), nn.Sequential(conv(2, 2, 1, seed=2), nn.Tanh()))
    x = random_input((1, 2, 4, 5))
    np.testing.assert_allclose(block(x), block.branches[0](x) + x + np.tanh(block.branches[2][0](x)),
                               rtol=1e-14)
    checked = check_gradients(block, x)
    assert checked == ["input", "branches.0.weight", "branches.0.bias",
                       "branches.2.layers.0.weight", "branches.2.layers.0.bias"]


def test_branches_must_fit_together():
    with pytest.raises(ValueError, match="axis 1"):
        nn.Concat(conv(2, 2, 3), conv(2, 2, 3, stride=2))(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match="must be equal"):
        nn.Add(conv(2, 2, 3), conv(2, 3, 3))(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match="at least one branch"):
        nn.Concat()
    with pytest.raises(TypeError, match="Add item 1 is a int"):
        nn.Add(nn.ReLU(), 3)
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Concat(nn.ReLU()).backward(np.zeros((1, 1)))


def test_a_branch_without_input_gradient_adds_nothing(backend):
    first = conv(2, 2, 3, seed=1, input_grad=False)
    block = nn.Add(first, nn.Identity())
    x = random_input((1, 2, 4, 4))
    block(x)
    grad_y = random_input((1, 2, 4, 4), seed=5)
    grad_x = block.backward(grad_y)
    np.testing.assert_array_equal(grad_x, grad_y)
    assert grad_x is not grad_y and first.weight.grad.any()
    alone = nn.Concat(conv(2, 2, 3, seed=1, input_grad=False))
    alone(x)
    assert alone.backward(grad_y) is None


# --------------------------------------------------------------------- losses
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("soft", [False, True], ids=["int", "soft"])
def test_cross_entropy_with_label_smoothing(backend, smoothing, soft):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 4)) * 2
    labels = np.array([0, 3, 1, 1, 2])
    targets = rng.dirichlet(np.ones(4), 5) if soft else labels
    loss_fn = nn.CrossEntropyLoss(label_smoothing=smoothing)
    loss = loss_fn(logits, targets)
    grad = loss_fn.backward()
    np.testing.assert_allclose(grad, numerical_gradient(lambda: loss_fn(logits, targets), logits), **GRAD_TOL)
    dense = targets if soft else np.eye(4)[labels]
    smoothed = (1 - smoothing) * dense + smoothing / 4
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert loss == pytest.approx(-np.mean(np.sum(smoothed * log_probs, axis=1)), rel=1e-13)
    assert isinstance(loss_fn, nn.SoftmaxCrossEntropyLoss)


@pytest.mark.parametrize("soft", [False, True], ids=["int", "soft"])
def test_cross_entropy_matches_torch(soft):
    torch = torch_or_skip()
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((6, 5)) * 3
    targets = rng.dirichlet(np.ones(5), 6) if soft else rng.integers(0, 5, 6)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.15)
    loss = loss_fn(logits, targets)
    logits_t = torch.from_numpy(logits.copy()).requires_grad_(True)
    loss_t = torch.nn.CrossEntropyLoss(label_smoothing=0.15)(logits_t, torch.from_numpy(targets))
    loss_t.backward()
    assert loss == pytest.approx(loss_t.item(), rel=1e-13)
    np.testing.assert_allclose(loss_fn.backward(), logits_t.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_cross_entropy_without_smoothing_is_the_softmax_loss(backend):
    logits = random_input((4, 3)).astype(np.float32)
    labels = np.array([2, 0, 1, 2])
    plain, pytorch_named = nn.SoftmaxCrossEntropyLoss(), nn.CrossEntropyLoss()
    assert plain(logits, labels) == pytorch_named(logits, labels)
    np.testing.assert_array_equal(plain.backward(), pytorch_named.backward())
    assert repr(nn.CrossEntropyLoss(label_smoothing=0.1)) == "CrossEntropyLoss(label_smoothing=0.1)"


def test_bce_with_logits(backend):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 1)) * 3
    targets = rng.random((6, 1))
    loss_fn = nn.BCEWithLogitsLoss()
    loss = loss_fn(logits, targets)
    probabilities = 1 / (1 + np.exp(-logits))
    expected = -np.mean(targets * np.log(probabilities) + (1 - targets) * np.log(1 - probabilities))
    assert loss == pytest.approx(expected, rel=1e-13)
    np.testing.assert_allclose(loss_fn.backward(), numerical_gradient(lambda: loss_fn(logits, targets), logits),
                               **GRAD_TOL)
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # underflow to 0 is fine
        assert loss_fn(np.array([[-1000.0], [1000.0]]), np.array([[0.0], [1.0]])) == 0.0
    with pytest.raises(ValueError, match="shape"):
        loss_fn(logits, targets[:3])


def test_bce_with_logits_matches_torch():
    torch = torch_or_skip()
    rng = np.random.default_rng(3)
    logits, targets = rng.standard_normal((4, 3)) * 4, rng.random((4, 3))
    loss_fn = nn.BCEWithLogitsLoss()
    loss = loss_fn(logits, targets)
    logits_t = torch.from_numpy(logits.copy()).requires_grad_(True)
    loss_t = torch.nn.BCEWithLogitsLoss()(logits_t, torch.from_numpy(targets))
    loss_t.backward()
    assert loss == pytest.approx(loss_t.item(), rel=1e-13)
    np.testing.assert_allclose(loss_fn.backward(), logits_t.grad.numpy(), rtol=1e-13)


# --------------------------------------------------------------------- constructor arguments
@pytest.mark.parametrize("build, error, argument", [
    (lambda: nn.AdaptiveAvgPool2d(0), ValueError, "output_size"),
    (lambda: nn.AdaptiveMaxPool2d((2, 2, 2)), TypeError, "output_size"),
    (lambda: nn.AdaptiveAvgPool2d(1.5), TypeError, "output_size"),
    (lambda: nn.AdaptiveMaxPool2d((2, -1)), ValueError, "output_size"),
    (lambda: nn.LeakyReLU("0.1"), TypeError, "negative_slope"),
    (lambda: nn.LeakyReLU(float("nan")), ValueError, "negative_slope"),
    (lambda: nn.Upsample(scale_factor=1.5), ValueError, "scale_factor"),
    (lambda: nn.Upsample(scale_factor=0), ValueError, "scale_factor"),
    (lambda: nn.Upsample(scale_factor=float("inf")), ValueError, "scale_factor"),
    (lambda: nn.Upsample(scale_factor="2"), TypeError, "scale_factor"),
    (lambda: nn.Upsample(scale_factor=2, mode="bilinear"), ValueError, "mode"),
    (lambda: nn.Upsample(2), TypeError, "positional"),
    (lambda: nn.CrossEntropyLoss(label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda: nn.CrossEntropyLoss(label_smoothing="0.1"), TypeError, "label_smoothing"),
    (lambda: nn.Residual(nn.ReLU(), shortcut="conv"), TypeError, "shortcut"),
    (lambda: nn.Residual(None), TypeError, "body"),
    (lambda: nn.ModuleList([nn.ReLU(), 3]), TypeError, "ModuleList item 1"),
])
def test_bad_constructor_arguments_are_one_line_errors(build, error, argument):
    with pytest.raises(error, match=argument) as caught:
        build()
    assert "\n" not in str(caught.value)


def test_layers_reject_inputs_of_the_wrong_rank():
    for layer in (nn.AdaptiveAvgPool2d(2), nn.AdaptiveMaxPool2d(2), nn.Upsample(scale_factor=2)):
        with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
            layer(np.zeros((2, 3, 4)))
