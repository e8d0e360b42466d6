"""Convolution parameters: validation and normalisation of ``dilation``, ``groups``,
``padding="same"/"valid"`` and transposed convolution's ``output_padding``.

Everything here runs before any backend (and so any unchecked JIT kernel) sees the
arguments, and raises a `ValueError` / `TypeError` naming the offending argument.
The result is a `ConvSpec`: plain ``(h, w)`` tuples of Python ints that describe
one convolution, as the backends' general kernels take them.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from fastconv.functional import arguments

PADDING_MODES = ("same", "valid")


@dataclass(frozen=True)
class ConvSpec:
    """One convolution, validated: ``x (N, C_in, H, W) -> y (N, C_out, *out_hw)``.

    ``in_hw`` is the size the backend sees (after ``extra``); ``extra`` is the
    bottom/right zero padding that ``padding="same"`` adds beyond the symmetric
    ``padding`` for even dilated kernels (PyTorch pads that extra on the right).
    """

    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    in_hw: tuple
    out_hw: tuple
    extra: tuple = (0, 0)

    @property
    def plain(self) -> bool:
        """True when the backends' original kernels (no dilation, no groups) apply."""
        return self.dilation == (1, 1) and self.groups == 1

    @property
    def original_hw(self) -> tuple:
        """The caller's input size, before the ``extra`` padding."""
        return self.in_hw[0] - self.extra[0], self.in_hw[1] - self.extra[1]


def is_default(value) -> bool:
    """``value`` is exactly the int 1 or the tuple (1, 1) (so no normalising is needed)."""
    if type(value) is int:
        return value == 1
    return type(value) is tuple and len(value) == 2 and all(type(v) is int and v == 1 for v in value)


def groups_arg(groups) -> int:
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool):
        raise TypeError(f"groups must be a positive int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    return int(groups)


def check_groups(groups: int, c_in: int, c_out: int, what: str) -> None:
    """Both channel counts must split evenly into ``groups``."""
    if c_in % groups:
        raise ValueError(f"{what}: groups = {groups} must divide the input channels C_in = {c_in}")
    if c_out % groups:
        raise ValueError(f"{what}: groups = {groups} must divide the output channels C_out = {c_out}")


def dilated(kernel_size, dilation) -> tuple:
    """Extent of a dilated kernel: ``dilation * (k - 1) + 1`` per axis."""
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation))


