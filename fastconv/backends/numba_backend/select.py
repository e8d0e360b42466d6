"""Which convolution algorithm runs: autotuned once per problem, forced, or by rule.

Every algorithm module (``direct``, ``gemm``, ``shifted``, ``shifted_rows``, ``winograd``,
``blocked``) has ``NAME``,
``EXACT`` (plain summation, no transform arithmetic), ``supports(x_shape, w_shape,
stride, padding)`` and ``forward`` / ``backward``.  The mode is `set_conv_algorithm`'s
argument, else ``FASTCONV_CONV_ALGO`` (read at every call), else ``auto``:

* ``auto`` (default) / ``benchmark``: the first call of a problem -- (pass, shapes,
  stride, padding, dtype, threads, exact-only) -- times every candidate (one warm-up
  run, then bursts of repeated calls in interleaved rounds for short problems, the
  best of two runs for long ones; `_time_candidates`) and keeps the fastest, as
  cuDNN's benchmark mode does; a batch smaller than the thread count also times
  each candidate on one thread (`_variants`).  Winners are saved
  in a per-machine cache file (`autotune_cache`) keyed by CPU model and fastconv
  version, so later processes pay nothing.  Problems under ``_TUNE_MIN_FLOPS`` are
  not worth timing and take the rule;
* ``heuristic``: the rule alone (`heuristic`), no timing;
* an algorithm's name forces it (where it does not support a problem, the rule picks
  among those that do; `last_conv_algorithms` says what ran).

`set_exact_only(True)` or ``FASTCONV_CONV_EXACT=1`` leaves out the algorithms whose
arithmetic differs from direct summation (Winograd), for results closest to it.
"""

from __future__ import annotations

import json
import time

import numpy as np

from fastconv.system import env
from fastconv.backends.numba_backend import background, readiness
from fastconv.backends.numba_backend import blas as _blas
from fastconv.backends.numba_backend import blocked, direct, gemm, shifted, shifted_rows, winograd
from fastconv.backends.numba_backend import runtime as rt
from fastconv.backends.numba_backend import tuning_cache
from fastconv.backends.numba_backend.tuning_cache import autotune_cache  # noqa: F401  (public here)

ALGORITHMS = {module.NAME: module for module in (direct, gemm, shifted, shifted_rows, winograd, blocked)}
MODES = ("auto", "benchmark", "heuristic") + tuple(ALGORITHMS)
# Below this a problem takes the rule untimed: it runs in a few us, where bursts of
# calls still measure but the choice hardly matters.  Above it the rule, fitted before
# `blocked` existed, can be 1.3-2.7x off: batch-1 layers of 0.4-1.6 MFLOP (SqueezeNet's
# 16->64 1x1 at 27x27: the rule's direct kernel 53 us, `blocked` 21; 6->16 5x5 at 14x14:
# its GEMM path 47 us, `blocked` 19), which the rounds of 2 ms bursts time reliably.
_TUNE_MIN_FLOPS = 2e5

_forced: str | None = None
_exact_only: bool | None = None
last_conv_algorithms: dict = {}
"""``(pass, x_shape, w_shape, stride, padding, dtype) -> algorithm name`` for every
convolution run so far (the latest choice per key), for benchmark tables."""
_stats = {"problems": 0, "seconds": 0.0}

# Ways to run a whole pass, chosen like algorithms (`run_chosen`'s ``plans``): a
# transposed convolution's backward as one fused kernel or composed of a convolution
# and a weight gradient (each then choosing its own algorithm).
PLANS = ("fused", "composed")
PLAN_NAMES = frozenset(PLANS) | {"packed", "chosen"}
"""Every plan a caller may time (a saved winner must be one, or an algorithm):
``packed``, frozen weights' panels; ``chosen``, the algorithm the pass chooses."""
PASSES = ("forward", "forward frozen", "backward", "backward weights")
"""The passes an algorithm is chosen for: ``forward frozen`` has read-only weights,
``backward weights`` computes no input gradient."""


def set_conv_algorithm(algorithm: str | None) -> None:
    """Force an algorithm, autotune (``"auto"``), use the rule (``"heuristic"``), or
    ``None`` to follow ``FASTCONV_CONV_ALGO`` again."""
    global _forced
    if algorithm is not None:
        algorithm = _check_mode(algorithm, "set_conv_algorithm")
    _forced = algorithm


def get_conv_algorithm_mode() -> str:
    """The selection mode in force: setter, else ``FASTCONV_CONV_ALGO``, else ``auto``."""
    if _forced is not None:
        return _forced
    return env.choice(env.CONV_ALGO, MODES) or "auto"   # a bad value: EnvironmentVariableError


