"""`fastconv.nn`: every layer's backward against central differences (float64, on every
backend), BN/Dropout semantics, PyTorch agreement, and the Module bookkeeping."""

from __future__ import annotations

import io

import numpy as np
import pytest

from fastconv import nn

EPS = 1e-6
GRAD_TOL = dict(rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------- helpers
def numerical_gradient(f, array: np.ndarray, indices=None) -> np.ndarray:
    """Central differences of the scalar ``f()`` w.r.t. ``array`` (perturbed in place).
    Only the flat ``indices`` are computed when given; the rest stay 0."""
    grad = np.zeros_like(array)
    flat = array.reshape(-1)
    assert np.shares_memory(flat, array)
    for i in range(flat.size) if indices is None else indices:
        original = flat[i]
        flat[i] = original + EPS
        plus = f()
        flat[i] = original - EPS
        minus = f()
        flat[i] = original
        grad.flat[i] = (plus - minus) / (2 * EPS)
    return grad


def check_gradients(module, x, before_forward=None, samples_per_tensor=None, seed=0, atol=None):
    """Compare ``module.backward`` with central differences of ``sum(forward(x) * r)``
    for a fixed random ``r``: the input gradient (unless backward returns None) and
    every parameter's ``.grad``.

    ``before_forward`` runs before every forward (to reseed dropout so each forward
    draws the same mask).  With ``samples_per_tensor`` only that many random entries
    per tensor are differenced (for whole models), and ``atol`` may be raised above
    the per-layer default for deep models, whose loss carries more rounding noise
    into the differences.  Returns the names checked.
    """
    tolerance = dict(GRAD_TOL, **({} if atol is None else {"atol": atol}))
    rng = np.random.default_rng(seed)

    def forward():
        if before_forward is not None:
            before_forward()
        return module.forward(x)

    weight = rng.standard_normal(forward().shape)

    def loss() -> float:
        return float(np.sum(forward() * weight))

    module.zero_grad()
    forward()
    grad_x = module.backward(weight.copy())
    inputs = [] if grad_x is None else [("input", x, grad_x)]   # None: input_grad=False
    assert grad_x is None or (grad_x.shape == x.shape and grad_x.dtype == x.dtype)

    def sample(array):
        if samples_per_tensor is None or array.size <= samples_per_tensor:
            return None
        return rng.choice(array.size, samples_per_tensor, replace=False)

    checked = []
    for name, array, analytic in inputs + [
        (name, param.data, param.grad.copy()) for name, param in module.named_parameters()
    ]:
        indices = sample(array)
        numeric = numerical_gradient(loss, array, indices)
        if indices is not None:
            analytic = analytic.reshape(-1)[indices]
            numeric = numeric.reshape(-1)[indices]
        np.testing.assert_allclose(analytic, numeric, err_msg=f"gradient of {name}", **tolerance)
        checked.append(name)
    return checked


def check_directional_derivatives(module, x, before_forward=None, seed=0, eps=1e-7,
                                  rtol=1e-5, atol=1e-4, include=lambda name: True):
    """Cheaper check for whole models: for each tensor (input, every parameter) pick a
    random direction ``v`` and compare ``<grad, v>`` with the central difference of
    ``sum(forward(x) * r)`` along ``v``: two forwards per tensor whatever its size.

    Moving every entry at once makes some ReLU/max-pool unit of a big model cross its
    kink unless the step is tiny (on the letters CNN the error is ~1e-6 relative at
    eps = 1e-7 and ~1e-1 at 1e-4), while rounding noise grows as ~1e-13 / eps (~1e-6
    absolute at 1e-7, on derivatives that are truly 0 such as conv biases feeding BN).
    Hence these looser tolerances than the per-layer check's: they still catch any
    wiring error, which shows up at O(1).  ``include(name)`` picks the parameters
    checked (the input always is).  Returns the names checked."""
    rng = np.random.default_rng(seed)

    def loss() -> float:
        if before_forward is not None:
            before_forward()
        return float(np.sum(module.forward(x) * weight))

    if before_forward is not None:
        before_forward()
    weight = rng.standard_normal(module.forward(x).shape)
    module.zero_grad()
    loss()
    grad_x = module.backward(weight.copy())
    inputs = [] if grad_x is None else [("input", x, grad_x)]
    checked = []
    for name, array, analytic in inputs + [
        (name, param.data, param.grad.copy()) for name, param in module.named_parameters()
        if include(name)
    ]:
        direction = rng.standard_normal(array.shape)
        original = array.copy()
        array += eps * direction
        plus = loss()
        array[...] = original - eps * direction
        minus = loss()
        array[...] = original
        numeric = (plus - minus) / (2 * eps)
        expected = float(np.vdot(analytic, direction))
        assert expected == pytest.approx(numeric, rel=rtol, abs=atol), f"gradient of {name}"
        checked.append(name)
    return checked


def random_input(shape, seed=1, away_from_zero=False):
    x = np.random.default_rng(seed).standard_normal(shape)
    if away_from_zero:
        # keep ReLU kinks further than EPS from every input
        x[np.abs(x) < 1e-3] += 0.01
    return x


def reseed(layer: nn.Dropout, seed: int = 123):
    def before_forward():
        layer.rng = np.random.default_rng(seed)
    return before_forward


# --------------------------------------------------------------------- gradients
CONV_CASES = [
    # (x shape, out_channels, kernel, stride, padding, bias)
    ((1, 1, 7, 9), 2, (3, 2), (2, 3), (1, 0), True),
    ((2, 3, 7, 5), 2, 3, 2, 1, False),
    ((3, 2, 5, 8), 3, (2, 3), 3, (0, 2), True),
    ((2, 1, 5, 5), 1, 5, 1, 2, True),
]


@pytest.mark.parametrize("shape, c_out, kernel, stride, padding, bias", CONV_CASES)
def test_conv2d_gradients(backend, shape, c_out, kernel, stride, padding, bias):
    layer = nn.Conv2d(shape[1], c_out, kernel, stride, padding, bias=bias, dtype=np.float64, rng=0)
    checked = check_gradients(layer, random_input(shape))
    assert checked == (["input", "weight", "bias"] if bias else ["input", "weight"])


@pytest.mark.parametrize("shape, c_out, kernel, stride, padding, bias", CONV_CASES)
def test_conv2d_relu_gradients(backend, shape, c_out, kernel, stride, padding, bias):
    layer = nn.Conv2dReLU(shape[1], c_out, kernel, stride, padding, bias=bias, dtype=np.float64, rng=0)
    x = random_input(shape)
    y = layer.forward(x)
    assert (y == 0).any() and (y > 0).any()
    # a ReLU kink closer than the difference step would make the check meaningless
    assert np.abs(nn.Conv2d.forward(layer, x)).min() > 1e-5
    checked = check_gradients(layer, x)
    assert checked == (["input", "weight", "bias"] if bias else ["input", "weight"])


@pytest.mark.parametrize("shape, c_out, kernel, stride, padding, bias", CONV_CASES)
def test_conv2d_relu_avgpool_gradients(backend, shape, c_out, kernel, stride, padding, bias):
    layer = nn.Conv2dReLUAvgPool(shape[1], c_out, kernel, stride, padding, bias=bias,
                                 dtype=np.float64, rng=0)
    x = random_input(shape)
    pooled = layer.forward(x)
    relu = layer.relu_output
    assert pooled.shape == (*relu.shape[:2], relu.shape[2] // 2, relu.shape[3] // 2)
    assert (relu == 0).any() and (relu > 0).any()
    assert np.abs(nn.Conv2d.forward(layer, x)).min() > 1e-5     # no ReLU kink within EPS
    checked = check_gradients(layer, x)
    assert checked == (["input", "weight", "bias"] if bias else ["input", "weight"])


@pytest.mark.parametrize("layer_type", [nn.Conv2d, nn.Conv2dReLU, nn.Conv2dReLUAvgPool],
                         ids=["conv", "conv-relu", "conv-relu-pool"])
def test_conv2d_without_input_grad_gives_the_same_weight_grads(backend, layer_type):
    full = layer_type(3, 4, (3, 2), stride=2, padding=1, dtype=np.float64, rng=0)
    first = layer_type(3, 4, (3, 2), stride=2, padding=1, input_grad=False, dtype=np.float64, rng=0)
    x = random_input((2, 3, 7, 6))
    grad_y = np.random.default_rng(5).standard_normal(full.forward(x).shape)
    first.forward(x)
    assert first.backward(grad_y) is None
    assert full.backward(grad_y).shape == x.shape
    assert np.abs(first.weight.grad).max() > 0
    for a, b in zip(first.parameters(), full.parameters()):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-12, atol=1e-14)
    assert "input_grad=False" in repr(first)


def test_first_layer_without_input_grad_must_be_first():
    model = nn.Sequential(nn.ReLU(), nn.Conv2d(1, 1, 1, input_grad=False, dtype=np.float64))
    model.forward(np.ones((1, 1, 2, 2)))
    with pytest.raises(RuntimeError, match="Conv2d returned no input gradient"):
        model.backward(np.ones((1, 1, 2, 2)))


@pytest.mark.parametrize("n, n_in, n_out, bias", [(1, 5, 3, True), (4, 7, 2, False), (3, 1, 1, True)])
def test_linear_gradients(backend, n, n_in, n_out, bias):
    layer = nn.Linear(n_in, n_out, bias=bias, dtype=np.float64, rng=0)
    checked = check_gradients(layer, random_input((n, n_in)))
    assert checked == (["input", "weight", "bias"] if bias else ["input", "weight"])


def test_relu_gradients(backend):
    x = random_input((2, 3, 5, 3), away_from_zero=True)
    assert check_gradients(nn.ReLU(), x) == ["input"]
    np.testing.assert_array_equal(nn.ReLU()(x), np.maximum(x, 0))


def test_relu_gradient_at_zero_is_zero():
    layer = nn.ReLU()
    layer(np.array([[-1.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(layer.backward(np.ones((1, 3))), [[0.0, 0.0, 1.0]])


POOL_CASES = [
    # (x shape, kernel, stride, padding)
    ((1, 1, 7, 9), 3, 2, 1),
    ((2, 3, 7, 8), (2, 3), (3, 2), (1, 0)),
    ((2, 2, 6, 6), 2, None, 0),
    ((1, 2, 5, 7), (3, 1), 1, (1, 0)),
]


@pytest.mark.parametrize("pool_cls", [nn.AvgPool2d, nn.MaxPool2d])
@pytest.mark.parametrize("shape, kernel, stride, padding", POOL_CASES)
def test_pool_gradients(backend, pool_cls, shape, kernel, stride, padding):
    layer = pool_cls(kernel, stride, padding)
    assert check_gradients(layer, random_input(shape)) == ["input"]


def test_max_pool_routes_gradient_to_the_maximum(backend):
    x = np.array([[[[1.0, 5.0], [3.0, 2.0]]]])
    layer = nn.MaxPool2d(2)
    np.testing.assert_array_equal(layer(x), [[[[5.0]]]])
    np.testing.assert_array_equal(layer.backward(np.full((1, 1, 1, 1), 7.0)),
                                  [[[[0.0, 7.0], [0.0, 0.0]]]])


@pytest.mark.parametrize("bn_cls, shape", [
    (nn.BatchNorm2d, (3, 2, 3, 5)),
    (nn.BatchNorm2d, (1, 3, 2, 3)),          # N = 1: statistics over H*W only
    (nn.BatchNorm1d, (5, 3)),
    (nn.BatchNorm1d, (2, 4, 3)),             # (N, C, L)
])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm_gradients(backend, bn_cls, shape, training):
    layer = bn_cls(shape[1], dtype=np.float64)
    rng = np.random.default_rng(5)
    # non-trivial affine parameters and running statistics
    layer.weight.data[:] = rng.uniform(0.5, 2.0, shape[1])
    layer.bias.data[:] = rng.standard_normal(shape[1])
    layer.running_mean[:] = rng.standard_normal(shape[1])
    layer.running_var[:] = rng.uniform(0.5, 2.0, shape[1])
    layer.train(training)
    x = random_input(shape) * 3.0 + 1.0
    assert check_gradients(layer, x) == ["input", "weight", "bias"]


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_dropout_gradients_with_a_fixed_mask(backend, p):
    layer = nn.Dropout(p)
    x = random_input((3, 4, 5))
    assert check_gradients(layer, x, before_forward=reseed(layer)) == ["input"]
    assert 0 < np.count_nonzero(layer.mask == 0) < layer.mask.size


def test_dropout_backward_uses_the_recorded_mask():
    layer = nn.Dropout(0.4, rng=7)
    x = random_input((50, 40)) + 10.0           # no zeros, so y/x recovers the mask
    y = layer(x)
    scale = 1 / (1 - 0.4)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] * scale, rtol=1e-12)
    np.testing.assert_array_equal(layer.mask, kept * scale)
    grad_y = random_input(x.shape, seed=3)
    np.testing.assert_allclose(layer.backward(grad_y), grad_y * kept * scale, rtol=1e-12)
    assert abs(1 - kept.mean() - 0.4) < 0.05    # about p of the elements dropped


def test_dropout_is_identity_in_eval_and_at_p0():
    x = random_input((4, 6))
    grad = random_input((4, 6), seed=2)
    for layer in (nn.Dropout(0.5, rng=0).eval(), nn.Dropout(0.0, rng=0)):
        assert layer(x) is x
        assert layer.backward(grad) is grad


def test_dropout_p1_drops_everything():
    layer = nn.Dropout(1.0, rng=0)
    y = layer(np.ones((3, 4), dtype=np.float32))
    assert y.dtype == np.float32 and not y.any()
    assert not layer.backward(np.ones((3, 4), dtype=np.float32)).any()


def test_dropout_masks_are_seeded():
    x = np.ones((8, 8))
    masks = [nn.Dropout(0.5, rng=11)(x) for _ in range(2)]
    np.testing.assert_array_equal(masks[0], masks[1])
    layer = nn.Dropout(0.5, rng=11)
    assert not np.array_equal(layer(x), layer(x))   # a fresh mask on every forward


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5"])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match="p"):
        nn.Dropout(p)


def test_flatten_gradients():
    layer = nn.Flatten()
    x = random_input((2, 3, 4, 5))
    assert layer(x).shape == (2, 60)
    assert check_gradients(layer, x) == ["input"]


def test_sequential_gradients(backend):
    model = nn.Sequential(
        nn.Conv2d(2, 3, (3, 2), stride=2, padding=1, dtype=np.float64, rng=1),
        nn.BatchNorm2d(3, dtype=np.float64),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=1),
        nn.AvgPool2d((1, 2)),
        nn.Flatten(),
        nn.Linear(3 * 3 * 1, 4, dtype=np.float64, rng=2),
    )
    x = random_input((3, 2, 7, 5))
    assert model(x).shape == (3, 4)
    checked = check_gradients(model, x)
    assert checked == ["input", "layers.0.weight", "layers.0.bias", "layers.1.weight",
                       "layers.1.bias", "layers.6.weight", "layers.6.bias"]


def test_residual_gradients(backend):
    dropout = nn.Dropout(0.25)
    body = nn.Sequential(
        nn.Conv2d(2, 2, 3, padding=1, dtype=np.float64, rng=3),
        nn.BatchNorm2d(2, dtype=np.float64),
        nn.ReLU(),
        dropout,
    )
    block = nn.Residual(body)
    x = random_input((2, 2, 5, 4))
    checked = check_gradients(block, x, before_forward=reseed(dropout))
    assert checked == ["input", "body.layers.0.weight", "body.layers.0.bias",
                       "body.layers.1.weight", "body.layers.1.bias"]


def test_residual_adds_the_shortcut():
    block = nn.Residual(nn.ReLU())
    x = random_input((2, 3))
    np.testing.assert_array_equal(block(x), np.maximum(x, 0) + x)
    grad = random_input((2, 3), seed=4)
    np.testing.assert_array_equal(block.backward(grad), grad * (x > 0) + grad)


def test_residual_rejects_a_shape_changing_body():
    block = nn.Residual(nn.Flatten())
    with pytest.raises(ValueError, match="shape"):
        block(np.zeros((2, 3, 4)))


# --------------------------------------------------------------------- losses
@pytest.mark.parametrize("one_hot", [False, True], ids=["int", "one-hot"])
def test_softmax_cross_entropy_gradients(backend, one_hot):
    logits = random_input((5, 4)) * 2
    labels = np.array([0, 3, 1, 1, 2])
    if one_hot:
        labels = np.eye(4)[labels]
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    loss = loss_fn(logits, labels)
    grad = loss_fn.backward()
    assert isinstance(loss, float) and grad.shape == logits.shape
    np.testing.assert_allclose(grad, numerical_gradient(lambda: loss_fn(logits, labels), logits),
                               **GRAD_TOL)
    # hand computation of the mean negative log-likelihood
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean(log_probs[np.arange(5), [0, 3, 1, 1, 2]])
    assert loss == pytest.approx(expected, rel=1e-12)


def test_softmax_cross_entropy_of_uniform_logits_is_log_k(backend):
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    assert loss_fn(np.zeros((3, 4), dtype=np.float32), np.array([0, 1, 2])) == pytest.approx(np.log(4), rel=1e-6)
    assert loss_fn.backward().dtype == np.float32


@pytest.mark.parametrize("one_hot", [False, True], ids=["int", "targets"])
def test_euclidean_loss_gradients(one_hot):
    outputs = random_input((4, 3))
    labels = np.array([2, 0, 1, 2])
    targets = np.eye(3)[labels] if one_hot else labels
    loss_fn = nn.EuclideanLoss()
    loss_fn(outputs, targets)
    grad = loss_fn.backward()
    np.testing.assert_allclose(grad, numerical_gradient(lambda: loss_fn(outputs, targets), outputs),
                               **GRAD_TOL)


def test_euclidean_loss_by_hand():
    loss_fn = nn.EuclideanLoss()
    outputs = np.array([[1.0, 2.0], [0.0, 0.0]], dtype=np.float32)
    # one-hot targets [[0, 1], [1, 0]]: diff [[1, 1], [-1, 0]], 0.5 * 3 / 2
    assert loss_fn(outputs, np.array([1, 0])) == pytest.approx(0.75)
    grad = loss_fn.backward()
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, [[0.5, 0.5], [-0.5, 0.0]])


def test_euclidean_loss_rejects_bad_labels():
    loss_fn = nn.EuclideanLoss()
    with pytest.raises(ValueError, match="labels"):
        loss_fn(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="shape"):
        loss_fn(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(TypeError, match="integer"):
        loss_fn(np.zeros((2, 3)), np.array([0.0, 1.0]))


def test_loss_backward_before_forward_raises():
    with pytest.raises(RuntimeError, match="before forward"):
        nn.SoftmaxCrossEntropyLoss().backward()


# --------------------------------------------------------------------- batch norm
def test_batchnorm2d_running_stats_and_eval_by_hand():
    layer = nn.BatchNorm2d(2, eps=1e-5, momentum=0.1, dtype=np.float64)
    layer.weight.data[:] = [2.0, 0.5]
    layer.bias.data[:] = [1.0, -1.0]
    batches = [random_input((3, 2, 2, 2), seed=s) * (s + 1) for s in range(2)]
    running_mean, running_var = np.zeros(2), np.ones(2)
    for x in batches:
        y = layer(x)
        values = x.transpose(1, 0, 2, 3).reshape(2, -1)       # per channel
        mean = values.mean(axis=1)
        biased_var = ((values - mean[:, None]) ** 2).sum(axis=1) / values.shape[1]
        unbiased_var = ((values - mean[:, None]) ** 2).sum(axis=1) / (values.shape[1] - 1)
        expected = ((x - mean[None, :, None, None]) / np.sqrt(biased_var[None, :, None, None] + 1e-5)
                    * np.array([2.0, 0.5])[None, :, None, None] + np.array([1.0, -1.0])[None, :, None, None])
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
        running_mean = 0.9 * running_mean + 0.1 * mean
        running_var = 0.9 * running_var + 0.1 * unbiased_var
        np.testing.assert_allclose(layer.running_mean, running_mean, rtol=1e-12)
        np.testing.assert_allclose(layer.running_var, running_var, rtol=1e-12)

    layer.eval()
    x = random_input((2, 2, 3, 1), seed=9)
    expected = ((x - running_mean[None, :, None, None]) / np.sqrt(running_var[None, :, None, None] + 1e-5)
                * np.array([2.0, 0.5])[None, :, None, None] + np.array([1.0, -1.0])[None, :, None, None])
    np.testing.assert_allclose(layer(x), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.running_mean, running_mean, rtol=1e-12)   # eval: no update


def test_batchnorm_training_needs_two_values_per_channel():
    layer = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="more than 1 value"):
        layer(np.zeros((1, 3), dtype=np.float32))
    assert layer.eval()(np.zeros((1, 3), dtype=np.float32)).shape == (1, 3)


def test_batchnorm_rejects_wrong_channels_and_dtype():
    with pytest.raises(ValueError, match="3 channels"):
        nn.BatchNorm2d(3)(np.zeros((2, 1, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="rank"):
        nn.BatchNorm1d(3)(np.zeros((2, 3, 4, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="float64"):
        nn.BatchNorm2d(3)(np.zeros((2, 3, 4, 4)))


# --------------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm_matches_torch(dims, training):
    torch = pytest.importorskip("torch")
    shape = (4, 3) if dims == 1 else (4, 3, 5, 2)
    ours = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(3, eps=1e-3, momentum=0.2, dtype=np.float64)
    theirs = (torch.nn.BatchNorm1d if dims == 1 else torch.nn.BatchNorm2d)(3, eps=1e-3, momentum=0.2).double()
    rng = np.random.default_rng(0)
    gamma, beta = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    ours.weight.data[:] = gamma
    ours.bias.data[:] = beta
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(gamma))
        theirs.bias.copy_(torch.from_numpy(beta))
    for step in range(3):   # a few steps so the running statistics move
        ours.train(training)
        theirs.train(training)
        x = rng.standard_normal(shape) * 2 + step
        grad_y = rng.standard_normal(shape)
        ours.zero_grad()
        y = ours(x)
        grad_x = ours.backward(grad_y)
        x_t = torch.from_numpy(x.copy()).requires_grad_(True)
        theirs.zero_grad()
        y_t = theirs(x_t)
        y_t.backward(torch.from_numpy(grad_y))
        np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grad_x, x_t.grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)


def test_conv_and_linear_match_torch(backend):
    torch = pytest.importorskip("torch")
    conv = nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), dtype=np.float64, rng=0)
    linear = nn.Linear(3 * 4 * 4, 5, dtype=np.float64, rng=1)
    conv.bias.data[:] = [0.1, -0.2, 0.3]
    linear.bias.data[:] = np.linspace(-1, 1, 5)
    model = nn.Sequential(conv, nn.Flatten(), linear)
    x = random_input((2, 2, 7, 5))
    grad_y = random_input((2, 5), seed=2)
    y = model(x)
    grad_x = model.backward(grad_y)

    t_conv = torch.nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0)).double()
    t_linear = torch.nn.Linear(48, 5).double()
    with torch.no_grad():
        for module, ours in ((t_conv, conv), (t_linear, linear)):
            module.weight.copy_(torch.from_numpy(ours.weight.data))
            module.bias.copy_(torch.from_numpy(ours.bias.data))
    x_t = torch.from_numpy(x.copy()).requires_grad_(True)
    y_t = t_linear(t_conv(x_t).flatten(1))
    y_t.backward(torch.from_numpy(grad_y))
    tol = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, y_t.detach().numpy(), **tol)
    np.testing.assert_allclose(grad_x, x_t.grad.numpy(), **tol)
    for module, ours in ((t_conv, conv), (t_linear, linear)):
        np.testing.assert_allclose(ours.weight.grad, module.weight.grad.numpy(), **tol)
        np.testing.assert_allclose(ours.bias.grad, module.bias.grad.numpy(), **tol)


