"""Winograd F(4x4, 3x3) convolution for 3x3, stride-1 layers (``kernels/winograd.py``).

36 multiplies per 4x4 output tile and channel instead of 144; the channel sums are
36 GEMMs per block of tiles, each on one thread with single-threaded BLAS.  Blocks
are whole rows of tiles across the batch, so small batches still use every thread.

* forward: filters transformed once per call, then per block: input transform,
  36 GEMMs, output transform with bias and ReLU into NCHW;
* input gradient: the same forward on the (ReLU-masked) output gradient with the
  flipped, transposed filters and padding ``2 - p`` (so padding must be <= 2);
* weight gradient: ``dU += (A dY A^T) @ (B^T d B)^T`` per block, ``G^T dU G`` once.

Not exact: the transforms round differently from direct summation (float32 error
~1e-6 of max|y| on training-sized layers, see docs/conv-algorithms.md); `select`
leaves it out when only exact algorithms are allowed.
"""

from __future__ import annotations

import numpy as np

from fastconv.backends.numba_backend import gemm
from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend.kernels import winograd as _wino

NAME = "winograd"
EXACT = False
FUSES_POOL = False

# Forward: a block's transformed input and output (36 x (C + K) x tiles) should
# stay in L2 (1 MB per core here) next to the BLAS packing buffers.
_BLOCK_BYTES = 1 << 20
# Weight gradient: each block's 36 GEMMs ``Z @ V^T`` have the block's tiles as their
# inner dimension and write a whole (K, C) partial; with L2-sized blocks (14-56 tiles
# on 8-32 pixel planes) the GEMMs ran at ~75 GFLOP/s and adding the partials cost as
# much again.  So the blocks grow to >= 256 tiles, up to 8 MB per thread.
_GRAD_MIN_TILES = 256
_GRAD_BLOCK_BYTES = 8 << 20
# A batch whose transformed input and output fit in this many bytes runs as one
# block split over the 36 points (``kernels/winograd.py``, "whole batch").
_WHOLE_BATCH_BYTES = 12 << 20
# The transforms run on groups of tile rows of about this many tiles: vectors long
# enough, scratch small enough to stay in L1/L2.
_GROUP_TILES = 256
_TILE = _wino.TILE


def supports(x_shape, w_shape, stride, padding) -> bool:
    return (tuple(w_shape[2:]) == (3, 3) and tuple(stride) == (1, 1)
            and max(padding) <= 2 and gemm.available())