def set_exact_only(exact: bool | None) -> None:
    """Allow only exact-arithmetic algorithms (True), all (False), or follow
    ``FASTCONV_CONV_EXACT`` again (None)."""
    global _exact_only
    _exact_only = None if exact is None else bool(exact)


def exact_only() -> bool:
    if _exact_only is not None:
        return _exact_only
    return env.flag(env.CONV_EXACT)   # a bad value: EnvironmentVariableError


def autotune_stats() -> dict:
    """Problems timed in this process and the seconds that took."""
    return dict(_stats)


def _check_mode(mode, source) -> str:
    if not isinstance(mode, str) or mode.strip().lower() not in MODES:
        raise ValueError(f"{source}: unknown convolution algorithm {mode!r}; "
                         f"valid: {', '.join(MODES)}")
    return mode.strip().lower()


def key(pass_, x_shape, w_shape, stride, padding, dtype):
    return (pass_, tuple(int(v) for v in x_shape), tuple(int(v) for v in w_shape),
            tuple(stride), tuple(padding), np.dtype(dtype).name)


def heuristic(x_shape, w_shape, stride, padding, dtype, pass_, allowed=None) -> str:
    """The rule used for problems too small to time, in ``heuristic`` mode and for a
    forced algorithm that cannot run a problem.

    Direct loops unless the GEMM is big enough in every dimension to pay off (fitted
    to 72 shapes, C_in 1-64, C_out 4-64, k 3/5, 8x8-32x32, batch 32, 2 threads, on an
    Intel Xeon: within 9 % of always picking the faster of the two), Winograd for
    3x3 stride-1 layers with >= 96 channels each way (measured 1.3-1.9x direct-
    equivalent throughput over the GEMM path from 128 channels on an AMD EPYC):

    * C_out < 16: a GEMM with so few rows runs far below BLAS peak, while the direct
      kernel handles two output channels per pass at full speed;
    * C_in*kh*kw < 64: the GEMM's inner dimension is too short and im2col (one write
      and one read of the column buffer per output) dominates;
    * C_out < 32 on planes >= 24 wide: the direct kernel is at its best on long rows
      (little wasted border work) and wins ~2x (e.g. 64->16, k5, 32x32);
    * stride != 1: the direct kernel's strided path is plain loops, not tuned;
    * where the GEMM path would run a stride-1 layer, the shifted-view GEMMs do (no
      nine-fold unfold: 1.15-1.8x the GEMM path on report 003's and CIFAR ResNets'
      layers here), except a 1x1 kernel without padding (its GEMM needs no unfold)
      and a batch smaller than the thread count (split into bands of rows, its
      GEMMs get too narrow: LeNet's 6->16 5x5 @14 at batch 1 ran 1.4x slower).
    """
    allowed = candidates(x_shape, w_shape, stride, padding) if allowed is None else allowed
    c_out, c_in, kh, kw = w_shape
    if "gemm" not in allowed:
        return "direct"
    if "winograd" in allowed and min(c_in, c_out) >= 96:
        return "winograd"
    if tuple(stride) != (1, 1):
        return "gemm"
    out_w = (x_shape[3] + 2 * padding[1] - kw) // stride[1] + 1
    if c_out < 16 or c_in * kh * kw < 64:
        return "direct"
    if c_out < 32 and out_w >= 24:
        return "direct"
    if ("shifted" in allowed and (kh, kw, *padding) != (1, 1, 0, 0)
            and x_shape[0] >= rt.get_num_threads()):
        return "shifted"
    return "gemm"


def candidates(x_shape, w_shape, stride, padding) -> list[str]:
    """Algorithms that can run this problem (exact ones only if so asked), but not
    one that says it is not worth timing on this machine (`blocked` without FMA)
    unless it is the one forced."""
    exact = exact_only()
    forced = get_conv_algorithm_mode()
    return [name for name, module in ALGORITHMS.items()
            if (module.EXACT or not exact) and module.supports(x_shape, w_shape, stride, padding)
            and (name == forced or getattr(module, "worth_timing", _always)())]


def _always() -> bool:
    return True


def _as_pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


# --------------------------------------------------------------------------- autotune cache
# The file itself is `tuning_cache`'s (bounded, read once per process, written atomically).
_decided: dict = {}              # `choose`'s per-call memo: -> `_decide`'s (algorithm, threads, key, revisit)


