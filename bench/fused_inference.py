"""Inference with batch norms folded into the convolutions (`nn.fuse_conv_bn`), and
that copy frozen (`nn.freeze`: read-only weights, packed once), against the
eval-mode model and the same network in torch.nn, interleaved in one process
(`measure_interleaved`, medians, ms), at batch 1 and 8.

    python bench/fused_inference.py [NETWORK ...]     (default: every one of bench --networks)
"""

from __future__ import annotations

import sys

import numpy as np

from fastconv import nn
from fastconv.benchmark import networks
from fastconv.benchmark.timing import measure_interleaved


def main(names) -> None:
    options = dict(repeat=7, warmup=2, budget=2.0, min_seconds=0.5)
    print("network        batch   eval ms  fused ms frozen ms  torch ms  eval/fused  eval/frozen  torch/frozen")
    for name in names or networks.NETWORKS:
        for batch in networks.BATCHES["inference"]:
            model, torch_model, images, labels = networks._problem(name, batch, np.float32)
            eval_run = networks.fastconv_runner(model, images, labels, "inference")
            fused = nn.fuse_conv_bn(model)
            frozen = nn.freeze(fused)
            for copy in (fused, frozen):
                np.testing.assert_allclose(copy.forward(images), model.forward(images), rtol=1e-4, atol=1e-4)
            times = measure_interleaved({
                "eval": (eval_run, options, networks._fastconv_context),
                "fused": (lambda: fused.forward(images), options, networks._fastconv_context),
                "frozen": (lambda: frozen.forward(images), options, networks._fastconv_context),
                "torch": (networks.torch_runner(torch_model, images, labels, "inference"), options),
            })
            ms = {key: timing.median * 1e3 for key, timing in times.items()}
            print(f"{name:14} {batch:5} {ms['eval']:9.3f} {ms['fused']:9.3f} {ms['frozen']:9.3f} {ms['torch']:9.3f}"
                  f" {ms['eval'] / ms['fused']:11.2f} {ms['eval'] / ms['frozen']:12.2f}"
                  f" {ms['torch'] / ms['frozen']:13.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
