"""The zoo's peers (PyTorch, JAX, ONNX Runtime): each adapter's outputs against fastconv's
numpy backend, the zoo's peer columns on a tiny network, and a missing peer skipped."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

import fastconv
import fastconv.functional as F
from fastconv.benchmark import peers
from fastconv.benchmark.zoo_layers import Conv

TINY_LAYERS = [
    Conv(3, 4, 7, 3, 2, 1),                                  # stride 2, padding 1
    Conv(4, 6, 8, 3, 1, 2, dilation=2, groups=2),            # dilated and grouped
    Conv(4, 4, 6, 3, 2, groups=4),                           # depthwise, stride 2
    Conv(4, 6, 5, 3, 2, 1, transposed=True),                 # transposed, stride 2
]
PACKAGES = {"torch": ("torch",), "jax": ("jax",), "onnxruntime": ("onnx", "onnxruntime")}


def _missing(name):
    return [package for package in PACKAGES[name] if importlib.util.find_spec(package) is None]


@pytest.fixture(scope="module")
def started():
    """Each installed peer, started once (on 2 threads)."""
    return {name: peers.load([name], 2, np.float32, lambda _: None) for name in peers.PEERS if not _missing(name)}


def _peer(started, name):
    if _missing(name):
        pytest.skip(f"{name} is not installed: {', '.join(_missing(name))} missing")
    return started[name][0]


def numpy_reference(problem):
    """``(y,)`` or ``(y, grad_x, grad_w, grad_b)`` from fastconv's numpy backend."""
    layer = problem.layer
    options = dict(stride=layer.stride, padding=layer.pad, dilation=layer.dilation, groups=layer.groups)
    forward, backward = ((F.conv_transpose2d, F.conv_transpose2d_backward) if layer.transposed
                         else (F.conv2d, F.conv2d_backward))
    with fastconv.use_backend("numpy"):
        y = forward(problem.x, problem.w, problem.b, **options)
        if not problem.train:
            return (y,)
        return (y, *backward(problem.grad_y, problem.x, problem.w, **options))


@pytest.mark.parametrize("train", [False, True], ids=["infer", "train"])
@pytest.mark.parametrize("layer", TINY_LAYERS, ids=lambda layer: layer.label())
@pytest.mark.parametrize("name", list(peers.PEERS))
def test_peer_matches_the_numpy_backend(started, name, layer, train):
    peer = _peer(started, name)
    problem = peers.make_problem(layer, 2, train, np.float32, seed=3)
    if not peer.supports(problem):
        pytest.skip(f"{peer.title} does not run this problem (training: {train})")
    outputs = peer.job(problem)()
    reference = numpy_reference(problem)
    assert len(outputs) == len(reference) == (4 if train else 1)
    for out, ref in zip(outputs, reference):
        np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    peers.check_outputs(reference, outputs, peer.title, layer.label())


def test_onnxruntime_runs_inference_only():
    problem = peers.make_problem(TINY_LAYERS[0], 1, True, np.float32)
    assert not peers.OnnxRuntimePeer().supports(problem)
    assert peers.OnnxRuntimePeer().supports(peers.make_problem(TINY_LAYERS[0], 1, False, np.float32))


def test_check_outputs_names_the_layer_and_peer_beyond_the_tolerance():
    reference = (np.linspace(-2.0, 2.0, 24, dtype=np.float32).reshape(1, 2, 3, 4),)
    close = reference[0] + np.float32(2 * 0.5e-3)          # 0.5e-3 of max|y| = 2: within
    peers.check_outputs(reference, (close,), "Peer", "layer L")
    far = reference[0].copy()
    far[0, 1, 2, 3] += 2 * 2e-3
    with pytest.raises(peers.PeerMismatch, match=r"layer L: Peer disagrees with fastconv on y by 2\.0e-03"):
        peers.check_outputs(reference, (far,), "Peer", "layer L")
    with pytest.raises(peers.PeerMismatch, match="shape"):
        peers.check_outputs(reference, (far[:, :1],), "Peer", "layer L")


def test_parse_names_keeps_order_and_rejects_unknown_names():
    assert peers.parse_names("jax, torch,jax") == ["jax", "torch"]
    with pytest.raises(ValueError, match="'tf'"):
        peers.parse_names("torch,tf")
    from fastconv.benchmark import build_parser

    assert build_parser().parse_args([]).peers == ["torch"]
    assert build_parser().parse_args(["--peers", "jax,onnxruntime"]).peers == ["jax", "onnxruntime"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--peers", "caffe"])


# --------------------------------------------------------------------------- the zoo
@pytest.fixture
def tiny_zoo(monkeypatch, tmp_path):
    """The zoo on one tiny network of a plain, a depthwise and a transposed layer."""
    pytest.importorskip("numba")
    from fastconv.benchmark import zoo

    layers = [(Conv(2, 3, 9, 3), 2), (Conv(3, 3, 9, 3, 2, groups=3), 1),
              (Conv(3, 2, 5, 2, 2, 0, transposed=True), 1)]
    monkeypatch.setattr(zoo, "NETWORKS", {"tiny": layers})
    monkeypatch.setattr(zoo, "QUICK", ("tiny",))
    monkeypatch.setattr(zoo, "TRAIN_BATCH", {"tiny": 2})
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))    # autotuning writes nothing of the user's
    return zoo