def _tuned_key(k, exact, names) -> str:
    """A problem's key in the cache file; ``names``, the candidates timed, are part of
    it so that an algorithm added since (same version string) gets timed too, and so
    is the GEMM library (`blas.describe`): another BLAS moves the winners."""
    return json.dumps([*k, rt.get_num_threads(), bool(exact), _blas.describe(), sorted(names)])


def _load_winners() -> dict:
    """Tuned key -> winner: this process's, the file's read once (`tuning_cache.winners`)."""
    return tuning_cache.winners(_valid_variant)


def _read_cache(path) -> dict:
    return tuning_cache.read(path, _valid_variant)


def _save_winner(tuned_key: str, name: str) -> None:
    tuning_cache.save(tuned_key, name, _valid_variant)


def clear_autotune_cache(memory_only: bool = False) -> None:
    """Forget tuned choices (this process's, and the cache file unless memory_only)."""
    _decided.clear()
    tuning_cache.clear(memory_only)


# --------------------------------------------------------------------------- choice
def _flops(x_shape, w_shape, stride, padding) -> float:
    out_h, out_w = rt.out_hw(x_shape[2], x_shape[3], w_shape[2:], stride, padding)
    return 2.0 * x_shape[0] * out_h * out_w * int(np.prod(w_shape))


def conv_algorithm(x_shape, w_shape, stride=(1, 1), padding=(0, 0), dtype=np.float32,
                   pass_: str = "forward") -> str:
    """The algorithm a convolution with these arguments runs now, under the current
    mode: forced, tuned (if this problem was tuned already), or the rule."""
    if pass_ not in PASSES:
        raise ValueError(f"pass_ must be one of {', '.join(map(repr, PASSES))}, got {pass_!r}")
    stride, padding = _as_pair(stride), _as_pair(padding)
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    mode = get_conv_algorithm_mode()
    allowed = candidates(x_shape, w_shape, stride, padding)
    return _variant(x_shape, w_shape, stride, padding, dtype, pass_, mode, allowed)[0]


def _variant(x_shape, w_shape, stride, padding, dtype, pass_, mode, allowed):
    """(algorithm, threads or None for all) under ``mode``: forced, tuned, or the rule."""
    if mode in ALGORITHMS and mode in allowed:
        return mode, None
    if mode in ("auto", "benchmark"):
        k = key(pass_, x_shape, w_shape, stride, padding, dtype)
        tuned = _load_winners().get(_tuned_key(k, exact_only(), allowed))
        if tuned is not None and _split(tuned)[0] in allowed:
            return _split(tuned)
    rule = heuristic(x_shape, w_shape, stride, padding, dtype, pass_, allowed)
    return (rule if rule in allowed else allowed[0]), None


# A tuned winner's suffix: run on one thread.  A batch smaller than the thread count
# is also timed that way: whether splitting one image's work over threads pays is a
# property of the layer and the machine (batch 1 on this 2-vCPU VM: 16-64 channel 3x3
# layers ran up to 1.6x faster on one thread in one run, 1.2-1.6x slower in another;
# docs/conv-algorithms.md).
_ONE_THREAD = "@1"


def _split(variant: str):
    """``"gemm@1"`` -> ``("gemm", 1)``; ``"gemm"`` -> ``("gemm", None)`` (all threads)."""
    if variant.endswith(_ONE_THREAD):
        return variant[:-len(_ONE_THREAD)], 1
    return variant, None


def _valid_variant(variant: str) -> bool:
    return _split(variant)[0] in ALGORITHMS or _split(variant)[0] in PLAN_NAMES


def _variants(names, batch) -> list:
    """What autotuning times: each algorithm on all threads and, for a batch smaller
    than the thread count, also on one."""
    if batch < rt.get_num_threads():
        return list(names) + [name + _ONE_THREAD for name in names]
    return list(names)


# Timing a candidate: calls repeated to fill a burst of about this long (a single run of
# a 100 us batch-1 layer varied 2x here, enough to pick Winograd at 2.3x the GEMM
# path's time), in this many interleaved rounds for problems shorter than a burst.
_TUNE_BURST_SECONDS = 2e-3
_TUNE_ROUNDS = 3
_TUNE_MAX_REPEATS = 50
# ... and then the two fastest of a short problem, unless one is clearly ahead, in
# this many alternating pairs of bursts, the median ratio deciding: best-of-rounds
# alone once kept a 2-thread variant for a batch-1 64->64 @8 layer that ran 2x slower
# than the GEMM path in every later measurement (one lucky burst decides a minimum).
_TUNE_CONFIRM_PAIRS = 7
_TUNE_CLEAR_LEAD = 1.3
# Problems up to this long per call get the rounds and the confirmation too (each
# burst then one call): two single calls each had picked the GEMM path for
# 256->256 3x3 @7 and `blocked` for 128->128 @14 (batch 8), where Winograd ran
# 1.1-1.4x faster in every later measurement, cache-cold or warm.
_TUNE_CAREFUL_SECONDS = 20e-3


