"""Other libraries' convolutions, timed beside fastconv by `fastconv bench --zoo --peers`.

Each peer is a small adapter with one interface (`Peer`): ``start`` imports and
configures the library for the bench's thread count, ``supports`` says which problems
it runs, and ``job`` returns a function doing one problem's work -- inference: the
forward pass with bias; training: forward and backward (``y, grad_x, grad_w, grad_b``),
as fastconv's training pass does -- that returns its outputs, ready (not still
computing asynchronously).

* ``torch``: `torch.nn.functional.conv2d` / ``conv_transpose2d`` and autograd, on
  ``torch.set_num_threads(threads)``.
* ``jax``: ``jax.jit`` of `jax.lax.conv_general_dilated` (a transposed layer as the
  input-dilated convolution with the flipped kernel), and for training ``jax.jit`` of
  ``jax.vjp``.  Threads: XLA's CPU client sizes its intra-op thread pool from the
  ``NPROC`` environment variable (XLA has no ``intra_op_parallelism_threads`` flag),
  so ``NPROC`` is set to the thread count while JAX starts its CPU client, and
  ``XLA_FLAGS`` gets ``--xla_cpu_multi_thread_eigen=false`` at one thread.  Both must
  happen before JAX is first used in the process: when it already was, JAX keeps its
  own thread count and the bench says so.
* ``onnxruntime``: a one-node ``Conv`` (``ConvTranspose``) model with the weights and
  bias as initializers, built in memory with ``onnx.helper``, run by an
  ``onnxruntime.InferenceSession`` on the CPU with ``intra_op_num_threads`` = the thread
  count, ``inter_op_num_threads=1``, no spinning threads, sequential execution and every graph
  optimisation.  Inference in float32 only.

A peer whose package is missing is skipped with one line naming the extra to install.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-3    # largest difference allowed, relative to the largest |output|
OUTPUT_NAMES = ("y", "grad_x", "grad_w", "grad_b")


@dataclass(frozen=True)
class Problem:
    """One layer's arrays.  ``layer`` has ``c_in, c_out, k, stride, pad, dilation,
    groups, transposed, out`` (`fastconv.benchmark.zoo_layers.Conv`)."""

    layer: object
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray
    grad_y: np.ndarray
    train: bool


def make_problem(layer, batch: int, train: bool, dtype, seed: int = 0) -> Problem:
    """Random inputs with weights scaled by 1/sqrt(fan-in), so outputs stay O(1)."""
    rng = np.random.default_rng(seed)
    fan_in = layer.c_in // layer.groups * layer.k ** 2
    x = rng.standard_normal((batch, layer.c_in, layer.size, layer.size)).astype(dtype)
    w = (rng.standard_normal(layer.w_shape) / np.sqrt(fan_in)).astype(dtype)
    b = (0.1 * rng.standard_normal(layer.c_out)).astype(dtype)
    grad_y = rng.standard_normal((batch, layer.c_out, layer.out, layer.out)).astype(dtype)
    return Problem(layer, x, w, b, grad_y, train)


class Peer:
    """A library timed beside fastconv.  ``name`` keys its results (``<name>_s``,
    ``vs_<name>``); ``title`` is what tables call it."""

    name = ""
    title = ""
    package = ""          # what must import for the peer to run
    extra = "peers"       # fastconv's optional extra that installs it

    def start(self, threads: int, dtype, log) -> None:
        """Import and configure the library (raises ImportError when it is missing)."""
        importlib.import_module(self.package)

    def supports(self, problem: Problem) -> bool:
        return True

    def job(self, problem: Problem):
        raise NotImplementedError


class TorchPeer(Peer):
    name, title, package, extra = "torch", "PyTorch", "torch", "torch"

    def start(self, threads, dtype, log):
        import torch

        torch.set_num_threads(threads)

    def job(self, problem):
        import torch

        layer = problem.layer
        x, w, b = (torch.from_numpy(a.copy()) for a in (problem.x, problem.w, problem.b))
        grad_y = torch.from_numpy(problem.grad_y)
        options = dict(stride=layer.stride, padding=layer.pad, dilation=layer.dilation, groups=layer.groups)
        conv = torch.nn.functional.conv_transpose2d if layer.transposed else torch.nn.functional.conv2d
        if not problem.train:
            def infer():
                with torch.no_grad():
                    return (conv(x, w, b, **options),)
            return infer
        for t in (x, w, b):
            t.requires_grad_(True)

        def train():
            y = conv(x, w, b, **options)
            x.grad = w.grad = b.grad = None
            y.backward(grad_y)
            return y.detach(), x.grad, w.grad, b.grad
        return train


class JaxPeer(Peer):
    name, title, package = "jax", "JAX", "jax"

    def start(self, threads, dtype, log):
        fresh = "jax" not in sys.modules
        saved = dict(os.environ)
        if fresh:
            os.environ["NPROC"] = str(threads)
            if threads == 1:
                os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                           + " --xla_cpu_multi_thread_eigen=false").strip()
        try:
            import jax

            jax.devices("cpu")      # the CPU client (and its thread pool) starts here
        finally:
            # NPROC and XLA_FLAGS were read: leave the environment as it was
            for key in ("NPROC", "XLA_FLAGS"):
                if key in saved:
                    os.environ[key] = saved[key]
                else:
                    os.environ.pop(key, None)
        if not fresh:
            log(f"JAX: imported before the bench set its thread count; XLA keeps its own ({threads} asked)")
        if np.dtype(dtype) == np.float64:
            jax.config.update("jax_enable_x64", True)

    def job(self, problem):
        import jax

        conv = _jax_conv(problem.layer)
        arrays = [jax.device_put(a) for a in (problem.x, problem.w, problem.b)]
        if problem.train:
            def forward_backward(x, w, b, grad_y):
                y, pullback = jax.vjp(conv, x, w, b)
                return (y, *pullback(grad_y))
            compiled = jax.jit(forward_backward)
            arrays.append(jax.device_put(problem.grad_y))
        else:
            compiled = jax.jit(lambda x, w, b: (conv(x, w, b),))

        def run():
            return jax.block_until_ready(compiled(*arrays))
        return run


def _jax_conv(layer):
    """``conv(x, w, b)`` in PyTorch's layouts and conventions, for `jax.jit`."""
    from jax import lax

    numbers = ("NCHW", "OIHW", "NCHW")
    s, d, g = layer.stride, layer.dilation, layer.groups

    def conv(x, w, b):
        if layer.transposed:
            # the transposed convolution is a stride-1 convolution of the stride-dilated
            # input with the flipped kernel, its in/out channels swapped within each group
            c_in, c_out_g, kh, kw = w.shape
            w = w.reshape(g, c_in // g, c_out_g, kh, kw).swapaxes(1, 2)
            w = w.reshape(g * c_out_g, c_in // g, kh, kw)[:, :, ::-1, ::-1]
            edge = d * (layer.k - 1) - layer.pad
            y = lax.conv_general_dilated(x, w, (1, 1), [(edge, edge)] * 2, lhs_dilation=(s, s),
                                         rhs_dilation=(d, d), dimension_numbers=numbers,
                                         feature_group_count=g)
        else:
            y = lax.conv_general_dilated(x, w, (s, s), [(layer.pad, layer.pad)] * 2, rhs_dilation=(d, d),
                                         dimension_numbers=numbers, feature_group_count=g)
        return y + b[None, :, None, None]
    return conv


class OnnxRuntimePeer(Peer):
    name, title, package = "onnxruntime", "ONNX Runtime", "onnxruntime"

    def start(self, threads, dtype, log):
        import onnx  # noqa: F401  (builds the models: part of this peer's install)
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Its pool's threads spin after each run by default, holding the cores the
        # next library's calls need: interleaved, that slowed everything timed after it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._options = options

    def supports(self, problem):
        return not problem.train and problem.x.dtype == np.float32

    def job(self, problem):
        import onnxruntime

        session = onnxruntime.InferenceSession(_onnx_conv_model(problem).SerializeToString(),
                                               sess_options=self._options, providers=["CPUExecutionProvider"])
        feeds = {"x": problem.x}

        def run():
            return tuple(session.run(None, feeds))
        return run


def _onnx_conv_model(problem: Problem):
    """A one-node Conv / ConvTranspose model: input ``x``, weights and bias as initializers."""
    from onnx import TensorProto, helper, numpy_helper

    layer = problem.layer
    node = helper.make_node(
        "ConvTranspose" if layer.transposed else "Conv", ["x", "w", "b"], ["y"],
        kernel_shape=[layer.k, layer.k], strides=[layer.stride] * 2, pads=[layer.pad] * 4,
        dilations=[layer.dilation] * 2, group=layer.groups)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(problem.x.shape))
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(problem.grad_y.shape))
    graph = helper.make_graph([node], "conv", [x_info], [y_info],
                              initializer=[numpy_helper.from_array(problem.w, "w"),
                                           numpy_helper.from_array(problem.b, "b")])
    # opset 17 / IR 8: old enough for any onnxruntime of the last years
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


