"""PyTorch-style model building: attribute registration, `ModuleList`, the errors a
hand-written Module runs into, and each module's `kernel_ops`."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import fastconv.functional as F
from fastconv import nn
from fastconv.optim import SGD, Adam
from tests.test_nn import check_gradients, random_input


class Block(nn.Module):
    """A hand-written residual block: every layer assigned as an attribute."""

    def __init__(self, channels: int, seed: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False, dtype=np.float64, rng=seed)
        self.bn = nn.BatchNorm2d(channels, dtype=np.float64)
        self.relu = nn.ReLU()
        self.scale = nn.Parameter(np.full(channels, 0.5))
        self.label = "block"                  # plain attributes stay plain
        self.cache = np.zeros(3)

    def forward(self, x):
        self._x = x
        self._y = self.relu(self.bn(self.conv(x)))
        return x + self._y * self.scale.data[:, None, None]

    def backward(self, grad_y):
        self.scale.grad += np.einsum("nchw,nchw->c", grad_y, self._y)
        grad_inner = self.conv.backward(self.bn.backward(self.relu.backward(grad_y * self.scale.data[:, None, None])))
        return grad_y + grad_inner


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, padding=1, dtype=np.float64, rng=1)
        self.blocks = nn.ModuleList([Block(2, seed=2), Block(2, seed=3)])
        self.head = nn.Linear(2 * 4 * 3, 3, dtype=np.float64, rng=4)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        self._shape = x.shape
        return self.head(x.reshape(x.shape[0], -1))

    def backward(self, grad_y):
        grad = self.head.backward(grad_y).reshape(self._shape)
        for block in reversed(self.blocks):
            grad = block.backward(grad)
        return self.stem.backward(grad)


# --------------------------------------------------------------------- registration
def test_attributes_register_parameters_and_modules_in_assignment_order():
    net = Net()
    assert [name for name, _ in net.named_parameters()] == [
        "stem.weight", "stem.bias",
        "blocks.0.scale", "blocks.0.conv.weight", "blocks.0.bn.weight", "blocks.0.bn.bias",
        "blocks.1.scale", "blocks.1.conv.weight", "blocks.1.bn.weight", "blocks.1.bn.bias",
        "head.weight", "head.bias"]
    assert [name for name, _ in net.named_buffers()] == [
        "blocks.0.bn.running_mean", "blocks.0.bn.running_var",
        "blocks.1.bn.running_mean", "blocks.1.bn.running_var"]
    assert [name for name, _ in net.named_children()] == ["stem", "blocks", "head"]
    assert net.blocks[0].scale.name == "scale"
    assert "label" not in net.blocks[0].state_dict() and "cache" not in net.blocks[0].state_dict()


def test_a_hand_written_network_backpropagates(backend):
    net = Net()
    x = random_input((2, 1, 4, 3))
    checked = check_gradients(net, x)
    assert checked == ["input"] + [name for name, _ in net.named_parameters()]


def test_modes_and_zero_grad_reach_attribute_children():
    net = Net()
    net.eval()
    assert not any(module.training for module in net.modules())
    assert len(net.modules()) == 1 + 1 + 1 + 2 * 4 + 1
    for param in net.parameters():
        param.grad += 1
    net.zero_grad()
    assert not any(param.grad.any() for param in net.parameters())


def test_reassigning_replacing_and_deleting():
    block = Block(2)
    old = block.conv
    block.conv = nn.Conv2d(2, 2, 1, bias=False, dtype=np.float64, rng=0)     # replaced, same place
    assert block.conv is not old and [name for name, _ in block.named_children()] == ["conv", "bn", "relu"]
    assert block.state_dict()["conv.weight"].shape == (2, 2, 1, 1)
    block.scale = None                       # an absent parameter, as PyTorch allows
    assert "scale" not in dict(block.named_parameters())
    block.scale = nn.Parameter(np.ones(2))
    assert list(dict(block.named_parameters())) == ["scale", "conv.weight", "bn.weight", "bn.bias"]
    block.relu = None                        # an absent sub-module
    assert [name for name, _ in block.named_children()] == ["conv", "bn"]
    del block.bn
    assert [name for name, _ in block.named_children()] == ["conv"]
    assert not hasattr(block, "bn")
    block.bn = nn.BatchNorm2d(2)             # registered again, now last
    assert [name for name, _ in block.named_children()] == ["conv", "bn"]


def test_a_name_changes_kind_when_assigned_another_kind():
    block = Block(2)
    block.relu = nn.Parameter(np.zeros(1))
    assert "relu" in dict(block.named_parameters())
    assert "relu" not in dict(block.named_children())


def test_assigning_a_plain_value_to_a_registered_name_is_refused():
    block = Block(2)
    with pytest.raises(TypeError, match=r"Block.scale, which holds a Parameter"):
        block.scale = np.ones(2)
    with pytest.raises(TypeError, match=r"Block.conv, which holds a Module"):
        block.conv = "conv"
    assert isinstance(block.scale, nn.Parameter) and isinstance(block.conv, nn.Conv2d)


def test_buffers_stay_registered_when_reassigned():
    layer = nn.BatchNorm2d(2)
    layer.running_mean = np.full(2, 3.0, dtype=np.float32)
    np.testing.assert_array_equal(layer.state_dict()["running_mean"], [3.0, 3.0])


def test_assigning_before_super_init_says_what_to_do():
    class Early(nn.Module):
        def __init__(self):
            self.conv = nn.Conv2d(1, 1, 1)
            super().__init__()

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) before assigning Conv2d 'conv'"):
        Early()


def test_explicit_registration_still_works_and_checks_names():
    module = nn.Module()
    weight = module.register_parameter("weight", nn.Parameter(np.ones(2)))
    module.register_buffer("count", np.zeros(1))
    module.register_module("inner", nn.Linear(2, 2, rng=0))
    assert module.weight is weight and weight.name == "weight"
    assert list(module.state_dict()) == ["weight", "count", "inner.weight", "inner.bias"]
    with pytest.raises(ValueError, match="without '.'"):
        module.register_parameter("a.b", nn.Parameter(np.ones(1)))
    with pytest.raises(TypeError, match="must be a Module"):
        module.register_module("inner", np.ones(2))


def test_modules_kept_in_a_plain_list_are_not_registered_and_the_optimiser_says_why():
    class Forgetful(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = [nn.Linear(2, 2, rng=0), nn.Linear(2, 2, rng=1)]

    model = Forgetful()
    assert model.parameters() == []
    for optimizer in (SGD, Adam):
        with pytest.raises(ValueError, match=r"empty parameter list: assign layers and Parameters as "
                                             r"attributes of your Module \(self.conv = nn.Conv2d"):
            optimizer(model.parameters(), lr=0.1)


def test_a_module_without_backward_says_so_at_its_first_backward():
    class ForwardOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 2, rng=0)

        def forward(self, x):
            return self.linear(x)

    model = ForwardOnly()
    y = model(np.ones((1, 3), dtype=np.float32))        # forward works
    with pytest.raises(NotImplementedError, match="ForwardOnly does not implement backward") as caught:
        model.backward(np.ones_like(y))
    assert "manual" in str(caught.value) and "\n" not in str(caught.value)


# --------------------------------------------------------------------- ModuleList
def test_module_list_is_a_registered_list():
    items = [nn.Linear(2, 2, rng=i) for i in range(3)]
    modules = nn.ModuleList(items[:1])
    assert modules.append(items[1]) is modules
    modules.extend(items[2:])
    assert len(modules) == 3 and list(modules) == items
    assert modules[0] is items[0] and modules[-1] is items[2]
    assert isinstance(modules[1:], nn.ModuleList) and list(modules[1:]) == items[1:]
    replacement = nn.Linear(2, 2, rng=9)
    modules[1] = replacement
    assert list(modules.state_dict()) == [f"{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    assert modules.parameters()[2] is replacement.weight
    assert len(nn.ModuleList()) == 0
    with pytest.raises(TypeError, match="not a Module"):
        modules.append("linear")
    with pytest.raises(TypeError, match="iterable"):
        modules.extend(3)
    with pytest.raises(NotImplementedError, match="ModuleList has no forward"):
        modules(np.zeros((1, 2)))


# --------------------------------------------------------------------- kernel_ops
KERNEL_OPS = [
    (lambda: nn.Conv2d(2, 2, 3), {"conv2d"}),
    (lambda: nn.Conv2d(2, 2, 3, groups=2, dilation=2), {"conv2d"}),
    (lambda: nn.Conv2d(2, 2, 3, input_grad=False), {"conv2d"}),
    (lambda: nn.Conv2dReLU(2, 2, 3), {"conv2d_relu"}),
    (lambda: nn.Conv2dReLUAvgPool(2, 2, 3), {"conv2d_relu_avgpool2"}),
    (lambda: nn.ConvTranspose2d(2, 2, 3), {"conv_transpose2d"}),
    (lambda: nn.Linear(8, 3), {"linear"}),
    (lambda: nn.BatchNorm2d(2), {"batch_norm", "channel_affine"}),
    (lambda: nn.BatchNorm1d(8), {"batch_norm", "channel_affine"}),
    (lambda: nn.AvgPool2d(2), {"avg_pool2d"}),
    (lambda: nn.MaxPool2d(2), {"max_pool2d"}),
    (lambda: nn.AdaptiveAvgPool2d(1), set()),
    (lambda: nn.AdaptiveAvgPool2d((2, 1)), {"avg_pool2d"}),
    (lambda: nn.AdaptiveMaxPool2d(1), set()),
    (lambda: nn.AdaptiveMaxPool2d(2), {"max_pool2d"}),
    (nn.ReLU, {"relu"}), (nn.Sigmoid, set()), (nn.Tanh, set()), (nn.LeakyReLU, set()), (nn.ReLU6, {"clamp"}),
    (nn.Identity, set()), (nn.Flatten, set()), (lambda: nn.Dropout(0.5, rng=0), set()),
    (lambda: nn.Upsample(scale_factor=2), set()),
    (lambda: nn.Sequential(nn.Conv2d(2, 2, 3)), set()), (lambda: nn.Residual(nn.ReLU()), {"add"}),
    (lambda: nn.Concat(nn.ReLU()), {"add"}), (lambda: nn.Add(nn.ReLU()), {"add"}),
]


@pytest.mark.parametrize("build, expected", KERNEL_OPS)
def test_kernel_ops_name_functional_kernels(build, expected):
    ops = build().kernel_ops()
    assert isinstance(ops, frozenset) and ops == expected
    assert all(callable(getattr(F, name, None)) for name in ops)


def test_a_users_module_has_unknown_kernel_ops():
    assert nn.Module().kernel_ops() is None and Block(2).kernel_ops() is None


def test_every_built_in_module_implements_kernel_ops():
    classes = [getattr(nn, name) for name in nn.__all__]
    modules = [cls for cls in classes if inspect.isclass(cls) and issubclass(cls, nn.Module) and cls is not nn.Module]
    assert len(modules) >= 25
    for cls in modules:
        assert cls.kernel_ops is not nn.Module.kernel_ops, cls.__name__


# A forward input, per layer of KERNEL_OPS, for the spy below.
SPY_INPUTS = {"Linear": (2, 8), "BatchNorm1d": (3, 8), "ConvTranspose2d": (2, 2, 3, 3)}
# Containers run no kernels themselves: their children do.
LEAF_KERNEL_OPS = [(build, expected) for build, expected in KERNEL_OPS if not build().children()]


@pytest.mark.parametrize("build, expected", LEAF_KERNEL_OPS)
def test_kernel_ops_cover_every_kernel_forward_and_backward_call(monkeypatch, build, expected):
    """Spy on `fastconv.functional`: the outermost calls a layer makes in forward and
    backward, in training and eval mode, each named by its forward function, are
    exactly its `kernel_ops`."""
    import fastconv

    kernels = {name for name in F.__all__ if inspect.isfunction(getattr(F, name))} - {"conv_output_size"}
    assert {"conv2d", "linear", "batch_norm_backward", "max_pool2d"} <= kernels
    called, depth = set(), [0]

    def spy(name, fn):
        def wrapper(*args, **kwargs):
            if depth[0] == 0:                 # not the kernels a kernel composes
                called.add(name.replace("_backward_weights", "").replace("_backward", ""))
            depth[0] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
        return wrapper

    for name in kernels:
        monkeypatch.setattr(F, name, spy(name, getattr(F, name)))
    layer = build()
    with fastconv.use_backend("numpy"):
        x = random_input(SPY_INPUTS.get(type(layer).__name__, (3, 2, 6, 6))).astype(np.float32)
        for training in (True, False):          # batch norm's eval mode has its own kernel
            layer.train(training)
            y = layer(x)
            layer.backward(np.ones_like(y))
    assert called == layer.kernel_ops()