def _plan(n, c_in, k_out, out_h, out_w, itemsize, weight_grad=False):
    """(chunks, tile rows per block) for one call."""
    tile_h = -(-out_h // _TILE)
    tiles = -(-out_w // _TILE)
    total_rows = n * tile_h
    per_tile = 36 * (c_in + k_out) * itemsize
    rows = max(1, _BLOCK_BYTES // (per_tile * tiles))
    if weight_grad:
        rows = max(rows, min(-(-_GRAD_MIN_TILES // tiles), _GRAD_BLOCK_BYTES // (per_tile * tiles)))
    threads = rt.get_num_threads() if rt.single_threaded_blas.available else 1
    rows = min(rows, -(-total_rows // threads))          # at least one block per thread
    blocks = -(-total_rows // rows)
    work = 2.0 * n * out_h * out_w * k_out * c_in * 9
    return rt.chunks(blocks, work, 1e6) if threads > 1 else 1, rows


def _point_stride(rows, cols, itemsize):
    """Elements between consecutive points' (rows, cols) matrices in a workspace.

    The transforms touch all 36 points per tile; matrices a multiple of 2 KB apart
    map those 36 streams onto one or two L1 sets, which thrashed (input transform
    1.3-1.7x slower).  Starting each matrix 64 bytes past a 4 KB boundary spreads
    them over the sets."""
    page = 4096 // itemsize
    return -(-rows * cols // page) * page + 64 // itemsize


def _workspaces(names_rows, chunks, block_tiles, dtype):
    """Per-thread workspaces for the points' matrices: [(array, point stride)]."""
    out = []
    for name, rows in names_rows:
        stride = _point_stride(rows, block_tiles, np.dtype(dtype).itemsize)
        out.append((rt.workspace(name, chunks * 36 * stride, dtype).reshape(chunks, -1), stride))
    return out


def _filters(w):
    # A workspace, not a fresh array: U is 4x the weights (9.4 MB for 256->256), and
    # a fresh one page-faults in again (256->256 @7, batch 8: median 3.5 ms a call
    # against 2.0)
    u = rt.workspace("wino_u", 36 * w.shape[0] * w.shape[1], w.dtype).reshape(36, w.shape[0], w.shape[1])
    rt.launch(_wino.filter_transform, w, u, rt.chunks(w.shape[0], 36.0 * w.shape[0] * w.shape[1] * 20, 2e5))
    return u


def _whole_batch(n, c_in, k_out, out_h, out_w, itemsize, plan=None):
    """The batch's tile count when it runs as one block split over points, else 0;
    ``plan`` "points" / "blocks" forces one (the warm-up compiles both)."""
    tiles_all = n * -(-out_h // _TILE) * -(-out_w // _TILE)
    if plan is None:
        plan = "points" if 36 * (c_in + k_out) * tiles_all * itemsize <= _WHOLE_BATCH_BYTES else "blocks"
    return tiles_all if plan == "points" else 0


def _group_rows(n, out_h, out_w, rows=None):
    """Tile rows per transform group (at most ``rows``, a block's)."""
    group = min(n * -(-out_h // _TILE), max(1, _GROUP_TILES // -(-out_w // _TILE)))
    return group if rows is None else min(group, rows)


def _point_chunks(work):
    return rt.chunks(36, work, 1e6) if rt.single_threaded_blas.available else 1


def _input_points(x, padding, out_h, out_w, tiles_all):
    """(V of every tile, its point stride), split over input channels."""
    c_in = x.shape[1]
    (ws_v, v_stride), = _workspaces((("wino_v", c_in),), 1, tiles_all, x.dtype)
    rt.launch(_wino.input_points, x, padding[0], padding[1], -(-out_h // _TILE), -(-out_w // _TILE),
              _group_rows(x.shape[0], out_h, out_w), ws_v[0], v_stride,
              rt.chunks(c_in, 36.0 * 12 * c_in * tiles_all, 2e5))
    return ws_v[0], v_stride


def forward(x, w, b, stride, padding, relu, plan=None):
    n, c_in, height, width = x.shape
    k_out = w.shape[0]
    out_h, out_w = rt.out_hw(height, width, (3, 3), stride, padding)
    y = np.empty((n, k_out, out_h, out_w), dtype=x.dtype)
    tiles_all = _whole_batch(n, c_in, k_out, out_h, out_w, x.itemsize, plan)
    u = _filters(w)
    if tiles_all:
        v, v_stride = _input_points(x, padding, out_h, out_w, tiles_all)
        (ws_m, m_stride), = _workspaces((("wino_m", k_out),), 1, tiles_all, x.dtype)
        with rt.single_threaded_blas:
            rt.launch(_wino.forward_points, u, v, v_stride, ws_m[0], m_stride, tiles_all,
                      _point_chunks(72.0 * k_out * c_in * tiles_all))
        rt.launch(_wino.output_points, ws_m[0], m_stride, b, bool(relu), -(-out_h // _TILE),
                  -(-out_w // _TILE), _group_rows(n, out_h, out_w), y,
                  rt.chunks(k_out, 36.0 * 10 * k_out * tiles_all, 2e5))
        return y
    chunks, rows = _plan(n, c_in, k_out, out_h, out_w, x.itemsize)
    block_tiles = rows * -(-out_w // _TILE)
    (ws_v, v_stride), (ws_m, m_stride) = _workspaces(
        (("wino_v", c_in), ("wino_m", k_out)), chunks, block_tiles, x.dtype)
    with rt.single_threaded_blas:
        rt.launch(_wino.winograd_forward, x, u, b, padding[0], padding[1], bool(relu), rows,
                  _group_rows(n, out_h, out_w, rows), y, ws_v, ws_m, v_stride, m_stride, chunks)
    return y


def _masked(grad_y, mask):
    if mask is None:
        return grad_y
    out = np.empty_like(grad_y)
    rt.launch(_wino.relu_masked, grad_y, mask, out, rt.chunks(grad_y.shape[0], grad_y.size, 1e5))
    return out


def _transform_domain_grad(grad_y, x, padding, plan):
    """(dU (36, K, C), per-channel bias sums (K, *)), in one of the two plans."""
    n, c_in = x.shape[:2]
    _, k_out, out_h, out_w = grad_y.shape
    tiles = -(-out_w // _TILE)
    tiles_all = _whole_batch(n, c_in, k_out, out_h, out_w, x.itemsize, plan)
    if tiles_all:
        v, v_stride = _input_points(x, padding, out_h, out_w, tiles_all)
        (ws_z, z_stride), = _workspaces((("wino_m", k_out),), 1, tiles_all, x.dtype)
        bias_sums = np.zeros((k_out, _TILE * tiles), dtype=np.float64)
        rt.launch(_wino.gradient_points, grad_y, -(-out_h // _TILE), tiles, _group_rows(n, out_h, out_w),
                  ws_z[0], z_stride, bias_sums, rt.chunks(k_out, 36.0 * 10 * k_out * tiles_all, 2e5))
        du = rt.workspace("wino_du", 36 * k_out * c_in, x.dtype).reshape(36, k_out, c_in)
        with rt.single_threaded_blas:
            rt.launch(_wino.weight_grad_points, ws_z[0], z_stride, v, v_stride, tiles_all, du,
                      _point_chunks(72.0 * k_out * c_in * tiles_all))
        return du, bias_sums
    chunks, rows = _plan(n, c_in, k_out, out_h, out_w, x.itemsize, weight_grad=True)
    (ws_v, v_stride), (ws_z, z_stride) = _workspaces(
        (("wino_v", c_in), ("wino_m", k_out)), chunks, rows * tiles, x.dtype)
    du_parts = rt.workspace("wino_du", chunks * 36 * k_out * c_in, x.dtype).reshape(
        chunks, 36, k_out, c_in)                                    # chunks <= blocks: all written
    gb_parts = np.zeros((chunks, k_out, _TILE * tiles), dtype=np.float64)
    with rt.single_threaded_blas:
        rt.launch(_wino.winograd_weight_grad, grad_y, x, padding[0], padding[1], rows,
                  _group_rows(n, out_h, out_w, rows), du_parts, gb_parts, ws_v, ws_z, v_stride,
                  z_stride, chunks)
    return (du_parts[0] if chunks == 1 else du_parts.sum(axis=0)), gb_parts.sum(axis=0)


def _weight_grad(grad_y, x, w, padding, plan=None):
    du, bias_sums = _transform_domain_grad(grad_y, x, padding, plan)
    grad_w = np.empty_like(w)
    k_out, c_in = w.shape[:2]
    rt.launch(_wino.filter_gradient, du, grad_w, rt.chunks(k_out, 36.0 * k_out * c_in * 20, 2e5))
    return grad_w, bias_sums.sum(axis=1).astype(x.dtype)


def backward(grad_y, x, w, mask, stride, padding, need_grad_x, plan=None):
    grad_y = _masked(grad_y, mask)
    grad_w, grad_b = _weight_grad(grad_y, x, w, padding, plan)
    grad_x = None
    if need_grad_x:
        flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        zeros = np.zeros(w.shape[1], dtype=x.dtype)
        grad_x = forward(grad_y, flipped, zeros, (1, 1), (2 - padding[0], 2 - padding[1]), False, plan)
    return grad_x, grad_w, grad_b


def warm(x, w, b):
    """Compile the plan the warm-up's tiny problem does not take (it takes "points")."""
    y = forward(x, w, b, (1, 1), (1, 1), True, plan="blocks")
    backward(np.ones_like(y), x, w, y, (1, 1), (1, 1), True, plan="blocks")