# --------------------------------------------------------------------- Module API
def small_net(dtype=np.float32, seed=0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, dtype=dtype, rng=seed),
        nn.BatchNorm2d(2, dtype=dtype),
        nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, bias=False, dtype=dtype, rng=seed + 1),
                                  nn.Dropout(0.5, rng=seed))),
        nn.Flatten(),
        nn.Linear(2 * 4 * 4, 3, dtype=dtype, rng=seed + 2),
        nn.BatchNorm1d(3, dtype=dtype),
    )


def test_names_and_order_of_parameters_and_state():
    model = small_net()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
                     "layers.3.body.layers.0.weight", "layers.5.weight", "layers.5.bias",
                     "layers.6.weight", "layers.6.bias"]
    assert [p.name for p in model.parameters()] == [n.rsplit(".", 1)[1] for n in names]
    assert list(model.state_dict()) == [
        "layers.0.weight", "layers.0.bias",
        "layers.1.weight", "layers.1.bias", "layers.1.running_mean", "layers.1.running_var",
        "layers.3.body.layers.0.weight", "layers.5.weight", "layers.5.bias",
        "layers.6.weight", "layers.6.bias", "layers.6.running_mean", "layers.6.running_var",
    ]
    assert [name for name, _ in model.named_buffers()] == [
        "layers.1.running_mean", "layers.1.running_var", "layers.6.running_mean", "layers.6.running_var"]


