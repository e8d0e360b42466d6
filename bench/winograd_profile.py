"""Where Winograd forward time goes, one core: input transform, the 36 GEMMs, output
transform (min of 15 runs; the profile table in docs/conv-algorithms.md).

    python bench/winograd_profile.py
"""
import time, numpy as np
from numba import njit
from fastconv.backends.numba_backend.kernels import winograd as W
from threadpoolctl import threadpool_limits

@njit(cache=False)
def inp(x, tile_h, tiles, ph, pw, band, v, rows, reps):
    total = x.shape[0]*tile_h
    for _ in range(reps):
        for g0 in range(0, total, rows):
            g1 = min(total, g0+rows)
            W._transform_input_block(x, g0, g1, tile_h, tiles, ph, pw, band, v, (g1-g0)*tiles)

@njit(cache=False)
def gem(u, v3, m3, reps):
    for _ in range(reps):
        for t in range(36):
            np.dot(u[t], v3[t], m3[t])

@njit(cache=False)
def outp(m, k_out, pb, tiles, y, tile_h, rows, hs, ob, reps):
    n = y.shape[0]
    for _ in range(reps):
        for g0 in range(0, n*tile_h, rows):
            for g in range(g0, min(n*tile_h, g0+rows)):
                img = g // tile_h
                row0 = 4*(g - img*tile_h)
                for k in range(k_out):
                    W._output_tiles(m, k_out*pb, k*pb + (g-g0)*tiles, tiles, hs, ob, np.float32(0.1), True, y[img, k], row0)

def best(f, *a):
    f(*a)
    ts=[]
    for _ in range(15):
        t=time.perf_counter(); f(*a); ts.append(time.perf_counter()-t)
    return min(ts)

for (n, c, k, h) in [(8,16,16,32),(4,64,64,16),(2,128,128,16),(8,256,256,8)]:
    out = h; tile_h = tiles = (out+3)//4
    per_tile = 36*(c+k)*4; rows = max(1, (1<<20)//(per_tile*tiles)); pb = rows*tiles
    x = np.random.rand(n,c,h,h).astype(np.float32)
    band = np.empty((6,4*tiles+2), np.float32); hs = np.empty((6,4,tiles), np.float32); ob = np.empty((4,4,tiles), np.float32); v = np.empty(36*c*pb, np.float32)
    u = np.random.rand(36,k,c).astype(np.float32); m = np.random.rand(36*k*pb).astype(np.float32)
    y = np.empty((n,k,out,out), np.float32)
    nblocks = -(-n*tile_h//rows)
    with threadpool_limits(1, "blas"):
        ti = best(inp, x, tile_h, tiles, 1, 1, band, v, rows, 1)
        tg = best(gem, u, v.reshape(36,c,pb), m.reshape(36,k,pb), nblocks)
        to = best(outp, m, k, pb, tiles, y, tile_h, rows, hs, ob, 1)
    fl = 2*n*c*k*9*out*out
    print(f"n{n} {c}->{k} {h}x{h} pb={pb}: input {ti*1e3:.2f} ms, gemm {tg*1e3:.2f} ms ({36*2*k*c*pb*nblocks/tg/1e9:.0f} GF/s), output {to*1e3:.2f} ms; direct-equivalent rate {fl/(ti+tg+to)/1e9:.0f} GF/s")
