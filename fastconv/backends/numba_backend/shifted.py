"""Shifted-view GEMM convolution (``kernels/shifted.py``).

The GEMM path's im2col copies every input pixel kh*kw times in short row runs; on
the 8x8-32x32 planes of CIFAR ResNets that copy cost as much as the GEMM itself.
Here each group of images is copied once onto a zero-bordered grid and the
convolution runs as kh*kw accumulating GEMMs (K = C_in each) on shifted views of it
(Anderson et al.'s "kn2row" family, done on one flat padded grid).  Measured on one
core, 16 images: 1.3-2x faster than unfold + one GEMM for 16-64 channel 3x3 layers.

Strided layers run on the images' stride phases; measured there it wins only with
many channels (128->256 3x3/2), and loses 3x on a 3-channel 7x7/2 stem (49 GEMMs
with K = 3), so the rule keeps it to stride 1 and autotuning decides the rest.

With ``stack_rows`` (the `shifted_rows` algorithm) each kernel row's taps run as one
GEMM with K = kw*C_in on a kw-fold stacked copy of the grid (`tap_offsets`).

Exact: plain products and sums, like the GEMM path (only the order of the sum
differs).  Each numba thread takes a share of the images, in groups sized to stay
in L2; a batch smaller than the thread count is split into bands of grid rows.
"""

from __future__ import annotations

import functools
from collections import namedtuple

import numpy as np

from fastconv.backends.numba_backend import gemm
from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import shifted as _shifted

NAME = "shifted"
EXACT = True
FUSES_POOL = False

# A thread's grids for one group (input, output or gradient) should stay in L2 (2 MB
# per core here) next to BLAS's packing buffers.
_GROUP_BYTES = 1 << 20
_ALIGN = 16     # grid rows (per channel) start 64-byte aligned for float32


# A group's grid (the kernels take it as a plain tuple): strides, padding, stride
# phases stored per axis, rows per image, entries per row, entries per phase block.
Grid = namedtuple("Grid", "sh sw ph pw phases_h phases_w pitch width_g phase_size")


def supports(x_shape, w_shape, stride, padding) -> bool:
    return gemm.available()


