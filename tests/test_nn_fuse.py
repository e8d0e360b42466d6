"""`nn.fuse_conv_bn`: the fused copy computes what the eval-mode model computes, on
random convolution geometries (stride, padding, dilation, groups, with and without
bias, with and without a following ReLU) and on the zoo's networks, and leaves the
model it was given unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from fastconv import models, nn
from tests.conftest import tolerance


def randomise_norms(model, rng):
    """Running statistics and affine parameters far from their defaults, so a fold
    that ignored any of them would show."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            dtype = module.weight.data.dtype
            module.running_mean[...] = rng.standard_normal(c).astype(dtype)
            module.running_var[...] = rng.uniform(0.2, 3.0, c).astype(dtype)
            module.weight.data[...] = rng.uniform(0.5, 2.0, c).astype(dtype)
            module.bias.data[...] = rng.standard_normal(c).astype(dtype)
    return model


def random_block(rng, dtype):
    groups = int(rng.choice([1, 1, 2]))
    c_in = groups * int(rng.integers(1, 5))
    c_out = groups * int(rng.integers(1, 6))
    kernel = int(rng.integers(1, 4))
    layers = [nn.Conv2d(c_in, c_out, kernel, stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, 2)),
                        dilation=int(rng.integers(1, 3)), groups=groups, bias=bool(rng.random() < 0.5),
                        dtype=dtype, rng=int(rng.integers(1 << 30))),
              nn.BatchNorm2d(c_out, eps=float(rng.choice([1e-5, 1e-3])), dtype=dtype)]
    if rng.random() < 0.5:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers), c_in


@pytest.mark.parametrize("seed", range(8))
def test_fused_blocks_match_eval_mode(backend, dtype, seed):
    rng = np.random.default_rng(seed)
    model, c_in = random_block(rng, dtype)
    randomise_norms(model, rng).eval()
    x = rng.standard_normal((int(rng.integers(1, 4)), c_in, 9, 8)).astype(dtype)
    want = model(x)
    fused = nn.fuse_conv_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    relu = isinstance(model.layers[-1], nn.ReLU)
    assert type(fused.layers[0]) is (nn.Conv2dReLU if relu else nn.Conv2d)
    np.testing.assert_allclose(fused(x), want, **tolerance(dtype))


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "vgg11"])
def test_fused_zoo_networks_match_eval_mode(backend, name):
    rng = np.random.default_rng(1)
    model = randomise_norms(getattr(models, name)(num_classes=10, in_channels=3, dtype=np.float64), rng).eval()
    x = rng.standard_normal((2, 3, 32, 32))
    before = model.state_dict()
    want = model(x)
    fused = nn.fuse_conv_bn(model)
    np.testing.assert_allclose(fused(x), want, rtol=1e-9, atol=1e-9)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    # every zoo convolution is followed by its batch norm: none is left
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    # the layers that were not fused keep their state names
    kept = {k for k in fused.state_dict() if "running" not in k}
    assert {k for k in before if k.endswith("weight") and k.replace("weight", "running_mean") not in before} <= kept


def test_only_conv_then_norm_runs_are_fused():
    conv = nn.Conv2dReLU(2, 3, 3, rng=0)
    model = nn.Sequential(conv, nn.BatchNorm2d(3), nn.Conv2d(3, 3, 1, rng=1), nn.ReLU(), nn.BatchNorm2d(3)).eval()
    fused = nn.fuse_conv_bn(model)
    assert [type(m).__name__ for m in fused.layers] == ["Conv2dReLU", "BatchNorm2d", "Conv2d", "ReLU",
                                                        "BatchNorm2d"]
    assert fused.layers[0] is not conv            # a copy, all the same


def test_rejects_training_mode_and_non_modules():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.BatchNorm2d(2))
    with pytest.raises(ValueError, match="eval"):
        nn.fuse_conv_bn(model)
    with pytest.raises(TypeError, match="Module"):
        nn.fuse_conv_bn([model])


@pytest.mark.parametrize("name", ["resnet20", "vgg11"])
def test_frozen_networks_match_eval_mode(backend, name):
    """Read-only parameters: the numba backend runs the deep layers on packed panels
    (their batch-2 planes have 9-128 columns); every backend gives eval mode's outputs,
    twice (the second call on the cached panels)."""
    rng = np.random.default_rng(2)
    model = randomise_norms(getattr(models, name)(num_classes=10, in_channels=3, dtype=np.float32), rng).eval()
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    want = model(x)
    frozen = nn.freeze(nn.fuse_conv_bn(model))
    assert all(not p.data.flags.writeable for p in frozen.parameters())
    assert all(p.data.flags.writeable for p in model.parameters())
    for _ in range(2):
        np.testing.assert_allclose(frozen(x), want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_freeze_rejects_training_mode_and_non_modules():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0))
    with pytest.raises(ValueError, match="eval"):
        nn.freeze(model)
    with pytest.raises(TypeError, match="Module"):
        nn.freeze([model])
    frozen = nn.freeze(model.eval())
    with pytest.raises(ValueError, match="read-only"):
        frozen.layers[0].weight.data += 1
