"""`fastconv.functional`'s fully connected op: validated here, then run by
the backend's kernel where it has one (optional kernels, `fastconv.backends`), else
composed from NumPy -- the reference semantics."""

from __future__ import annotations

import numpy as np

from fastconv.functional.arguments import expect_shape, float_array, same_dtype
from fastconv.backends import optional_kernel


def _linear_args(x, w, what):
    x = float_array(x, "x", 2, "(N, in_features)")
    w = float_array(w, "w", 2, "(out_features, in_features)")
    same_dtype(x, "x", w=w)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"{what}: x has {x.shape[1]} features but w expects {w.shape[1]} "
                         f"(w is (out_features, in_features) = {w.shape})")
    return x, w


def linear(x, w, b=None) -> np.ndarray:
    """``x @ w.T + b`` (`torch.nn.functional.linear`): ``x`` (N, in), ``w`` (out, in),
    ``b`` (out,) or None; returns (N, out)."""
    x, w = _linear_args(x, w, "linear")
    if b is not None:
        b = float_array(b, "b", 1, "(out_features,)")
        same_dtype(x, "x", b=b)
        expect_shape(b, "b", (w.shape[0],))
    kernel = optional_kernel("linear")
    if kernel is not None:
        return kernel(x, w, b)
    y = x @ w.T                 # BLAS reads the transposed view, no copy
    if b is not None:
        y += b
    return y


def linear_backward(grad_y, x, w):
    """Gradients of `linear`: ``(grad_x, grad_w, grad_b)``, ``grad_b`` the column
    sums of ``grad_y`` (ignore it for a layer without bias)."""
    x, w = _linear_args(x, w, "linear_backward")
    grad_y = float_array(grad_y, "grad_y", 2, "(N, out_features)")
    same_dtype(x, "x", grad_y=grad_y)
    expect_shape(grad_y, "grad_y", (x.shape[0], w.shape[0]))
    kernel = optional_kernel("linear_backward")
    if kernel is not None:
        return kernel(grad_y, x, w)
    return grad_y @ w, grad_y.T @ x, grad_y.sum(axis=0)