def test_parameter_counts():
    model = small_net()
    expected = (2 * 9 + 2) + (2 + 2) + (2 * 2 * 9) + (32 * 3 + 3) + (3 + 3)
    assert model.num_parameters() == nn.count_parameters(model) == expected
    assert nn.count_parameters(nn.ReLU()) == 0


def test_shared_parameters_are_listed_once():
    layer = nn.Linear(3, 3, rng=0)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    assert len(model.parameters()) == 2
    assert list(model.state_dict()) == ["layers.0.weight", "layers.0.bias",
                                        "layers.2.weight", "layers.2.bias"]


def test_parameter_grad_is_zero_initialised_and_matches():
    param = nn.Parameter(np.arange(6.0).reshape(2, 3), name="w")
    assert param.grad.shape == param.data.shape and param.grad.dtype == param.data.dtype
    assert not param.grad.any() and param.name == "w"


def test_backward_accumulates_and_zero_grad_resets(backend):
    layer = nn.Conv2d(2, 3, 3, dtype=np.float64, rng=0)
    x = random_input((2, 2, 5, 5))
    grad_y = random_input((2, 3, 3, 3), seed=2)
    layer(x)
    layer.backward(grad_y)
    once = layer.weight.grad.copy(), layer.bias.grad.copy()
    layer(x)
    layer.backward(grad_y)
    np.testing.assert_allclose(layer.weight.grad, 2 * once[0], rtol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, 2 * once[1], rtol=1e-12)
    layer.zero_grad()
    assert not layer.weight.grad.any() and not layer.bias.grad.any()


