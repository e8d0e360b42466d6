"""The public convolution entry points of `fastconv.functional`.

Each one sends a call with a string padding or a dilation / groups other than 1 to
`fastconv.functional.general_conv` (`general_conv.applies`, cheap enough for every
forward) and every other call to `fastconv.functional.plain_conv`; the transposed
convolutions are always general.
"""

from __future__ import annotations

import numpy as np

from fastconv.functional import conv_params, general_conv, plain_conv
from fastconv.functional.arguments import output_hw, pair


def conv_output_size(in_hw, kernel_size, stride=1, padding=0, dilation=1) -> tuple[int, int]:
    """(out_h, out_w) of a convolution or pooling window over an (H, W) input."""
    if not conv_params.is_default(dilation):
        return conv_params.output_hw(
            in_hw, pair(kernel_size, "kernel_size", 1), pair(stride, "stride", 1),
            pair(padding, "padding", 0), pair(dilation, "dilation", 1), "conv_output_size")
    return output_hw(
        in_hw, pair(kernel_size, "kernel_size", 1), pair(stride, "stride", 1),
        pair(padding, "padding", 0), "conv_output_size",
    )


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """2-D cross-correlation plus bias, as `torch.nn.functional.conv2d`.

    x: ``(N, C_in, H, W)``; w: ``(C_out, C_in // groups, kh, kw)``; b: ``(C_out,)`` or
    None.  ``padding`` may also be ``"same"`` (stride 1) or ``"valid"``.
    Returns ``(N, C_out, out_h, out_w)``.
    """
    if general_conv.applies(padding, dilation, groups):
        return general_conv.conv2d(x, w, b, stride, padding, dilation, groups)
    return plain_conv.conv2d(x, w, b, stride, padding)


def conv2d_backward(grad_y, x, w, stride=1, padding=0, dilation=1, groups=1):
    """Gradients of `conv2d` w.r.t. its inputs: ``(grad_x, grad_w, grad_b)``."""
    if general_conv.applies(padding, dilation, groups):
        return general_conv.conv2d_backward(grad_y, x, w, stride, padding, dilation, groups)
    return plain_conv.conv2d_backward(grad_y, x, w, stride, padding)


# Fused ops: optional in a backend (see `fastconv.functional.plain_conv`).
def conv2d_relu(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """``max(conv2d(x, w, b, stride, padding), 0)``, fused into the convolution's
    write-out where the backend can.  Returns ``(N, C_out, out_h, out_w)``."""
    if general_conv.applies(padding, dilation, groups):
        return general_conv.conv2d_relu(x, w, b, stride, padding, dilation, groups)
    return plain_conv.conv2d_relu(x, w, b, stride, padding)


def conv2d_relu_backward(grad_y, y, x, w, stride=1, padding=0, input_grad=True, dilation=1, groups=1):
    """Gradients of `conv2d_relu`: ``(grad_x, grad_w, grad_b)``.

    ``y`` is the forward output (the ReLU passes gradient where ``y > 0``, so the
    gradient at exactly 0 is 0, as in PyTorch).  With ``input_grad=False`` (a
    network's first layer) ``grad_x`` is not computed and None is returned for it.
    """
    if general_conv.applies(padding, dilation, groups):
        return general_conv.conv2d_relu_backward(grad_y, y, x, w, stride, padding, input_grad,
                                                 dilation, groups)
    return plain_conv.conv2d_relu_backward(grad_y, y, x, w, stride, padding, input_grad)


def conv2d_backward_weights(grad_y, x, w, stride=1, padding=0, dilation=1, groups=1):
    """``(grad_w, grad_b)`` of `conv2d`, skipping the input gradient (a network's
    first layer, whose input is data, needs none)."""
    if general_conv.applies(padding, dilation, groups):
        return general_conv.conv2d_backward_weights(grad_y, x, w, stride, padding, dilation, groups)
    return plain_conv.conv2d_backward_weights(grad_y, x, w, stride, padding)


def conv2d_relu_avgpool2(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Report 000's block, conv + bias + ReLU + 2x2 average pooling (stride 2, floor
    mode): ``(pooled, y)`` with ``y = conv2d_relu(x, w, b, stride, padding)`` (kept
    for the backward pass and for feature-map plots) and ``pooled = avg_pool2d(y, 2)``."""
    if general_conv.applies(padding, dilation, groups):
        return general_conv.conv2d_relu_avgpool2(x, w, b, stride, padding, dilation, groups)
    return plain_conv.conv2d_relu_avgpool2(x, w, b, stride, padding)


def conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, stride=1, padding=0, input_grad=True,
                                  dilation=1, groups=1):
    """Gradients of `conv2d_relu_avgpool2`: ``(grad_x, grad_w, grad_b)``, from the
    gradient of ``pooled`` and the forward's ``y``; ``input_grad`` as in
    `conv2d_relu_backward`."""
    if general_conv.applies(padding, dilation, groups):
        return general_conv.conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, stride, padding,
                                                          input_grad, dilation, groups)
    return plain_conv.conv2d_relu_avgpool2_backward(grad_pooled, y, x, w, stride, padding, input_grad)


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Transposed convolution, as `torch.nn.functional.conv_transpose2d`: the input
    gradient of the convolution it transposes, plus bias.

    x: ``(N, C_in, H, W)``; w: ``(C_in, C_out // groups, kh, kw)``; b: ``(C_out,)`` or
    None.  Returns ``(N, C_out, H_out, W_out)`` with
    ``H_out = (H - 1)*stride - 2*padding + dilation*(kh - 1) + output_padding + 1``.
    """
    return general_conv.conv_transpose2d(x, w, b, stride, padding, output_padding, dilation, groups)


def conv_transpose2d_backward(grad_y, x, w, stride=1, padding=0, output_padding=0, dilation=1,
                              groups=1):
    """Gradients of `conv_transpose2d`: ``(grad_x, grad_w, grad_b)``."""
    return general_conv.conv_transpose2d_backward(grad_y, x, w, stride, padding, output_padding,
                                                  dilation, groups)
