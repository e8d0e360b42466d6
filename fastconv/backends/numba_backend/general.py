"""Entry points of the numba backend's general convolution kernels:
dilated im2col/col2im, grouped / dilated convolution and transposed convolution.

Depthwise problems (``groups == C_in``) with a small channel multiplier run the direct
kernels of `depthwise`.  Ungrouped dilated problems are timed per problem
(`_dilated_plans`) on the register blocks of `blocked` (with FMA), the GEMMs on
shifted views of `shifted` and, at stride 1, the undilated convolution engine on
sub-grids (`dilated`).  Grouped ones run `blocked` where the CPU has FMA and the
groups are wide enough (`_blocked_runs`; 4 groups of 32 channels, 3x3 at 28x28: 1.6 ms
forward against 4.8 for the per-group GEMMs), else the GEMMs of `grouped`, as
transposed convolution does.  Without a BLAS (neither MKL nor SciPy to bind, see
`blas`) what has no plan left falls back to the composition of
`fastconv.functional.compose` on this backend's unfold kernels.  Arguments arrive
validated and normalised by `fastconv.functional`.
"""

from __future__ import annotations

import sys

import numpy as np

from fastconv.backends.numba_backend import (blocked, conv, depthwise, dilated, frozen_weights, gemm, grouped,
                                             select, shifted)
from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import unfold_dilated as _unfold

# `blocked` takes a grouped convolution when each group has this many input and
# output channels (its blocks are 8 channels: fewer repeat the last one).
_BLOCKED_MIN_GROUP = 4

# Depthwise kernels while each group has at most this many output channels (forward
# + backward, 16 images, 3x3 @28: multiplier 8 1.4 ms against 2.6 for the GEMMs per
# group, 16 a tie, 64 16 ms against 8.7); for transposed convolution, at most this
# many input channels (4x4 stride 2 @14: multiplier 2 0.58 ms against 0.67, 4 1.0
# against 0.82).
_DEPTHWISE_MAX_MULTIPLIER = 8
_DEPTHWISE_MAX_MULTIPLIER_TRANSPOSED = 2


def _conv_out_hw(in_hw, kernel_size, stride, padding, dilation):
    return tuple((size + 2 * p - d * (k - 1) - 1) // s + 1
                 for size, k, s, p, d in zip(in_hw, kernel_size, stride, padding, dilation))


def im2col_dilated(x, kernel_size, stride, padding, dilation):
    x = rt.kernel_array(x)
    n, c = x.shape[:2]
    out_h, out_w = _conv_out_hw(x.shape[2:], kernel_size, stride, padding, dilation)
    cols = np.empty((n, c * kernel_size[0] * kernel_size[1], out_h * out_w), dtype=x.dtype)
    rt.launch(_unfold.im2col_dilated_into, x, *kernel_size, *stride, *padding, *dilation,
              out_h, out_w, cols, rt.chunks(n * c, cols.size))
    return cols


