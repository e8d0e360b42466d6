"""The general convolutions' benchmark rows: the layers' geometry, that each call runs,
and that they are in the full run only."""

from __future__ import annotations

import numpy as np

import fastconv
from fastconv.benchmark import cases
from fastconv.benchmark.runner import general_conv_calls, kernel_calls


def test_general_layers():
    depthwise, dilated, transposed = cases.GENERAL_LAYERS
    assert depthwise.w_shape == (32, 1, 3, 3) and depthwise.out_size == 56
    assert dilated.out_size == 28 and "d2" in dilated.shape_text
    assert transposed.w_shape == (128, 64, 4, 4) and transposed.out_size == 32
    assert transposed.forward_flops == 2.0 * 16 * 16 * 16 * 128 * 64 * 16


def test_rows_run_and_are_in_the_suite():
    rows = list(general_conv_calls(np.float32))
    assert [r[0] for r in rows] == ["conv2d", "conv2d_backward"] * 2 + ["conv_transpose2d",
                                                                         "conv_transpose2d_backward"]
    assert len([r for r in kernel_calls(np.float32, quick=False) if r[1] in cases.GENERAL_LAYERS]) == 6
    assert not [r for r in kernel_calls(np.float32, quick=True) if r[1] in cases.GENERAL_LAYERS]
    with fastconv.use_backend("numba" if "numba" in fastconv.available_backends() else "numpy"):
        for kernel, layer, _, call in rows:
            out = call()
            first = out[0] if isinstance(out, tuple) else out
            assert first.shape[0] == layer.batch, kernel