def test_state_dict_round_trip_through_npz():
    source = small_net(seed=0)
    x = random_input((4, 1, 4, 4)).astype(np.float32)
    source(x)                                         # move the BN running statistics
    target = small_net(seed=10).eval()
    source.eval()
    assert not np.allclose(source(x), target(x))
    buffer = io.BytesIO()
    np.savez(buffer, **source.state_dict())
    buffer.seek(0)
    with np.load(buffer) as archive:
        target.load_state_dict(archive)
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(source(x), target(x))


def test_state_dict_holds_copies():
    model = small_net()
    state = model.state_dict()
    model.layers[0].weight.data += 1
    model.layers[1].running_mean += 1
    assert not np.array_equal(state["layers.0.weight"], model.layers[0].weight.data)
    assert not np.array_equal(state["layers.1.running_mean"], model.layers[1].running_mean)


def test_load_state_dict_copies_in_place_and_casts():
    model = small_net(dtype=np.float32)
    weight = model.layers[0].weight
    data_before = weight.data
    state = {k: v.astype(np.float64) + 1 for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    assert weight.data is data_before and weight.data.dtype == np.float32
    np.testing.assert_allclose(weight.data, state["layers.0.weight"], rtol=1e-6)
    np.testing.assert_allclose(model.layers[1].running_var, 2.0)


@pytest.mark.parametrize("corrupt, key, message", [
    (lambda s: s.pop("layers.1.running_var"), "layers.1.running_var", "missing"),
    (lambda s: s.update({"layers.9.weight": np.zeros(2)}), "layers.9.weight", "unexpected"),
    (lambda s: s.update({"layers.5.weight": np.zeros((3, 31))}), "layers.5.weight", "shape"),
])
def test_load_state_dict_is_strict_and_atomic(corrupt, key, message):
    model = small_net(seed=0)
    before = model.state_dict()
    state = small_net(seed=5).state_dict()
    corrupt(state)
    with pytest.raises(ValueError, match=message) as error:
        model.load_state_dict(state)
    assert key in str(error.value)
    for name, value in model.state_dict().items():      # nothing was half-loaded
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_train_eval_propagate_through_containers():
    model = small_net()
    modules = model.modules()
    assert len(modules) == 11 and all(m.training for m in modules)
    assert model.eval() is model
    assert not any(m.training for m in modules)
    dropout = model.layers[3].body.layers[1]
    assert not dropout.training
    model.train()
    assert all(m.training for m in modules)


def test_seeding_is_deterministic():
    a, b, c = small_net(seed=3), small_net(seed=3), small_net(seed=4)
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[name], err_msg=name)
    assert not np.array_equal(a.layers[0].weight.data, c.layers[0].weight.data)
    shared = np.random.default_rng(0)
    first, second = nn.Linear(4, 4, rng=shared), nn.Linear(4, 4, rng=shared)
    assert not np.array_equal(first.weight.data, second.weight.data)   # one stream, advancing
    assert not np.array_equal(nn.Linear(4, 4).weight.data, nn.Linear(4, 4).weight.data)  # rng=None
    with pytest.raises(TypeError, match="rng"):
        nn.Linear(4, 4, rng=0.5)


