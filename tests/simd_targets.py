"""Environments that make numba compile for a smaller vector unit than this host's
(``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES``): code built for AVX2 or plain SSE runs
on an AVX-512 host, so the register blocks of every target are tested on one
machine.  numba keys its cache by the target, so these builds never mix with the
host's."""

from __future__ import annotations

import platform

import llvmlite.binding as llvm

_WIDE = ("avx512", "evex512", "avx10", "amx")
_AVX = ("avx", "fma", "f16c", "vaes", "vpclmulqdq", "gfni", "xop", "fma4") + _WIDE

# target -> (LLVM CPU name, features it turns off)
TARGETS = {"avx2": ("znver3", _WIDE), "sse": ("x86-64", _AVX)}


def target_env(name: str) -> dict | None:
    """Environment variables for ``name``, or None where this host cannot run it
    (not x86, or it lacks the instructions the target keeps)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    cpu, off = TARGETS[name]
    features = llvm.get_host_cpu_features().flatten().split(",")
    if name == "avx2" and not {"+avx2", "+fma"} <= set(features):
        return None
    kept = [("-" + f[1:]) if f[1:].startswith(off) else f for f in features if f]
    return {"NUMBA_CPU_NAME": cpu, "NUMBA_CPU_FEATURES": ",".join(kept)}