def output_hw(in_hw, kernel_size, stride, padding, dilation, what) -> tuple:
    """Spatial output size of a (dilated) convolution; the dilated kernel must fit
    inside the padded input."""
    out = []
    for size, k, s, p, d, axis in zip(in_hw, kernel_size, stride, padding, dilation, ("height", "width")):
        extent = d * (k - 1) + 1
        if max(size + 2 * p, extent) > arguments.MAX_AXIS:
            raise ValueError(
                f"{what}: the padded input {axis} {size} + 2*{p} or the dilated kernel's extent "
                f"{extent} is more than 2**31 - 1 = {arguments.MAX_AXIS}")
        if extent > size + 2 * p:
            detail = f"{k}" if d == 1 else f"{k} at dilation {d} spans {extent}, which"
            raise ValueError(
                f"{what}: kernel {axis} {detail} is larger than the padded input {axis} "
                f"{size} + 2*{p} = {size + 2 * p}")
        out.append((size + 2 * p - extent) // s + 1)
    return out[0], out[1]


def padding_arg(padding, kernel_size, stride, dilation, what) -> tuple[tuple, tuple]:
    """``(symmetric padding, extra bottom/right padding)`` for an int, a pair or a mode.

    ``"same"`` (stride 1 only) keeps the input size: ``dilation * (k - 1)`` zeros in
    total per axis, half before, the odd one after, as PyTorch splits them.
    """
    if not isinstance(padding, str):
        return arguments.pair(padding, "padding", 0), (0, 0)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise ValueError(f"padding must be an int, an (h, w) pair, 'same' or 'valid', got {padding!r}")
    if stride != (1, 1):
        raise ValueError(f"{what}: padding='same' needs stride 1 (as in PyTorch), got stride {stride}")
    totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
    return tuple(t // 2 for t in totals), tuple(t % 2 for t in totals)


def conv_args(x, w, stride, padding, dilation, groups, what):
    """Validate a general convolution's arrays and hyper-parameters.

    Returns ``(x, w, spec)``; ``x`` is C-contiguous and, for ``padding="same"`` with
    an even dilated kernel, already carries the ``extra`` bottom/right zeros.
    """
    x = arguments.float_array(x, "x", 4, "(N, C_in, H, W)")
    w = arguments.float_array(w, "w", 4, "(C_out, C_in // groups, kh, kw)")
    arguments.same_dtype(x, "x", w=w)
    groups = groups_arg(groups)
    check_groups(groups, x.shape[1], w.shape[0], what)
    if w.shape[1] * groups != x.shape[1]:
        raise ValueError(
            f"{what}: channel mismatch, x has C_in = {x.shape[1]} channels, so with groups = {groups} "
            f"w must have C_in // groups = {x.shape[1] // groups} input channels, got w.shape = {w.shape}")
    stride = arguments.pair(stride, "stride", 1)
    dilation = arguments.pair(dilation, "dilation", 1)
    padding, extra = padding_arg(padding, w.shape[2:], stride, dilation, what)
    if extra != (0, 0):
        x = np.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    in_hw = x.shape[2:]
    out_hw = output_hw(in_hw, w.shape[2:], stride, padding, dilation, what)
    arguments.padded_fits(what, x.shape, padding, x.itemsize)
    arguments.check_fits_memory(what, "output", (x.shape[0], w.shape[0], *out_hw), x.itemsize,
                                "stride, padding and dilation")
    return x, w, ConvSpec(stride, padding, dilation, groups, in_hw, out_hw, extra)


def transpose_args(x, w, stride, padding, output_padding, dilation, groups, what):
    """Validate a transposed convolution; ``w`` is ``(C_in, C_out // groups, kh, kw)``.

    Returns ``(x, w, spec, output_padding)`` where ``spec`` describes the convolution
    whose input gradient this is: its input is the transposed output
    ``(N, C_out, *spec.in_hw)`` and its output is ``x`` (possibly fewer rows/columns
    than ``spec.out_hw`` when ``output_padding >= stride``).
    """
    x = arguments.float_array(x, "x", 4, "(N, C_in, H, W)")
    w = arguments.float_array(w, "w", 4, "(C_in, C_out // groups, kh, kw)")
    arguments.same_dtype(x, "x", w=w)
    groups = groups_arg(groups)
    if w.shape[0] != x.shape[1]:
        raise ValueError(f"{what}: channel mismatch, x has C_in = {x.shape[1]} channels but "
                         f"w.shape[0] = {w.shape[0]} (w has shape {w.shape})")
    check_groups(groups, x.shape[1], w.shape[1] * groups, what)
    stride = arguments.pair(stride, "stride", 1)
    if isinstance(padding, str):
        raise ValueError(f"{what}: padding must be an int or an (h, w) pair, got {padding!r} "
                         "('same' and 'valid' are for convolutions)")
    padding = arguments.pair(padding, "padding", 0)
    output_padding = arguments.pair(output_padding, "output_padding", 0)
    dilation = arguments.pair(dilation, "dilation", 1)
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= max(s, d):
            raise ValueError(f"{what}: output_padding {output_padding} must be smaller than "
                             f"stride {stride} or dilation {dilation}")
    in_hw = x.shape[2:]
    full_hw = []
    for size, k, s, p, op, d, axis in zip(in_hw, w.shape[2:], stride, padding, output_padding,
                                         dilation, ("height", "width")):
        size_out = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        if size_out < 1:
            raise ValueError(f"{what}: padding {padding} is too large, the output {axis} would be "
                             f"({size} - 1)*{s} - 2*{p} + {d}*({k} - 1) + {op} + 1 = {size_out}")
        full_hw.append(size_out)
    arguments.check_fits_memory(what, "output", (x.shape[0], w.shape[1] * groups, *full_hw), x.itemsize,
                                "stride, padding, output_padding and dilation")
    conv_out = output_hw(full_hw, w.shape[2:], stride, padding, dilation, what)
    spec = ConvSpec(stride, padding, dilation, groups, tuple(full_hw), conv_out)
    return x, w, spec, output_padding
