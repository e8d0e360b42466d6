"""Where Winograd time goes, one core (min of 15 runs; the profile tables in
docs/conv-algorithms.md):

* forward: input transform, the 36 GEMMs, output transform;
* weight gradient: input transform, output-gradient transform, the 36 GEMMs
  ``Z @ V^T``, adding each block's partial into dU.

    python bench/winograd_profile.py
"""
import time

import numpy as np
from numba import njit
from threadpoolctl import threadpool_limits

from fastconv.backends.numba_backend import winograd as plan
from fastconv.backends.numba_backend.kernels import winograd as W
from fastconv.backends.numba_backend.kernels import winograd_tiles as T

LAYERS = [(8, 16, 16, 32), (32, 64, 64, 32), (32, 128, 128, 16), (32, 256, 256, 8)]


@njit(cache=False)
def _blocks(total_rows, rows):
    return [(g0, min(total_rows, g0 + rows)) for g0 in range(0, total_rows, rows)]


@njit(cache=False)
def input_transform(x, tile_h, tiles, rows, band, hb, v, v_stride):
    for g0, g1 in _blocks(x.shape[0] * tile_h, rows):
        W._input_block(x, 0, x.shape[1], g0, g1, rows, tile_h, tiles, 1, 1, band, hb, v, v_stride,
                       (g1 - g0) * tiles)


@njit(cache=False)
def forward_gemms(u, v, m, v_stride, m_stride, pb, blocks):
    for _ in range(blocks):
        for t in range(36):
            np.dot(u[t], W._point(v, t, v_stride, u.shape[2], pb), W._point(m, t, m_stride, u.shape[1], pb))


@njit(cache=False)
def output_transform(m, m_stride, tiles, y, tile_h, rows, hs, ob):
    for g0, g1 in _blocks(y.shape[0] * tile_h, rows):
        pb = (g1 - g0) * tiles
        for k in range(y.shape[1]):
            T._output_rows(m, m_stride, k * pb, g0, g1, tile_h, tiles, hs, ob, np.float32(0.1), True, y, k)


@njit(cache=False)
def gradient_transform(gy, tiles, tile_h, rows, gband, gvt, z, z_stride, sums):
    for g0, g1 in _blocks(gy.shape[0] * tile_h, rows):
        pb = (g1 - g0) * tiles
        for k in range(gy.shape[1]):
            T._gradient_rows(gy, k, g0, g1, tile_h, tiles, gband, gvt, z, z_stride, k * pb, sums)


@njit(cache=False)
def gradient_gemms(z, v, z_stride, v_stride, part, du, pb, blocks, accumulate):
    k_out, c_in = part.shape
    for _ in range(blocks):
        for t in range(36):
            if accumulate:
                du[t] += part
            else:
                np.dot(W._point(z, t, z_stride, k_out, pb), W._point(v, t, v_stride, c_in, pb).T, part)


def best(f, *args):
    f(*args)
    times = []
    for _ in range(15):
        start = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main():
    f32 = np.float32
    for n, c, k, h in LAYERS:
        tile_h = tiles = (h + 3) // 4
        x = np.random.rand(n, c, h, h).astype(f32)
        gy = np.random.rand(n, k, h, h).astype(f32)
        u = np.random.rand(36, k, c).astype(f32)
        y = np.empty((n, k, h, h), f32)
        band = np.empty((6, 4 * tiles + 2), f32)
        flops = 2 * n * c * k * 9 * h * h
        for label, weight_grad in (("forward", False), ("weight gradient", True)):
            _, rows = plan._plan(n, c, k, h, h, 4, weight_grad)
            rows = min(rows, n * tile_h)
            pb, blocks = rows * tiles, -(-n * tile_h // rows)
            v_stride, m_stride = plan._point_stride(c, pb, 4), plan._point_stride(k, pb, 4)
            v, m = np.random.rand(36 * v_stride).astype(f32), np.random.rand(36 * m_stride).astype(f32)
            hs, ob = np.empty((6, 4, pb), f32), np.empty((4, 4, pb), f32)
            gband, gvt = np.empty((4, 4, pb), f32), np.empty((6, 4, pb), f32)
            with threadpool_limits(1, "blas"):
                t_in = best(input_transform, x, tile_h, tiles, rows, band, np.empty((36, pb), f32), v, v_stride)
                if not weight_grad:
                    t_mm = best(forward_gemms, u, v, m, v_stride, m_stride, pb, blocks)
                    t_out = best(output_transform, m, m_stride, tiles, y, tile_h, rows, hs, ob)
                    parts = f"output transform {t_out:.2f}"
                else:
                    sums = np.zeros(4 * tiles)
                    part, du = np.empty((k, c), f32), np.zeros((36, k, c), f32)
                    t_out = best(gradient_transform, gy, tiles, tile_h, rows, gband, gvt, m, m_stride, sums)
                    t_mm = best(gradient_gemms, m, v, m_stride, v_stride, part, du, pb, blocks, False)
                    t_acc = best(gradient_gemms, m, v, m_stride, v_stride, part, du, pb, blocks, True)
                    parts = f"gradient transform {t_out:.2f}, add partials {t_acc:.2f}"
                    t_out += t_acc
            gemm_rate = 36 * 2 * k * c * pb * blocks / t_mm / 1e6
            print(f"n{n} {c}->{k} {h}x{h} {label} ({pb} tiles/block): input transform {t_in:.2f}, "
                  f"36 GEMMs {t_mm:.2f} ({gemm_rate:.0f} GFLOP/s), {parts} ms; "
                  f"direct-equivalent {flops / (t_in + t_mm + t_out) / 1e6:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
