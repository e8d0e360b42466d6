"""The network zoo's definitions and its runner on a tiny network (speed lives in bench/)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("numba")

from fastconv.backends import numba_backend as NB  # noqa: E402
from fastconv.benchmark import zoo  # noqa: E402


def conv_count(name):
    return sum(count for _, count in zoo.NETWORKS[name])


def test_networks_have_their_published_conv_layers():
    assert conv_count("ResNet-20 (CIFAR)") == 19          # 6n + 1 with n = 3
    assert conv_count("ResNet-56 (CIFAR)") == 55          # n = 9
    assert conv_count("VGG-11 (32x32)") == 8
    assert conv_count("VGG-16 (32x32)") == 13
    assert conv_count("ResNet-18 (112x112)") == 20        # 17 3x3/7x7 + 3 downsampling 1x1
    assert conv_count("LeNet-5 (32x32)") == 2
    # shapes chain: each stage's output size is the next layer's input
    assert conv_count("ResNet-50 bottlenecks (112x112)") == 3 * 3 + 1 + 3 + 1   # stage 2, stage 3's first block
    assert conv_count("DenseNet-BC block, k=32 (32x32)") == 2 * 4
    assert conv_count("AlexNet (112x112)") == 5
    stem = zoo.NETWORKS["ResNet-18 (112x112)"][0][0]
    assert stem.out == 56 and zoo.Conv(64, 128, 28, 3, 2).out == 14


def test_zoo_runs_and_reports_on_a_tiny_network(monkeypatch, tmp_path):
    monkeypatch.setattr(zoo, "NETWORKS", {"tiny": [(zoo.Conv(2, 3, 9, 3), 2), (zoo.Conv(3, 4, 9, 1, 2, 0), 1)]})
    monkeypatch.setattr(zoo, "QUICK", ("tiny",))
    monkeypatch.setattr(zoo, "TRAIN_BATCH", {"tiny": 2})
    monkeypatch.setattr(NB.select, "_TUNE_MIN_FLOPS", 0)
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("FASTCONV_CONV_ALGO", raising=False)
    NB.clear_autotune_cache(memory_only=True)
    pytest.importorskip("torch")
    result = zoo.run_zoo(np.float32, repeat=1, quick=True, peers=["torch"], log=lambda _: None)
    modes = [n["mode"] for n in result["networks"]]
    assert modes == ["train", "infer b1", "infer b8"]
    train = result["networks"][0]
    layer_sum = sum(r["count"] * r["numba_s"] for r in train["layers"])
    assert train["numba_s"] == pytest.approx(layer_sum)
    assert all(r["numba_gflops"] > 0 and r["algorithm"] for r in train["layers"])
    assert set(result["summary"]) == {"train", "infer b1", "infer b8"}
    distinct = {(r["mode"], r["batch"], r["layer"]): r for n in result["networks"] for r in n["layers"]}
    tuned = result["autotune"]          # every problem timed here: _TUNE_MIN_FLOPS is 0
    assert tuned["problems"] == sum(r["tuned_problems"] for r in distinct.values()) >= len(distinct)
    assert tuned["seconds"] == pytest.approx(sum(r["tuning_s"] for r in distinct.values())) and tuned["seconds"] > 0
    text = zoo.markdown(result)
    assert "| tiny | train | 2 |" in text
    # the default peer alone: the columns and summary lines the zoo always had
    assert "| network | mode | batch | numba | PyTorch | PyTorch time / numba time | numba GFLOP/s |" in text
    assert "| mode | batch | layer | numba | GFLOP/s | algorithm | PyTorch | ratio |" in text
    assert f"train: geometric mean over networks {result['summary']['train']['geomean_vs_torch']:.2f}x PyTorch, " \
           f"lowest {result['summary']['train']['min_vs_torch']:.2f}x\n" in text
    assert f"{tuned['problems']} problems timed in" in text
    zoo.plot(result, tmp_path / "zoo.png")
    assert (tmp_path / "zoo.png").stat().st_size > 1000
    json.dumps(result)                                      # serialisable as written


def test_networks_chain_their_shapes():
    # each listed layer's output feeds a listed layer (directly or through a pool/concat)
    mobilenet = [layer for layer, _ in zoo.NETWORKS["MobileNetV2 blocks 1-3 (112x112)"]]
    assert [layer.out for layer in mobilenet] == [56, 56, 56, 56, 28, 28, 28, 28, 28]
    up = zoo.NETWORKS["U-Net decoder (64x64)"][0][0]
    assert up.transposed and up.out == 2 * up.size and up.w_shape == (128, 64, 2, 2)
    alexnet_stem = zoo.NETWORKS["AlexNet (112x112)"][0][0]
    assert alexnet_stem.out == 27
    dilated = [layer for layer, _ in zoo.NETWORKS["DeepLabV3 dilated (112x112)"]]
    assert [(layer.dilation, layer.pad, layer.out) for layer in dilated] == [(2, 2, 14), (4, 4, 14)]
    depthwise = mobilenet[1]
    assert depthwise.w_shape == (32, 1, 3, 3) and depthwise.label() == "32->32 dw3x3/1 @56"
    assert depthwise.flops(1) == 2.0 * 32 * 56 ** 2 * 9


def test_every_network_has_a_training_batch_and_is_new():
    assert set(zoo.TRAIN_BATCH) == set(zoo.NETWORKS) and set(zoo.QUICK) <= set(zoo.NETWORKS)
    for name in zoo.NETWORKS:
        assert zoo.TRAIN_BATCH[name] == (32 if "32x32" in name or "CIFAR" in name else 8)
    # no network is another one's layers again (ResNet-56 repeats ResNet-20's with other counts)
    layer_sets = [frozenset(layers) for layers in zoo.NETWORKS.values()]
    assert len(set(layer_sets)) == len(layer_sets)