def _run_variant(variant, run):
    name, threads = _split(variant)
    with rt.thread_limit(threads):
        return run(name)


def _time_candidates(names, run) -> str:
    """Time the variants ``names`` (`_split`) with ``run``; the fastest one.

    One warm-up run each (compiles, faults in buffers) and one timed run; then, for
    problems shorter than `_TUNE_CAREFUL_SECONDS`, `_TUNE_ROUNDS` rounds of
    interleaved bursts, each candidate's calls repeated to fill `_TUNE_BURST_SECONDS`
    (one call for problems longer than that; problems longer than careful: one more
    single run).  A candidate keeps its best per-call time (of bursts only, for
    problems shorter than a burst); one 3x slower than the best after a round is not
    timed again.  For careful problems the two fastest, unless the first leads by
    `_TUNE_CLEAR_LEAD`, then run `_TUNE_CONFIRM_PAIRS` alternating pairs of bursts
    and the median of their ratios picks the winner.  The rounds after the first go
    backwards and forwards in turn."""
    best: dict = {}
    for name in names:
        _run_variant(name, run)
        start = time.perf_counter()
        _run_variant(name, run)
        best[name] = time.perf_counter() - start
    short = min(best.values()) < _TUNE_BURST_SECONDS
    if short:           # bursts only: a single run of a short problem is too noisy to count
        best = {name: _burst(name, run, best[name]) for name in names}
    careful = min(best.values()) < _TUNE_CAREFUL_SECONDS
    for round_index in range(_TUNE_ROUNDS - 1 if careful else 1):
        fastest = min(best.values())
        # every other round backwards: a slow spell at the start (another library's
        # BLAS threads still spinning after its call) must not hit the first ones twice
        order = names[::-1] if round_index % 2 == 0 else names
        for name in [n for n in order if best[n] < 3 * fastest]:
            best[name] = min(best[name], _burst(name, run, best[name]))
    ranked = sorted(best, key=best.get)
    if not careful or len(ranked) == 1 or best[ranked[1]] > _TUNE_CLEAR_LEAD * best[ranked[0]]:
        return ranked[0]
    first, second = ranked[:2]
    ratios = [_burst(second, run, best[second]) / _burst(first, run, best[first])
              for _ in range(_TUNE_CONFIRM_PAIRS)]
    return first if np.median(ratios) >= 1 else second