def _axis(size, kernel, stride, pad, dilation):
    """Along one axis: (outputs, stride phases stored, grid rows per image or entries
    per row, each tap's (phase, shift)).  Tap i reads padded position
    ``o*stride + i*dilation``: phase ``i*dilation % stride``, shifted by
    ``i*dilation // stride``.  Every stored phase's data must fit, and each phase's
    furthest tap must reach no further than the zeros below (right of) the data
    before the next image's (row's) data starts."""
    out = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    taps = [divmod(i * dilation, stride)[::-1] for i in range(kernel)]
    phases = max(phase for phase, _ in taps) + 1
    need = out
    for phase in range(phases):
        first = max(0, -(-(pad - phase) // stride))     # first phase row holding data
        end = -(-(size + pad - phase) // stride)         # one past the last
        reach = max([shift for p, shift in taps if p == phase], default=0)
        need = max(need, end, out + reach - first)
    return out, phases, need, taps


@functools.lru_cache(maxsize=1024)      # ~12 us of Python per call otherwise (batch-1 layers: ~100 us)
def geometry(x_shape, w_shape, stride, padding, group, dilation=(1, 1)):
    """The `Grid` of ``group`` images (see ``kernels/shifted.py``), the output size
    and each tap's view offset (a cached array: not to be written).  Tap (i, j)'s
    offset is a row part (its row phase block and shift) plus a column part: see
    `tap_offsets`."""
    (sh, sw), (ph, pw) = stride, padding
    out_h, phases_h, pitch, rows = _axis(x_shape[2], w_shape[2], sh, ph, dilation[0])
    out_w, phases_w, width_g, cols = _axis(x_shape[3], w_shape[3], sw, pw, dilation[1])
    columns = ((group - 1) * pitch + out_h) * width_g
    reads = columns + max(s for _, s in rows) * width_g + max(s for _, s in cols)  # furthest view
    phase_size = -(-max(reads, group * pitch * width_g) // _ALIGN) * _ALIGN
    row_parts = np.array([a * phases_w * phase_size + i * width_g for a, i in rows], dtype=np.int64)
    col_parts = np.array([b * phase_size + j for b, j in cols], dtype=np.int64)
    offsets = (row_parts[:, None] + col_parts[None, :]).ravel()
    return (Grid(sh, sw, ph, pw, phases_h, phases_w, pitch, width_g, phase_size), (out_h, out_w), offsets,
            row_parts, col_parts)


def tap_offsets(grid_geometry, stack_rows):
    """(row offsets, column offsets) the kernels take: every tap a row of its own
    (column offsets ``[0]``), or with ``stack_rows`` the kernel rows' and columns'
    parts, a row's taps then read side by side from the stacked grid."""
    _, _, offsets, row_parts, col_parts = grid_geometry
    if stack_rows:
        return row_parts, col_parts
    return offsets, _ZERO_OFFSET


_ZERO_OFFSET = np.zeros(1, dtype=np.int64)


def _plan(n, channels, work, pitch, width_g, itemsize, split_small_batch):
    """(chunks, images per group, split_rows) for one call; ``channels``: the grid
    rows one image needs (input, output and gradient grids together)."""
    threads = rt.get_num_threads() if rt.single_threaded_blas.available else 1
    if split_small_batch and n < threads:
        return rt.chunks(threads, work, 1e6), n, True
    chunks = rt.chunks(n, work, 1e6) if threads > 1 else 1
    per_thread = -(-n // chunks)
    group = _GROUP_BYTES // max(1, channels * pitch * width_g * itemsize)
    return chunks, max(1, min(per_thread, group)), False


def _weight_rows(w, stack_rows):
    """w as one contiguous matrix per GEMM: (kh*kw, C_out, C_in), one per tap, or with
    ``stack_rows`` (kh, C_out, kw*C_in), a kernel row's taps side by side."""
    c_out, c_in, kh, kw = w.shape
    if stack_rows:
        return np.ascontiguousarray(w.transpose(2, 0, 3, 1)).reshape(kh, c_out, kw * c_in)
    return np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw, c_out, c_in)


def _one_image(x, w, stride, padding, dilation):
    """(one image's `Grid`, the output size, the stride phases stored, the call's work
    in flops counting the grid's dropped columns)."""
    one, out_hw = geometry(x.shape, w.shape, stride, padding, 1, dilation)[:2]
    return one, out_hw, one.phases_h * one.phases_w, 2.0 * x.shape[0] * w.size * one.pitch * one.width_g


def _stack_workspace(chunks, w, grid_geometry, columns, stack_rows, dtype):
    """Per-chunk buffer for the stacked grid: kw*C_in rows of the GEMMs' columns plus
    the furthest row offset (one entry per chunk when not stacking)."""
    if not stack_rows:
        return rt.workspace("shift_stack", chunks, dtype).reshape(chunks, -1)
    row_parts = grid_geometry[3]
    size = w.shape[1] * w.shape[3] * (columns + int(row_parts.max()))
    return rt.workspace("shift_stack", chunks * size, dtype).reshape(chunks, -1)


def forward(x, w, b, stride, padding, relu, dilation=(1, 1), stack_rows=False):
    """``stack_rows``: each kernel row's taps as one GEMM with K = kw*C_in, on a
    kw-fold copy of the grid (the `shifted_rows` algorithm)."""
    stride, padding, dilation = tuple(stride), tuple(padding), tuple(dilation)
    n, c_in = x.shape[:2]
    c_out, _, _, kw = w.shape
    one, (out_h, out_w), phases, work = _one_image(x, w, stride, padding, dilation)
    channels = c_in * (phases + (kw if stack_rows else 0)) + c_out
    chunks, group, split_rows = _plan(n, channels, work, one.pitch, one.width_g, x.itemsize, True)
    grid_geometry = geometry(x.shape, w.shape, stride, padding, group, dilation)
    grid = grid_geometry[0]
    size = phases * grid.phase_size
    rows = (group - 1) * grid.pitch + out_h
    span = (-(-rows // chunks) if split_rows else rows) * grid.width_g
    ws_grid = rt.workspace("shift_grid", chunks * c_in * size, x.dtype).reshape(chunks, -1)
    ws_stack = _stack_workspace(chunks, w, grid_geometry, span, stack_rows, x.dtype)
    ws_out = rt.workspace("shift_out", chunks * c_out * span, x.dtype).reshape(chunks, -1)
    y = np.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    with rt.single_threaded_blas:
        rt.launch(_shifted.shifted_forward, x, _weight_rows(w, stack_rows),
                  *tap_offsets(grid_geometry, stack_rows), b, tuple(grid), out_h, bool(relu),
                  group, split_rows, y, ws_grid, ws_stack, ws_out, chunks)
    return y


def backward(grad_y, x, w, mask, stride, padding, need_grad_x, dilation=(1, 1), stack_rows=False):
    stride, padding, dilation = tuple(stride), tuple(padding), tuple(dilation)
    n, c_in = x.shape[:2]
    c_out, _, kh, kw = w.shape
    out_h = grad_y.shape[2]
    one, _, phases, work = _one_image(x, w, stride, padding, dilation)
    channels = c_in * (phases * (2 if need_grad_x else 1) + (kw if stack_rows else 0)) + c_out
    chunks, group, _ = _plan(n, channels, work, one.pitch, one.width_g, x.itemsize, False)
    grid_geometry = geometry(x.shape, w.shape, stride, padding, group, dilation)
    grid = grid_geometry[0]
    size = phases * grid.phase_size
    columns = ((group - 1) * grid.pitch + out_h) * grid.width_g
    w_rows = _weight_rows(w, stack_rows)
    ws_grid = rt.workspace("shift_grid", chunks * c_in * size, x.dtype).reshape(chunks, -1)
    ws_stack = _stack_workspace(chunks, w, grid_geometry, columns, stack_rows, x.dtype)
    ws_grad = rt.workspace("shift_out", chunks * c_out * columns, x.dtype).reshape(chunks, -1)
    ws_gx = rt.workspace("shift_gx", chunks * c_in * size if need_grad_x else chunks,
                         x.dtype).reshape(chunks, -1)
    grad_w_parts = rt.parts_workspace("grad_w_parts", (chunks, *w_rows.shape), x.dtype)   # read by sum_taps
    grad_b_parts = np.empty((chunks, c_out), dtype=x.dtype)
    grad_x = np.empty_like(x) if need_grad_x else rt.dummy(x.dtype, 4)
    use_mask = mask is not None
    with rt.single_threaded_blas:
        rt.launch(_shifted.shifted_backward, grad_y, x, w_rows, *tap_offsets(grid_geometry, stack_rows),
                  mask if use_mask else rt.dummy(x.dtype, 4), use_mask, tuple(grid), group,
                  bool(need_grad_x), grad_x, grad_w_parts, grad_b_parts, ws_grid, ws_stack, ws_grad,
                  ws_gx, chunks)
    grad_w = np.empty((c_out, c_in, kh * kw), dtype=x.dtype)
    rt.launch(_shifted.sum_taps, grad_w_parts, kw if stack_rows else 1, grad_w,
              rt.chunks(c_out, grad_w_parts.size))
    grad_b = grad_b_parts[0] if chunks == 1 else grad_b_parts.sum(axis=0)
    return (grad_x if need_grad_x else None), grad_w.reshape(w.shape), grad_b