PEERS = {peer.name: peer for peer in (TorchPeer, JaxPeer, OnnxRuntimePeer)}


def parse_names(text: str) -> list:
    """``--peers``: comma-separated names of `PEERS`, in the order given."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {', '.join(map(repr, unknown))}; known: {', '.join(PEERS)}")
    return list(dict.fromkeys(names))


def load(names, threads: int, dtype, log) -> list:
    """The named peers, started; a missing one is skipped with one line."""
    started = []
    for name in names:
        peer = PEERS[name]()
        try:
            peer.start(threads, dtype, log)
        except ImportError as exc:
            missing = getattr(exc, "name", None) or peer.package
            log(f"{peer.title}: skipped, cannot import {missing} (pip install 'fastconv[{peer.extra}]')")
            continue
        started.append(peer)
    return started


class PeerMismatch(AssertionError):
    """A peer's outputs differ from fastconv's by more than `TOLERANCE`."""


def check_outputs(reference, outputs, peer_title: str, what: str) -> None:
    """Each of a peer's ``outputs`` within `TOLERANCE` * max|reference| of fastconv's."""
    if len(outputs) != len(reference):
        raise PeerMismatch(f"{what}: {peer_title} returned {len(outputs)} outputs, fastconv {len(reference)}")
    for name, ref, out in zip(OUTPUT_NAMES, reference, outputs):
        out = np.asarray(out)
        if out.shape != ref.shape:
            raise PeerMismatch(f"{what}: {peer_title}'s {name} has shape {out.shape}, fastconv's {ref.shape}")
        scale = float(np.max(np.abs(ref))) or 1.0
        error = float(np.max(np.abs(out.astype(np.float64) - ref))) / scale
        if not error <= TOLERANCE:
            raise PeerMismatch(f"{what}: {peer_title} disagrees with fastconv on {name} by {error:.1e} "
                               f"of max|{name}| (tolerance {TOLERANCE:g})")