def _burst(name, run, seconds_per_call) -> float:
    """Seconds per call of ``name`` over a burst of about `_TUNE_BURST_SECONDS`; a
    problem longer than that runs twice and counts the second call.  A first call
    right after the other candidates pays for what they left (evicted caches, pages
    freed and faulted in again): Winograd took 3.9-4.7 ms against its 2.4 on 256->256
    3x3 @7, batch 8, and lost to the GEMM path, although in a chain of six such
    layers it took 2.4 ms a layer and the GEMM path 2.9."""
    if seconds_per_call >= _TUNE_BURST_SECONDS:
        _run_variant(name, run)
        start = time.perf_counter()
        _run_variant(name, run)
        return time.perf_counter() - start
    repeats = int(min(_TUNE_MAX_REPEATS, max(1, _TUNE_BURST_SECONDS // seconds_per_call)))
    start = time.perf_counter()
    for _ in range(repeats):
        _run_variant(name, run)
    return (time.perf_counter() - start) / repeats


def choose(pass_, x, w, stride, padding, run, plans=None):
    """Pick (and record) the algorithm for this call: ``(name, threads)``, threads
    None for all (`rt.thread_limit` applies it); ``run(name)`` executes one.  With
    ``plans`` (names from `PLAN_NAMES`), the choice is among those, the first by default.

    In ``auto``/``benchmark`` mode a problem seen for the first time (in this process
    and in the cache file) with more than one candidate is timed here, once -- among
    the candidates whose kernels are compiled, while a helper process compiles the
    others (`_timeable`); the problem is timed again, and only then saved, when they
    are ready.  A decision is remembered per (problem, setters, environment
    variables, threads), so a repeated call costs one dictionary lookup (a few us less
    per call than normalising the key and parsing the variables: batch-1 layers take
    50-500 us).
    """
    memo = (pass_, x.shape, w.shape, stride, padding, x.dtype, _forced, _exact_only,
            rt.get_num_threads(), env.snapshot(env.CONV_ALGO, env.CONV_EXACT, env.CACHE_DIR), plans)
    decided = _decided.get(memo)
    if decided is None or (decided[3] is not None and decided[3] != background.generation):
        decided = _decided[memo] = _decide(pass_, x, w, stride, padding, run, plans)
    algo, threads, k, _ = decided
    last_conv_algorithms[k] = algo
    return algo, threads


def _decide(pass_, x, w, stride, padding, run, plans):
    """(algorithm, threads, key, background generation to revisit it at or None)."""
    k = key(pass_, x.shape, w.shape, stride, padding, x.dtype)
    mode = get_conv_algorithm_mode()
    tuning = mode in ("auto", "benchmark")
    if plans:
        if tuning:      # the plans' algorithms may be missing candidates still compiling
            _tune(k, exact_only(), x, w, stride, padding, run, list(plans), persist=not background.busy())
        return (*_plan_variant(k, plans, mode), k, None)
    allowed = candidates(x.shape, w.shape, stride, padding)
    revisit = None
    if tuning:
        allowed, revisit = _timeable(allowed, x, w, stride, padding)
        _tune(k, exact_only(), x, w, stride, padding, run, allowed, persist=revisit is None)
    variant = _variant(x.shape, w.shape, stride, padding, x.dtype, pass_, mode, allowed)
    readiness.note_ran(variant[0], x.dtype.name)
    return (*variant, k, revisit)


FIRST_ALGORITHM = "direct"
"""What a problem runs on when none of its candidates is compiled yet: it runs every
geometry and is among the cheapest to compile (`bench/compile_times.py`)."""


def _timeable(allowed, x, w, stride, padding):
    """(the candidates to time now, the `background.generation` at which to decide
    again, or None when this is final).  With background compilation on, candidates
    whose kernels are not compiled are handed to a helper process and left out until
    it reports them (if none is ready, `FIRST_ALGORITHM` compiles here); a problem too
    small to time needs only the rule's choice, and a helper that died leaves its
    groups to be compiled here."""
    if len(allowed) < 2 or not background.enabled() or \
            _flops(x.shape, w.shape, stride, padding) < _TUNE_MIN_FLOPS:
        return allowed, None
    generation = background.generation      # before looking: a later report means "look again"
    dtype = x.dtype.name
    ready = [name for name in allowed if readiness.algorithm_ready(ALGORITHMS[name], dtype)]
    if not ready:          # compiled here, now: the helper must not compile it too
        ready = [FIRST_ALGORITHM if FIRST_ALGORITHM in allowed else allowed[0]]
    items = [f"{dtype}:{name}" for name in allowed if name not in ready]
    if not items:
        return allowed, None
    background.request(items)
    if not any(background.pending(item) for item in items):
        return allowed, None
    return ready, generation


def _plan_variant(k, plans, mode):
    """(plan, threads) of a problem: tuned in ``auto``/``benchmark`` mode, else the first."""
    if mode in ("auto", "benchmark"):
        tuned = _load_winners().get(_tuned_key(k, exact_only(), plans))
        if tuned is not None and _split(tuned)[0] in plans:
            return _split(tuned)
    return plans[0], None


def run_chosen(pass_, x, w, stride, padding, run, plans=None):
    """``run(name)`` with the algorithm (or plan) `choose` picks, on the threads it picked."""
    algorithm, threads = choose(pass_, x, w, stride, padding, run, plans)
    if threads is None:
        return run(algorithm)
    with rt.thread_limit(threads):
        return run(algorithm)


def _tune(k, exact, x, w, stride, padding, run, names, persist: bool = True) -> None:
    """Time the candidates (or plans) ``names`` of a problem not tuned yet with them
    (unless too small to time); the winner is saved in the cache file if ``persist``."""
    tuned_key = _tuned_key(k, exact, names)
    variants = _variants(names, x.shape[0])
    if (len(variants) > 1 and tuned_key not in _load_winners()
            and _flops(x.shape, w.shape, stride, padding) >= _TUNE_MIN_FLOPS):
        start = time.perf_counter()
        winner = _time_candidates(variants, run)
        _stats["problems"] += 1
        _stats["seconds"] += time.perf_counter() - start
        _load_winners()[tuned_key] = winner
        if persist:
            _save_winner(tuned_key, winner)