def test_float32_and_float64_models_share_seeded_weights():
    single, double = small_net(np.float32, seed=1), small_net(np.float64, seed=1)
    for name, value in single.state_dict().items():
        np.testing.assert_array_equal(value, double.state_dict()[name].astype(np.float32), err_msg=name)


def test_kaiming_normal_init():
    conv = nn.Conv2d(50, 40, (3, 5), rng=0)
    linear = nn.Linear(1000, 300, rng=0)
    for layer, fan_in in ((conv, 50 * 15), (linear, 1000)):
        weights = layer.weight.data
        assert weights.dtype == np.float32
        assert abs(weights.mean()) < 0.05 * np.sqrt(2 / fan_in)
        assert weights.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.02)
        assert not layer.bias.data.any()
    assert conv.weight.shape == (40, 50, 3, 5) and linear.weight.shape == (300, 1000)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_end_to_end(backend, dtype):
    model = small_net(dtype=dtype)
    x = random_input((3, 1, 4, 4)).astype(dtype)
    y = model(x)
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    loss_fn(y, np.array([0, 1, 2]))
    grad_x = model.backward(loss_fn.backward())
    assert y.dtype == dtype and grad_x.dtype == dtype
    for name, value in model.state_dict().items():
        assert value.dtype == dtype, name
    for param in model.parameters():
        assert param.grad.dtype == dtype and param.grad.any()