def test_zoo_reports_a_column_per_peer(tiny_zoo, tmp_path):
    for name in ("jax", "onnxruntime"):
        if _missing(name):
            pytest.skip(f"{name} is not installed")
    lines = []
    result = tiny_zoo.run_zoo(np.float32, repeat=1, quick=True, peers=["jax", "onnxruntime"],
                              log=lines.append, threads=2)
    assert result["peers"] == [{"name": "jax", "title": "JAX"}, {"name": "onnxruntime", "title": "ONNX Runtime"}]
    for network in result["networks"]:
        inference = network["mode"] != "train"
        for row in [network, *network["layers"]]:
            assert row["vs_jax"] == pytest.approx(row["jax_s"] / row["numba_s"]) and row["jax_s"] > 0
            assert ("vs_onnxruntime" in row) == ("onnxruntime_s" in row) == inference
    summary = result["summary"]
    assert set(summary) == {"train", "infer b1", "infer b8"}
    assert "geomean_vs_onnxruntime" not in summary["train"] and "geomean_vs_jax" in summary["train"]
    ratios = [n["vs_onnxruntime"] for n in result["networks"] if n["mode"] == "infer b8"]
    assert summary["infer b8"]["geomean_vs_onnxruntime"] == pytest.approx(ratios[0])
    assert set(result["overall"]) == {"geomean_vs_jax", "geomean_vs_onnxruntime"}
    text = tiny_zoo.markdown(result)
    assert "| network | mode | batch | numba | JAX | JAX time / numba time | ONNX Runtime | " \
           "ONNX Runtime time / numba time | numba GFLOP/s |" in text
    train_row = next(line for line in text.splitlines() if line.startswith("| tiny | train | 2 |"))
    assert train_row.endswith(" - | - | " + train_row.split(" | ")[-1]) and "x | - | - |" in train_row
    assert "infer b1: geometric mean over networks" in text and "x ONNX Runtime, lowest" in text
    assert any("JAX" in line and "ONNX Runtime" in line for line in lines if line.startswith("  infer"))
    tiny_zoo.plot(result, tmp_path / "zoo.png")
    assert (tmp_path / "zoo.png").stat().st_size > 1000
    json.dumps(result)


def test_a_missing_peer_is_one_line_and_the_run_goes_on(tiny_zoo, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)       # `import jax` now fails
    lines = []
    result = tiny_zoo.run_zoo(np.float32, repeat=1, quick=True, peers=["jax"], log=lines.append, threads=1)
    skipped = [line for line in lines if "JAX" in line]
    assert skipped == ["JAX: skipped, cannot import jax (pip install 'fastconv[peers]')"]
    assert result["peers"] == [] and len(result["networks"]) == 3
    assert not any("jax" in key for network in result["networks"] for key in network)
    assert "| tiny | infer b1 | 1 |" in tiny_zoo.markdown(result)


def test_a_disagreeing_peer_stops_the_zoo_naming_layer_and_peer(tiny_zoo):
    class Broken(peers.Peer):
        name, title = "broken", "Broken"

        def job(self, problem):
            return lambda: (np.zeros((problem.x.shape[0], problem.layer.c_out, problem.layer.out,
                                      problem.layer.out), np.float32),)

    layer = Conv(2, 3, 9, 3)
    with pytest.raises(peers.PeerMismatch, match=r"layer 2->3 3x3/1 @9 \(infer, batch 1\): Broken disagrees"):
        tiny_zoo.time_layer(layer, 1, False, np.float32, [Broken()], repeat=1)


def test_jax_runs_on_the_bench_thread_count_and_leaves_the_environment_alone():
    if _missing("jax"):
        pytest.skip("jax is not installed")
    import os
    import subprocess

    script = (
        "import os, numpy as np\n"
        "from fastconv.benchmark import peers\n"
        "from fastconv.benchmark.zoo_layers import Conv\n"
        "jax, = peers.load(['jax'], 1, np.float32, print)\n"
        "jax.job(peers.make_problem(Conv(4, 4, 16, 3), 2, False, np.float32))()\n"
        "names = [open(f'/proc/self/task/{t}/comm').read().strip() for t in os.listdir('/proc/self/task')]\n"
        "print(names.count('tf_XLAEigen'), os.environ.get('NPROC'), os.environ.get('XLA_FLAGS'))\n")
    env = {key: value for key, value in os.environ.items() if key not in ("NPROC", "XLA_FLAGS")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # XLA's intra-op pool: one thread (its default is one per core), and NPROC / XLA_FLAGS as they were
    assert done.stdout.split("\n")[-2] == "1 None None"
