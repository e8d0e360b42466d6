"""Grouped and dilated convolution by im2col + GEMM, and transposed convolution by
GEMM + col2im, for the numba backend.

Work items are (image, group) pairs, split into one contiguous chunk per thread; no
Python loop over groups.  An item unfolds only its group's ``C_in/G`` input planes
into the thread's own column buffer ``(K, L)`` (``K = C_in/G * kh * kw``, a few
hundred KB: it stays in L2) and multiplies it with the group's ``(C_out/G, K)``
weights in one single-threaded BLAS call (`kernels/blas.py`; the caller limits BLAS to
one thread).  This is the plain GEMM path's design (``kernels/gemm.py``) per group, with
dilated window taps (``kernels/unfold_dilated.py``).

Backward per item: ``grad_w[g].T += cols @ G.T`` into the thread's partial sum,
then ``cols = W[g].T @ G`` and a col2im into the group's ``grad_x`` planes -- items
own whole planes, so no atomics.  The transposed convolution is exactly that input
gradient (``W[g].T @ x``, then a fold) with the bias added on write-out: one image's
group of columns at a time, never a whole-batch column buffer; its fold runs in the
output's stride phases (`kernels.phases`), one contiguous add per tap.

Everything trusts its caller (`numba_backend.grouped`): arrays C-contiguous, shapes
consistent, no bounds checks.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastconv.backends.numba_backend.kernels import blas
from fastconv.backends.numba_backend.kernels.phases import _fill_phases, _geometry, _read_phases, _tap_offset
from fastconv.backends.numba_backend.kernels.unfold_dilated import _col2im_plane_d, _im2col_plane_d
from fastconv.backends.numba_backend.kernels.vectors import add_rows, copy_rows, total

_PJIT = dict(cache=True, nogil=True, parallel=True)


@njit(cache=True, nogil=True)
def _unfold_group(x_img, c0, c1, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad, cols_flat):
    """Columns of input planes [c0, c1) of one image into ``cols_flat`` (K*L)."""
    windows = out_h * out_w
    for ci in range(c0, c1):
        _im2col_plane_d(x_img[ci], kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad, cols_flat,
                        (ci - c0) * kh * kw * windows, windows)


@njit(cache=True, nogil=True)
def _fold_group(cols_flat, c0, c1, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pad, out_img, bias):
    """col2im of ``cols_flat`` into planes [c0, c1) of ``out_img`` (overwritten) + bias."""
    windows = out_h * out_w
    for ci in range(c0, c1):
        _col2im_plane_d(cols_flat, (ci - c0) * kh * kw * windows, windows, kh, kw, sh, sw, ph, pw,
                        dh, dw, out_h, out_w, pad, out_img[ci], bias[ci])


@njit(cache=True, nogil=True)
def _phased_unfold(planes, phases, cols, at, kh, kw, sh, sw, dh, dw, ph, pw, phase_size, pwid,
                   in_h, in_w, sums):
    """Columns of ``planes`` (C, H, W) for an ``in_h x in_w`` output from column ``at``
    of ``cols``: each plane into its stride phases (``phases``: one plane's, zero
    padding), then ``in_h`` row copies per tap; ``sums[c]`` += the plane's total."""
    taps = kh * kw
    for c in range(planes.shape[0]):
        _fill_phases(phases, planes[c], ph, pw, sh, sw, phase_size, pwid)
        sums[c] += total(phases)                    # the padding is zero
        for t in range(taps):
            start = _tap_offset(t // kw, t % kw, sh, sw, dh, dw, phase_size, pwid)
            copy_rows(phases, start, pwid, in_h, in_w, cols[c * taps + t], at)


@njit(**_PJIT)
def grouped_forward(x, w3, b, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, pointwise, y3, ws_cols, n_chunks):
    """y3[n, g*Og:(g+1)*Og] = w3[g] @ cols(x[n, group g]) + b, items (image, group);
    ``pointwise`` (1x1, stride 1, no padding): the columns are the planes themselves."""
    n, c_in, height, width = x.shape
    groups, og, depth = w3.shape
    cg = c_in // groups
    windows = out_h * out_w
    items = n * groups
    for chunk in prange(n_chunks):
        cols_flat = ws_cols[chunk]
        cols = cols_flat.reshape((depth, windows))
        pad = np.zeros((height + 2 * ph, width + 2 * pw), dtype=x.dtype)
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // groups
            g = item - img * groups
            out = y3[img, g * og:(g + 1) * og]
            if pointwise:
                blas.gemm(w3[g], x[img, g * cg:(g + 1) * cg].reshape((cg, windows)), out)
            else:
                _unfold_group(x[img], g * cg, (g + 1) * cg, kh, kw, sh, sw, ph, pw, dh, dw,
                              out_h, out_w, pad, cols_flat)
                blas.gemm(w3[g], cols, out)
            for o in range(og):
                row = out[o]
                bias = b[g * og + o]
                for l in range(windows):
                    row[l] += bias


@njit(**_PJIT)
def grouped_backward(gy3, x, w3, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, need_grad_x, pointwise,
                     grad_x, gw_parts, gb_parts, ws_cols, n_chunks):
    """Chunk t adds its items' grad_w[g].T (K, Og) into ``gw_parts[t, g]`` and grad_b
    into ``gb_parts[t]``; ``grad_x`` planes of each item's group are overwritten.
    ``w3`` ``(G, Og, K)`` are the weights as given (BLAS reads them transposed)."""
    n, c_in, height, width = x.shape
    groups, og, depth = w3.shape
    cg = c_in // groups
    windows = out_h * out_w
    items = n * groups
    zero = np.zeros(c_in, dtype=x.dtype)
    for chunk in prange(n_chunks):
        cols_flat = ws_cols[chunk]
        cols = cols_flat.reshape((depth, windows))
        pad = np.zeros((height + 2 * ph, width + 2 * pw), dtype=x.dtype)   # zero border
        gpad = np.empty_like(pad)                                          # col2im's
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            img = item // groups
            g = item - img * groups
            grad = gy3[img, g * og:(g + 1) * og]
            for o in range(og):
                gb_parts[chunk, g * og + o] += total(grad[o])
            if pointwise:                              # the planes are the columns
                blas.gemm(x[img, g * cg:(g + 1) * cg].reshape((cg, windows)), grad.T, gw_parts[chunk, g], True)
                if need_grad_x:
                    blas.gemm(w3[g].T, grad, grad_x[img, g * cg:(g + 1) * cg].reshape((cg, windows)))
                continue
            _unfold_group(x[img], g * cg, (g + 1) * cg, kh, kw, sh, sw, ph, pw, dh, dw,
                          out_h, out_w, pad, cols_flat)
            blas.gemm(cols, grad.T, gw_parts[chunk, g], True)     # parts start zeroed
            if need_grad_x:
                blas.gemm(w3[g].T, grad, cols)         # the columns themselves are done with
                _fold_group(cols_flat, g * cg, (g + 1) * cg, kh, kw, sh, sw, ph, pw, dh, dw,
                            out_h, out_w, gpad, grad_x[img], zero)


@njit(cache=True, nogil=True)
def _item_of(item, n_batches, n_blocks):
    """(group, image batch, channel block) of a transposed-convolution work item."""
    g = item // (n_batches * n_blocks)
    rest = item - g * n_batches * n_blocks
    return g, rest // n_blocks, rest % n_blocks


@njit(**_PJIT)
def grouped_transpose(x3, w3, b, kh, kw, sh, sw, ph, pw, dh, dw, in_h, in_w, y, batch, block, ws_cols,
                      n_chunks):
    """Transposed convolution: y[n, group g] = fold(w3[g].T @ x3[n, group g]) + b.

    ``x3`` is the input ``(N, C_in, in_h*in_w)``; ``w3[g]`` is ``(C_in/G, C_out/G*kh*kw)``
    (the weights as given: BLAS reads them transposed, no copy);
    ``y`` ``(N, C_out, H_out, W_out)`` is the input of the convolution this transposes.
    The GEMM reads one image's group of ``x3`` in place (a batch: side by side in a
    copy); the fold adds each tap's column row, ``in_h`` rows of ``in_w``, into the
    output plane's stride phases (`kernels.phases`), where each lands contiguously.

    Work items are (group, batch of ``batch`` images, block of ``block`` output
    channels): images side by side in one GEMM when their planes are small, channel
    blocks on different threads when there are fewer images than threads.
    """
    n, c_out, height, width = y.shape
    groups, og, depth = w3.shape
    cg = c_out // groups
    taps = kh * kw
    phase_size, pwid = _geometry(height, width, ph, pw, sh, sw)
    win = in_h * in_w
    n_batches = -(-n // batch)
    n_blocks = -(-cg // block)
    items = groups * n_batches * n_blocks
    for chunk in prange(n_chunks):
        cols = ws_cols[chunk][:block * taps * batch * win].reshape((block * taps, batch * win))
        xs = np.empty((og if batch > 1 else 0, batch * win), dtype=y.dtype)   # a batch side by side
        acc = np.empty(sh * sw * phase_size, dtype=y.dtype)
        current = -1
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            g, bt, blk = _item_of(item, n_batches, n_blocks)
            img0 = bt * batch
            count = min(batch, n - img0)
            if count > 1 and g * n_batches + bt != current:
                current = g * n_batches + bt
                for i in range(count):
                    xs[:, i * win:(i + 1) * win] = x3[img0 + i, g * og:(g + 1) * og]
            c0 = blk * block
            c1 = min(cg, c0 + block)
            w_cols = w3[g][:, c0 * taps:c1 * taps].T
            if count == 1:
                blas.gemm(w_cols, x3[img0, g * og:(g + 1) * og], cols[:(c1 - c0) * taps, :win])
            else:
                blas.gemm(w_cols, xs[:, :count * win], cols[:(c1 - c0) * taps, :count * win])
            for i in range(count):
                for co in range(c0, c1):
                    acc[:] = 0
                    for t in range(taps):
                        add_rows(cols[(co - c0) * taps + t], i * win, in_h, in_w, acc,
                                 _tap_offset(t // kw, t % kw, sh, sw, dh, dw, phase_size, pwid), pwid)
                    channel = g * cg + co
                    _read_phases(acc, y[img0 + i, channel], ph, pw, sh, sw, phase_size, pwid, b[channel])


@njit(cache=True, nogil=True)
def _add_weight_grad(cols, x_rows, gw_group, c0, c1, transposed):
    """Rows [c0, c1) of a group's grad_w += x_rows @ cols.T; or, kept transposed as
    (K, C_in/G), its columns += cols @ x_rows.T."""
    if transposed:
        blas.gemm(cols, x_rows.T, gw_group[:, c0:c1], True)
    else:
        blas.gemm(x_rows, cols.T, gw_group[c0:c1], True)


@njit(**_PJIT)
def grouped_transpose_backward(gy, x3, w3, kh, kw, sh, sw, ph, pw, dh, dw, in_h, in_w, grad_x3,
                               gw_parts, w_transposed, gb_parts, batch, block, ws_cols, n_chunks):
    """Gradients of `grouped_transpose`.

    ``gy`` ``(N, C_out, H_out, W_out)`` is the output gradient, i.e. the input of the
    convolution being transposed, whose output is ``x3`` ``(N, C_in, in_h*in_w)``.
    An item unfolds its ``gy`` planes once through their stride phases
    (`_phased_unfold`: exactly the ``in_h*in_w`` windows, no garbage columns), and two
    GEMMs give ``grad_x = W[g] @ cols`` and ``grad_w[g] += x @ cols.T``, straight on
    ``x3`` and ``grad_x3`` for one image, through side-by-side copies for a batch.
    Chunk t adds into ``gw_parts[t, g]`` (C_in/G, K), or with ``w_transposed`` its
    transpose (K, C_in/G) as ``cols @ x.T`` (`_add_weight_grad`), and into ``gb_parts[t]``.

    Work items are (group, batch of images, block of ``block`` input channels of
    ``x``): a block's GEMMs take its rows of ``W[g]`` and of ``grad_w[g]``;
    each block unfolds the batch again, and only block 0 adds the bias gradient.
    """
    n, c_out, height, width = gy.shape
    groups, og, depth = w3.shape
    cg = c_out // groups
    phase_size, pwid = _geometry(height, width, ph, pw, sh, sw)
    win = in_h * in_w
    n_batches = -(-n // batch)
    n_blocks = -(-og // block)
    items = groups * n_batches * n_blocks
    for chunk in prange(n_chunks):
        cols = ws_cols[chunk][:depth * batch * win].reshape((depth, batch * win))
        phases = np.zeros(sh * sw * phase_size, dtype=gy.dtype)
        staged = block if batch > 1 else 0          # side-by-side x and grad_x of a batch
        xs = np.empty((staged, batch * win), dtype=gy.dtype)
        out = np.empty((staged, batch * win), dtype=gy.dtype)
        unused_sums = np.zeros(cg, dtype=gy.dtype)
        current = -1
        for item in range(items * chunk // n_chunks, items * (chunk + 1) // n_chunks):
            g, bt, blk = _item_of(item, n_batches, n_blocks)
            img0 = bt * batch
            count = min(batch, n - img0)
            if g * n_batches + bt != current:
                current = g * n_batches + bt
                sums = gb_parts[chunk, g * cg:(g + 1) * cg] if blk == 0 else unused_sums
                for i in range(count):
                    _phased_unfold(gy[img0 + i, g * cg:(g + 1) * cg], phases, cols, i * win, kh, kw,
                                   sh, sw, dh, dw, ph, pw, phase_size, pwid, in_h, in_w, sums)
            r0 = g * og + blk * block
            r1 = min((g + 1) * og, r0 + block)
            w_rows = w3[g][r0 - g * og:r1 - g * og]
            used = cols[:, :count * win]
            if count == 1:
                blas.gemm(w_rows, used, grad_x3[img0, r0:r1])
                _add_weight_grad(used, x3[img0, r0:r1], gw_parts[chunk, g], r0 - g * og, r1 - g * og, w_transposed)
                continue
            for i in range(count):
                xs[:r1 - r0, i * win:(i + 1) * win] = x3[img0 + i, r0:r1]
            blas.gemm(w_rows, used, out[:r1 - r0, :count * win])
            _add_weight_grad(used, xs[:r1 - r0, :count * win], gw_parts[chunk, g], r0 - g * og, r1 - g * og,
                             w_transposed)
            for i in range(count):
                grad_x3[img0 + i, r0:r1] = out[:r1 - r0, i * win:(i + 1) * win]


@njit(**_PJIT)
def sum_parts_transposed(parts, out, n_chunks):
    """``out[g, o, k] = sum_t parts[t, g, k, o]``: the threads' transposed weight
    gradients summed and turned back, in 32 x 32 tiles (NumPy's transposing copy of
    a 2048 x 256 part took 1.2 ms, twice the kernel that made it)."""
    chunks, groups, depth, og = parts.shape
    tile = 32
    k_tiles = -(-depth // tile)
    jobs = groups * k_tiles
    for chunk in prange(n_chunks):
        block = np.empty((tile, tile), dtype=parts.dtype)
        for job in range(jobs * chunk // n_chunks, jobs * (chunk + 1) // n_chunks):
            g = job // k_tiles
            k0 = (job - g * k_tiles) * tile
            rows = min(depth - k0, tile)
            for o0 in range(0, og, tile):
                cols = min(og - o0, tile)
                for r in range(rows):                   # sum along contiguous rows
                    acc = block[r]
                    src = parts[0, g, k0 + r, o0:o0 + cols]
                    for c in range(cols):
                        acc[c] = src[c]
                    for t in range(1, chunks):
                        src = parts[t, g, k0 + r, o0:o0 + cols]
                        for c in range(cols):
                            acc[c] += src[c]
                for c in range(cols):                   # write back transposed
                    dst = out[g, o0 + c, k0:k0 + rows]
                    for r in range(rows):
                        dst[r] = block[r, c]