def test_default_dtype_is_float32():
    for layer in (nn.Conv2d(1, 1, 1), nn.Linear(1, 1), nn.BatchNorm1d(1), nn.BatchNorm2d(1)):
        assert all(p.data.dtype == np.float32 for p in layer.parameters())
    with pytest.raises(TypeError, match="float32 or float64"):
        nn.Linear(2, 2, dtype=np.int32)


def test_linear_rejects_mismatched_input():
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError, match="float64"):
        layer(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        layer(np.zeros((2, 4), dtype=np.float32))


@pytest.mark.parametrize("layer", [nn.Conv2d(1, 1, 1), nn.Linear(1, 1), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.AvgPool2d(2), nn.Flatten(), nn.BatchNorm2d(1)],
                         ids=lambda layer: type(layer).__name__)
def test_backward_before_forward_raises(layer):
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 1, 1, 1), dtype=np.float32))


def test_bad_hyper_parameters_fail_at_construction():
    with pytest.raises(ValueError, match="stride"):
        nn.Conv2d(1, 1, 3, stride=0)
    with pytest.raises(ValueError, match="padding"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm2d(2, momentum=1.5)


def test_sequential_is_indexable_and_iterable():
    layers = [nn.Flatten(), nn.Linear(4, 2, rng=0), nn.ReLU()]
    model = nn.Sequential(*layers)
    assert len(model) == 3 and list(model) == layers and model.layers == layers
    assert model[1] is layers[1] and model[-1] is layers[2]
    head = model[:2]
    assert isinstance(head, nn.Sequential) and head.layers == layers[:2]
    x = np.ones((2, 2, 2), dtype=np.float32)
    np.testing.assert_array_equal(model(x), layers[2](head(x)))
    with pytest.raises(TypeError, match="Module"):
        nn.Sequential(nn.ReLU(), np.zeros(3))
