"""The general convolution layers: `Conv2d` with dilation / groups / ``padding="same"`` and
`ConvTranspose2d` -- float64 central-difference gradient checks on every backend,
PyTorch agreement, and construction errors."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import nn
from tests.test_nn import check_gradients, random_input

CONV_CASES = [
    # x shape, out_channels, kernel, stride, padding, dilation, groups
    ((2, 4, 7, 6), 4, 3, 1, 1, 1, 4),               # depthwise
    ((1, 3, 8, 7), 6, 3, 2, 1, 1, 3),               # depthwise x2, stride 2
    ((2, 4, 9, 8), 6, (3, 2), 1, "same", 2, 2),     # grouped, dilated, 'same' (even kernel)
    ((2, 3, 9, 9), 2, 3, (1, 2), 2, (2, 3), 1),     # dilated
    ((1, 2, 6, 7), 3, 4, 1, "same", 1, 1),          # 'same', 4x4: asymmetric padding
    ((2, 2, 5, 6), 4, 2, 1, "valid", 1, 2),
]


@pytest.mark.parametrize("shape, c_out, kernel, stride, padding, dilation, groups", CONV_CASES)
@pytest.mark.parametrize("layer_type", [nn.Conv2d, nn.Conv2dReLU])
def test_conv2d_gradients(backend, layer_type, shape, c_out, kernel, stride, padding, dilation, groups):
    layer = layer_type(shape[1], c_out, kernel, stride, padding, dtype=np.float64, rng=0,
                       dilation=dilation, groups=groups)
    assert layer.weight.data.shape[1] == shape[1] // groups
    x = random_input(shape, away_from_zero=True)
    assert check_gradients(layer, x) == ["input", "weight", "bias"]


def test_conv2d_relu_avgpool_and_first_layer_gradients(backend):
    layer = nn.Conv2dReLUAvgPool(4, 8, 3, 1, "same", dtype=np.float64, rng=1, dilation=2, groups=4)
    assert check_gradients(layer, random_input((2, 4, 8, 9), away_from_zero=True)) == ["input", "weight", "bias"]
    first = nn.Conv2d(2, 4, 3, 1, 1, input_grad=False, dtype=np.float64, rng=1, groups=2)
    assert check_gradients(first, random_input((2, 2, 6, 6))) == ["weight", "bias"]


TRANSPOSE_CASES = [
    # x shape, out_channels, kernel, stride, padding, output_padding, groups, dilation
    ((2, 4, 3, 4), 3, 4, 2, 1, 0, 1, 1),            # DCGAN generator layer
    ((1, 4, 4, 3), 4, 3, 2, 1, 1, 4, 1),            # depthwise, output_padding
    ((2, 4, 3, 3), 6, (2, 3), (1, 2), (0, 1), (0, 1), 2, (2, 1)),
    ((1, 2, 4, 4), 2, 3, 1, 2, 1, 1, 2),            # output_padding from dilation
]


@pytest.mark.parametrize("shape, c_out, kernel, stride, padding, output_padding, groups, dilation",
                         TRANSPOSE_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose2d_gradients(backend, shape, c_out, kernel, stride, padding, output_padding,
                                    groups, dilation, bias):
    layer = nn.ConvTranspose2d(shape[1], c_out, kernel, stride, padding, output_padding, groups,
                               bias, dilation, dtype=np.float64, rng=0)
    checked = check_gradients(layer, random_input(shape))
    assert checked == (["input", "weight", "bias"] if bias else ["input", "weight"])


def test_conv_transpose2d_upsamples():
    layer = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, rng=0)
    assert layer.forward(np.zeros((2, 8, 7, 5), np.float32)).shape == (2, 4, 14, 10)
    assert layer.weight.data.shape == (8, 4, 4, 4) and layer.weight.data.dtype == np.float32
    assert "stride=(2, 2)" in repr(layer)


def test_layers_match_torch(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 9, 8)).astype(np.float32)
    ours = [nn.Conv2d(6, 12, 3, 1, "same", rng=1, dilation=2, groups=6),
            nn.ConvTranspose2d(6, 4, 4, 2, 1, 1, groups=2, rng=2)]
    theirs = [torch.nn.Conv2d(6, 12, 3, 1, "same", dilation=2, groups=6),
              torch.nn.ConvTranspose2d(6, 4, 4, 2, 1, 1, groups=2)]
    for layer, t_layer in zip(ours, theirs):
        layer.bias.data[:] = rng.standard_normal(layer.bias.data.shape)
        with torch.no_grad():
            t_layer.weight.copy_(torch.from_numpy(layer.weight.data))
            t_layer.bias.copy_(torch.from_numpy(layer.bias.data))
        tx = torch.tensor(x, requires_grad=True)
        ty = t_layer(tx)
        y = layer.forward(x)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-5)
        grad_y = rng.standard_normal(y.shape).astype(np.float32)
        ty.backward(torch.from_numpy(grad_y))
        layer.zero_grad()
        np.testing.assert_allclose(layer.backward(grad_y), tx.grad.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(layer.weight.grad, t_layer.weight.grad.numpy(), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(layer.bias.grad, t_layer.bias.grad.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("build, message", [
    (lambda: nn.Conv2d(6, 4, 3, groups=4), "groups = 4 must divide the input channels"),
    (lambda: nn.Conv2d(6, 4, 3, groups=3), "groups = 3 must divide the output channels"),
    (lambda: nn.Conv2d(6, 4, 3, groups=0), "groups"),
    (lambda: nn.Conv2d(6, 4, 3, dilation=0), "dilation"),
    (lambda: nn.Conv2d(6, 4, 3, stride=2, padding="same"), "padding='same' needs stride 1"),
    (lambda: nn.Conv2d(6, 4, 3, padding="full"), "padding"),
    (lambda: nn.ConvTranspose2d(4, 4, 3, stride=2, output_padding=2), "output_padding"),
    (lambda: nn.ConvTranspose2d(4, 6, 3, groups=4), "groups = 4 must divide the output channels"),
])
def test_bad_layer_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_same_padding_layer_keeps_the_size_and_its_repr():
    layer = nn.Conv2d(3, 5, 4, padding="same", dilation=2, groups=1, rng=0)
    assert layer.forward(np.zeros((1, 3, 7, 9), np.float32)).shape == (1, 5, 7, 9)
    assert "padding=same" in repr(layer) and "dilation=(2, 2)" in repr(layer)
    assert "groups" not in repr(layer)
