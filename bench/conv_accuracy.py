"""Accuracy of every numba convolution algorithm, forced, against the float64 numpy
reference on training-sized layers (the table in docs/conv-algorithms.md).

    python bench/conv_accuracy.py
"""
import numpy as np, fastconv, fastconv.functional as F
from fastconv.backends import numba_backend as NB
fastconv.set_backend("numba")
rng = np.random.default_rng(0)
layers = [(32,16,16,32,3,1),(16,64,64,16,3,1),(8,128,128,16,3,1),(8,256,256,8,3,1),(16,32,64,16,5,2)]
for algo in NB.ALGORITHMS:
    for dt in (np.float32, np.float64):
        worst = [0,0,0,0]
        for (n,c,k,h,ks,p) in layers:
            if not NB.ALGORITHMS[algo].supports((n,c,h,h),(k,c,ks,ks),(1,1),(p,p)): continue
            x = rng.standard_normal((n,c,h,h)); w = rng.standard_normal((k,c,ks,ks))/np.sqrt(c*ks*ks)
            y64 = F.conv2d(x, w, None, 1, p); gy = rng.standard_normal(y64.shape)
            with fastconv.use_backend("numpy"):
                ref = [F.conv2d(x,w,None,1,p)] + list(F.conv2d_backward(gy, x, w, 1, p))
            NB.set_conv_algorithm(algo)
            got = [F.conv2d(x.astype(dt), w.astype(dt), None, 1, p)] + list(F.conv2d_backward(gy.astype(dt), x.astype(dt), w.astype(dt), 1, p))
            NB.set_conv_algorithm(None)
            for i,(g,r) in enumerate(zip(got, ref)):
                worst[i] = max(worst[i], float(np.abs(g-r).max()/np.abs(r).max()))
        print(f"{algo:9s} {dt.__name__}: y {worst[0]:.1e}  grad_x {worst[1]:.1e}  grad_w {worst[2]:.1e}  grad_b {worst[3]:.1e}")
