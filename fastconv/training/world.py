"""The `Trainer`'s hooks for running on several processes, and their one-process form.

A world is what the trainer asks whenever the answer depends on how many processes
train together.  `LocalWorld` (one process) answers with identities;
`fastconv.distributed.MPIWorld` answers over MPI with the same methods:

* ``shard(count)`` -- this rank's contiguous part of ``count`` items (a global batch,
  the test split): data sharding;
* ``reduce_step(params, extras)`` -- add every rank's gradients into each
  ``param.grad`` and return the summed ``extras`` (loss, correct, stop flag):
  gradient averaging, once per step;
* ``sum(values)`` -- an element-wise sum over ranks (evaluation counts);
* ``broadcast_object(obj)`` -- rank 0's ``obj`` on every rank (a checkpoint read once);
* ``prepare_model(model)`` -- identical start weights, synchronised batch norm;
* ``writer_first(fn)`` -- run ``fn`` on rank 0 before the others (a data set that is
  generated or downloaded into a shared cache, the JIT cache);
* ``is_writer`` -- only rank 0 writes checkpoints, logs and plots.
"""

from __future__ import annotations

import numpy as np


class LocalWorld:
    """A single process: every hook is the identity."""

    rank = 0
    size = 1
    is_writer = True
    compile_jobs = 2  # processes the backend's warm-up may use
    background_compile = True  # whether a helper may compile while the run works

    def shard(self, count: int) -> slice:
        """Rank ``r`` of ``n`` takes ``[r * count // n, (r + 1) * count // n)``: shares
        differ by at most one item and follow the global order."""
        return slice(self.rank * count // self.size, (self.rank + 1) * count // self.size)

    def reduce_step(self, params, extras: np.ndarray) -> np.ndarray:
        return extras

    def sum(self, values: np.ndarray) -> np.ndarray:
        return values

    def broadcast_object(self, obj):
        return obj

    def prepare_model(self, model) -> None:
        pass

    def writer_first(self, fn):
        return fn()

    def describe(self) -> str:
        return ""