def col2im_dilated(cols, output_size, kernel_size, stride, padding, dilation):
    cols = rt.kernel_array(cols)
    n, rows, _ = cols.shape
    out_h, out_w = _conv_out_hw(output_size, kernel_size, stride, padding, dilation)
    out = np.empty((n, rows // (kernel_size[0] * kernel_size[1]), *output_size), dtype=cols.dtype)
    rt.launch(_unfold.col2im_dilated_from, cols, *kernel_size, *stride, *padding, *dilation,
              out_h, out_w, out, rt.chunks(out.shape[0] * out.shape[1], cols.size))
    return out


def _composed():
    """Fallback without BLAS: `fastconv.functional.compose` on this backend's kernels."""
    from fastconv.functional import compose as conv_compose

    return conv_compose, sys.modules["fastconv.backends.numba_backend"]


def _spec(x_shape, w_shape, stride, padding, dilation, groups):
    from fastconv.functional.conv_params import ConvSpec

    out_hw = _conv_out_hw(x_shape[2:], w_shape[2:], stride, padding, dilation)
    return ConvSpec(stride, padding, dilation, groups, tuple(x_shape[2:]), out_hw)


def _depthwise_runs(x_shape, w_shape, groups) -> bool:
    """Depthwise, with a small multiplier or no BLAS for the GEMMs."""
    return depthwise.supports(x_shape, w_shape, groups) and (
        w_shape[0] // groups <= _DEPTHWISE_MAX_MULTIPLIER or not gemm.available())


def _depthwise_transpose_runs(w_shape, groups) -> bool:
    """The convolution it transposes is depthwise, ... as `_depthwise_runs`."""
    return w_shape[1] == 1 and (
        w_shape[0] // groups <= _DEPTHWISE_MAX_MULTIPLIER_TRANSPOSED or not gemm.available())


def _blocked_runs(w_shape, groups) -> bool:
    """Dilated and grouped convolutions run `blocked` where autotuning times it
    (`blocked.worth_timing`); grouped ones where each group has channels enough for its register
    blocks and the kernel is more than 1x1 (a grouped 1x1 layer is a GEMM per group
    without any unfolding: 3.1 ms forward + backward against 3.4 for `blocked`)."""
    if not blocked.worth_timing():
        return False
    return groups == 1 or (min(w_shape[0] // groups, w_shape[1]) >= _BLOCKED_MIN_GROUP
                           and w_shape[2] * w_shape[3] > 1)


def _dilated_pass(direction, dilation):
    """The autotuning pass of a dilated problem: the dilation is not in the key."""
    return f"dilated_{direction}/dilation{dilation}"


def _dilated_plans(stride, dilation, groups) -> tuple:
    """What an ungrouped dilated problem is timed on, the rule's choice first:
    `blocked` (with FMA), the GEMMs on shifted views (with a BLAS) and, at stride 1,
    the sub-grids of `dilated`.  Measured here: `blocked` ran DeepLab's 256-channel
    dilation-2 layer fastest forward, `shifted` its 512-channel dilation-4 backward
    (100 ms against 135 for `blocked`, batch 8 at 14x14), the sub-grids the
    dilation-2 forward at batch 8 (8 ms against 11) and most layers at batch 1
    when `blocked` was not timed; none won everywhere.  Empty: not a case for them."""
    if groups != 1 or dilation == (1, 1):
        return ()
    plans = ("blocked",) if blocked.worth_timing() else ()
    plans += ("shifted",) if gemm.available() else ()
    return plans + (("composed",) if dilated.applies(stride, dilation, groups) else ())


def conv2d_general(x, w, b, stride, padding, dilation, groups):
    frozen, weights = frozen_weights.frozen(w), w
    x, w = rt.kernel_array(x), (frozen_weights.writable(w) if frozen else rt.kernel_array(w))
    b = np.zeros(w.shape[0], dtype=x.dtype) if b is None else frozen_weights.weight_array(b)
    if _depthwise_runs(x.shape, w.shape, groups):
        return depthwise.forward(x, w, b, stride, padding, dilation)
    plans = _dilated_plans(stride, dilation, groups)
    if not plans:
        return _grouped_forward(x, w, b, stride, padding, dilation, groups)
    out_hw = _conv_out_hw(x.shape[2:], w.shape[2:], stride, padding, dilation)
    if frozen and gemm.available() and gemm.packed_fits(x.shape[0] * out_hw[0] * out_hw[1], timed=True):
        plans += ("packed",)      # frozen weights' panels: every tap, no unfold

    def run(plan):
        if plan == "packed":
            return gemm.forward_packed(x, frozen_weights.panels(weights), b, stride, padding, False, out_hw,
                                       w.shape[0], w.shape[2:], dilation)
        if plan == "composed":
            return dilated.forward(x, w, b, padding, dilation)
        if plan == "blocked":
            return blocked.forward(x, w, b, stride, padding, False, dilation)
        return shifted.forward(x, w, b, stride, padding, False, dilation)

    return select.run_chosen(_dilated_pass("forward frozen" if frozen else "forward", dilation), x, w, stride,
                             padding, run, plans=plans)


def _grouped_forward(x, w, b, stride, padding, dilation, groups):
    """A grouped convolution (or, without a BLAS, any): the kernels that take it as it is."""
    if _blocked_runs(w.shape, groups):
        return blocked.forward(x, w, b, stride, padding, False, dilation)
    if not gemm.available():
        compose, backend = _composed()
        return compose.conv2d(backend, x, w, b, _spec(x.shape, w.shape, stride, padding, dilation, groups))
    return grouped.forward(x, w, b, stride, padding, dilation, groups)


def conv2d_general_backward(grad_y, x, w, stride, padding, dilation, groups, input_grad):
    grad_y, x, w = rt.kernel_array(grad_y), rt.kernel_array(x), frozen_weights.weight_array(w)
    if _depthwise_runs(x.shape, w.shape, groups):
        return depthwise.backward(grad_y, x, w, stride, padding, dilation, input_grad)
    plans = _dilated_plans(stride, dilation, groups)
    if not plans:
        return _grouped_backward(grad_y, x, w, stride, padding, dilation, groups, input_grad)

    def run(plan):
        if plan == "composed":
            return dilated.backward(grad_y, x, w, padding, dilation, input_grad)
        if plan == "blocked":
            return blocked.backward(grad_y, x, w, None, stride, padding, input_grad, dilation)
        return shifted.backward(grad_y, x, w, None, stride, padding, input_grad, dilation)

    return select.run_chosen(_dilated_pass("backward" if input_grad else "weights", dilation), x, w, stride,
                             padding, run, plans=plans)


def _grouped_backward(grad_y, x, w, stride, padding, dilation, groups, input_grad):
    """The backward of `_grouped_forward`."""
    if _blocked_runs(w.shape, groups):
        return blocked.backward(grad_y, x, w, None, stride, padding, input_grad, dilation)
    if not gemm.available():
        compose, backend = _composed()
        spec = _spec(x.shape, w.shape, stride, padding, dilation, groups)
        return compose.conv2d_backward(backend, grad_y, x, w, spec, input_grad)
    return grouped.backward(grad_y, x, w, stride, padding, dilation, groups, input_grad)


def conv_transpose2d(x, w, b, stride, padding, output_padding, dilation, groups):
    x, w = rt.kernel_array(x), frozen_weights.weight_array(w)
    c_out = w.shape[1] * groups
    b = np.zeros(c_out, dtype=x.dtype) if b is None else frozen_weights.weight_array(b)
    out_hw = tuple((size - 1) * s - 2 * p + d * (k - 1) + op + 1 for size, k, s, p, op, d in zip(
        x.shape[2:], w.shape[2:], stride, padding, output_padding, dilation))
    if _depthwise_transpose_runs(w.shape, groups):
        return depthwise.transpose(x, w, b, stride, padding, dilation, groups, out_hw)
    if not gemm.available():
        compose, backend = _composed()
        spec = _spec((x.shape[0], c_out, *out_hw), w.shape, stride, padding, dilation, groups)
        return compose.conv_transpose2d(backend, x, w, b, spec)
    conv_padding = _stride1_conv_padding(w.shape, stride, padding, output_padding, dilation)
    if conv_padding is None:
        return grouped.transpose(x, w, b, stride, padding, dilation, groups, out_hw)
    w_conv = _as_conv_weights(w, groups)

    def run(plan):
        if plan == "composed":
            return _composed_transpose(x, w_conv, b, conv_padding, dilation, groups)
        return grouped.transpose(x, w, b, stride, padding, dilation, groups, out_hw)

    # Timed per problem as the backward's plans are: at stride 1 the convolution
    # engine (Winograd, `blocked`, shifted GEMMs) may beat the fused kernel.
    return select.run_chosen(_transpose_pass("forward", dilation), x, w_conv, stride, conv_padding, run,
                             plans=select.PLANS)


def _transpose_pass(direction, dilation):
    """The autotuning pass of a transposed problem (dilation is not in the key)."""
    name = f"transpose_{direction}"
    return name if dilation == (1, 1) else f"{name}/dilation{dilation}"


def _stride1_conv_padding(w_shape, stride, padding, output_padding, dilation):
    """The padding of the convolution a stride-1 transposed convolution is (of ``x``
    by the flipped, transposed kernel: ``d*(k - 1) - p``), or None where there is
    none (stride > 1, an output_padding, a padding wider than the dilated kernel)."""
    if stride != (1, 1) or output_padding != (0, 0):
        return None
    conv_padding = tuple(d * (k - 1) - p for k, p, d in zip(w_shape[2:], padding, dilation))
    return conv_padding if min(conv_padding) >= 0 else None


def _as_conv_weights(w, groups):
    """(C_in, C_out/G, kh, kw) transposed-convolution weights as the (C_out, C_in/G,
    kh, kw) weights of the convolution it is at stride 1: each group's channel axes
    swapped, the kernel flipped."""
    c_in, cg, kh, kw = w.shape
    per_group = w.reshape(groups, c_in // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(per_group[..., ::-1, ::-1]).reshape(groups * cg, c_in // groups, kh, kw)


def _composed_transpose(x, w_conv, b, conv_padding, dilation, groups):
    """A stride-1 transposed convolution on the convolution entry points."""
    if dilation == (1, 1) and groups == 1:
        return conv.conv2d(x, w_conv, b, (1, 1), conv_padding)
    return conv2d_general(x, w_conv, b, (1, 1), conv_padding, dilation, groups)


def conv_transpose2d_backward(grad_y, x, w, stride, padding, output_padding, dilation, groups):
    grad_y, x, w = rt.kernel_array(grad_y), rt.kernel_array(x), frozen_weights.weight_array(w)
    if _depthwise_transpose_runs(w.shape, groups):
        return depthwise.transpose_backward(grad_y, x, w, stride, padding, dilation)
    if not gemm.available():
        from fastconv.functional import general_conv as conv_general   # composes this backend's kernels

        return conv_general.compose_transpose_backward(grad_y, x, w, stride, padding, dilation, groups)

    def run(plan):
        if plan == "composed":
            return _composed_transpose_backward(grad_y, x, w, stride, padding, dilation, groups)
        return grouped.transpose_backward(grad_y, x, w, stride, padding, dilation, groups)

    if any(op >= s for op, s in zip(output_padding, stride)):
        return run("fused")       # the convolution of grad_y would have an extra row or column
    # Timed per problem: the fused kernel won on DCGAN's 4x4 stride-2 layers here,
    # the composition (Winograd, `blocked`) on stride-1 and 4x4-input ones.
    return select.run_chosen(_transpose_pass("backward", dilation), grad_y, w, stride, padding, run,
                             plans=select.PLANS)


def _composed_transpose_backward(grad_y, x, w, stride, padding, dilation, groups):
    """``grad_x`` is the convolution of ``grad_y`` by ``w``, ``grad_w`` the weight
    gradient of that convolution with ``x`` as its output gradient: both on the
    convolution entry points, with their own algorithm choice."""
    if dilation == (1, 1) and groups == 1:
        grad_x = conv.conv2d(grad_y, w, None, stride, padding)
        grad_w, _ = conv.conv2d_backward_weights(x, grad_y, w, stride, padding)
    else:
        grad_x = conv2d_general(grad_y, w, None, stride, padding, dilation, groups)
        _, grad_w, _ = conv2d_general_backward(x, grad_y, w, stride, padding, dilation, groups, False)
    return grad_x, grad_w, grad_y.sum(axis=(0, 2, 3))


def warm(dtype) -> None:
    """Run every kernel here once on tiny ``dtype`` inputs (for `warmup`)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 6, 5)).astype(dtype)
    one, two = (1, 1), (2, 2)
    cols = im2col_dilated(x, (2, 2), one, one, two)
    col2im_dilated(cols, (6, 5), (2, 2), one, one, two)
    for w, groups in ((rng.standard_normal((8, 1, 3, 3)), 4), (rng.standard_normal((4, 2, 3, 3)), 2),
                      (rng.standard_normal((3, 4, 3, 3)), 1)):      # depthwise, grouped, dilated
        w = w.astype(dtype)
        y = conv2d_general(x, w, None, one, one, two, groups)
        conv2d_general_backward(y, x, w, one, one, two, groups, True)
        x_t = conv_transpose2d(y, w, None, one, one, (0, 0), two, groups)
        conv_transpose2d_backward(x_t, y, w, one, one, (0, 0), two, groups)
