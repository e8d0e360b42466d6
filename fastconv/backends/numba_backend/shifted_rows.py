"""Shifted-view GEMMs with a kernel row's taps side by side (``kernels/shifted.py``).

`shifted` runs kh*kw GEMMs with K = C_in; with 16-32 input channels that inner
dimension is too short for BLAS (a 64 x 32 x 4096 product ran at 105 GFLOP/s per
core against 200 for 64 x 160 x 4096, OpenBLAS SkylakeX on an AMD EPYC, 2026-12-02).
Here the group's grid is first copied kw times, copy j shifted by tap column j's
offset, into one (kw*C_in)-row matrix, and the convolution runs as kh GEMMs with
K = kw*C_in on views of it: kw times the copy of `shifted`, still kh times less than
im2col.  The backward takes the input gradient on the stacked matrix and folds it
back.  An autotuning candidate only (the rule never picks it): whether the longer
GEMMs pay for the copies depends on the channels and on the BLAS.
"""

from __future__ import annotations

from fastconv.backends.numba_backend import shifted

NAME = "shifted_rows"
EXACT = True
FUSES_POOL = False
KERNELS = "shifted"          # the warm-up group's kernels live in kernels/shifted.py


def supports(x_shape, w_shape, stride, padding) -> bool:
    return w_shape[3] > 1 and shifted.supports(x_shape, w_shape, stride, padding)


def forward(x, w, b, stride, padding, relu):
    return shifted.forward(x, w, b, stride, padding, relu, stack_rows=True)


def backward(grad_y, x, w, mask, stride, padding, need_grad_x):
    return shifted.backward(grad_y, x, w, mask, stride, padding, need_grad_x, stack_rows=True)
