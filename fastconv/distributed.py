"""Data-parallel training over MPI processes (``pip install 'fastconv[mpi]'``: mpi4py + MPICH).

    mpiexec -n 4 fastconv train --model cnn --dataset fashion-mnist --epochs 10 --out runs/fashion4

`MPIWorld` implements the hooks of `fastconv.training.world` over ``MPI.COMM_WORLD``;
the trainer itself has no MPI code.  What is synchronised:

* start: rank 0's parameters and buffers are broadcast, so every rank starts equal
  (also after ``--resume``: rank 0 alone reads the checkpoint and broadcasts it);
* data: ``--batch-size`` is the *global* batch; every rank draws the same seeded
  permutation and takes its contiguous share of each global batch (shares differ by
  at most one image);
* gradients: after backward, one ``Allreduce(SUM)`` over a single flat buffer holding
  every gradient plus the step's loss, correct count and Ctrl-C flag.  Each rank's
  loss gradient is weighted by its share of the global batch, so the sum is exactly
  the global batch's mean gradient even when the batch does not divide evenly;
* batch norm: synchronised (global batch mean and variance, PyTorch's SyncBatchNorm)
  through each layer's ``stats_reducer``;
* evaluation: each rank evaluates a contiguous share of the test split; sums reduced;
* output: only rank 0 writes checkpoints, logs and plots (atomically, as always).
  Checkpoints do not depend on the number of ranks, so ``--resume`` may use another.

Dropout masks are drawn per rank (rank r's generators are rank 0's, jumped r times),
so only runs without dropout reproduce the one-process weights.  A rank that fails
makes the job end: `abort_on_error` reports the error and calls ``MPI.Abort``, which
stops every rank within seconds; the last checkpoint written stays.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

import numpy as np

from fastconv.training.world import LocalWorld

# Variables MPI launchers set in every process they start: the world size.
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
INSTALL_HINT = "pip install 'fastconv[mpi]' (or: pip install mpi4py mpich)"
# A rank other than 0 waits this long before aborting, so that an error every rank
# hits is reported once, by rank 0, whose abort ends the others first.
ABORT_GRACE_S = 1.0


def launcher_size(environ=None) -> tuple[str, int] | None:
    """(variable, world size) if an MPI launcher started this process, else None."""
    environ = os.environ if environ is None else environ
    for name in LAUNCHER_SIZE_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return name, int(value)
    return None


def launch_world(environ=None):
    """The processes this one trains with: `LocalWorld` unless an MPI launcher
    started several; then `MPIWorld`, or an ImportError saying how to install
    mpi4py (never N independent runs writing into one folder)."""
    launched = launcher_size(environ)
    if launched is None or launched[1] <= 1:
        return LocalWorld()
    name, size = launched
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"started by an MPI launcher ({name}={size}) but mpi4py cannot be imported "
                          f"({exc}): the {size} processes would train independently into one folder. "
                          f"Install the extra: {INSTALL_HINT}") from None
    return MPIWorld(MPI.COMM_WORLD)


def threads_per_rank(ranks_on_host: int) -> int:
    """``FASTCONV_NUM_THREADS`` if set, else this host's cores shared among its ranks."""
    explicit = os.environ.get("FASTCONV_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    return max(1, (os.cpu_count() or 1) // max(1, ranks_on_host))


class MPIWorld(LocalWorld):
    """The trainer's world hooks over an mpi4py communicator."""

    def __init__(self, comm):
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.is_writer = self.rank == 0
        host = comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.ranks_on_host = host.Get_size()
        self.hosts = comm.allreduce(1 if host.Get_rank() == 0 else 0)
        host.Free()
        self.threads = threads_per_rank(self.ranks_on_host)
        self.compile_jobs = 1  # the cores are the ranks' already
        # every kernel before the first step (rank 0 compiles, the others load): a helper
        # per rank would compile the same kernels on the ranks' cores
        self.background_compile = False
        self._buffer = None
        # per purpose ("gradients", "batch norm", "sums"): [calls, bytes, seconds]
        self.allreduce_stats = {purpose: [0, 0, 0.0] for purpose in ("gradients", "batch norm", "sums")}

    # ------------------------------------------------------------ the hooks
    def reduce_step(self, params, extras: np.ndarray) -> np.ndarray:
        """Sum every gradient and ``extras`` over the ranks: one Allreduce over one
        flat buffer in the gradients' dtype."""
        buffer = self._flat_buffer(params, len(extras))
        offset = 0
        for param in params:
            buffer[offset:offset + param.grad.size] = param.grad.ravel()
            offset += param.grad.size
        buffer[offset:] = extras
        self._allreduce(buffer, "gradients")
        offset = 0
        for param in params:
            param.grad[...] = buffer[offset:offset + param.grad.size].reshape(param.grad.shape)
            offset += param.grad.size
        return buffer[offset:].astype(np.float64)

    def sum(self, values: np.ndarray, purpose: str = "sums") -> np.ndarray:
        values = np.array(values, dtype=np.float64)
        self._allreduce(values, purpose)
        return values

    def _batch_norm_sum(self, values: np.ndarray) -> np.ndarray:
        return self.sum(values, "batch norm")

    def broadcast_object(self, obj):
        return self.comm.bcast(obj, root=0)

    def prepare_model(self, model) -> None:
        """Rank 0's parameters and buffers everywhere, batch norm synchronised, dropout
        generators decorrelated."""
        from fastconv.nn.norm import _BatchNorm

        for param in model.parameters():
            self.comm.Bcast(param.data, root=0)
        for _, buffer in model.named_buffers():
            self.comm.Bcast(buffer, root=0)
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.stats_reducer = self._batch_norm_sum
        _jump_generators(model, self.rank)

    def writer_first(self, fn):
        """``fn()`` on rank 0, then on the others (a cache one rank fills, the others read)."""
        if self.is_writer:
            result = fn()
            self.comm.Barrier()
            return result
        self.comm.Barrier()
        return fn()

    def describe(self) -> str:
        hosts = "host" if self.hosts == 1 else "hosts"
        return f"{self.size} MPI ranks on {self.hosts} {hosts}, {self.threads} threads per rank"

    # ------------------------------------------------------------ the machinery
    def _flat_buffer(self, params, extra: int) -> np.ndarray:
        size = sum(param.grad.size for param in params) + extra
        dtype = params[0].grad.dtype
        if self._buffer is None or self._buffer.size != size or self._buffer.dtype != dtype:
            self._buffer = np.empty(size, dtype)
        return self._buffer

    def _allreduce(self, buffer: np.ndarray, purpose: str) -> None:
        started = time.perf_counter()
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
        stats = self.allreduce_stats[purpose]
        stats[0] += 1
        stats[1] += buffer.nbytes
        stats[2] += time.perf_counter() - started  # includes waiting for the slowest rank

    def configure_threads(self) -> int:
        """Give the backend's kernels and BLAS ``self.threads`` threads each, so the
        ranks on a host never oversubscribe its cores."""
        import fastconv

        backend = fastconv.get_backend()
        if hasattr(backend, "set_num_threads"):
            backend.set_num_threads(self.threads)
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits

            self._blas_limit = threadpool_limits(limits=self.threads, user_api="blas")
        return self.threads

    @contextlib.contextmanager
    def abort_on_error(self, report):
        """Run the block; on any exception ``report(exc)`` (rank > 0 after a short
        grace) and ``MPI.Abort``: every rank ends, non-zero, instead of waiting forever
        in a collective the failed rank will never join."""
        try:
            yield
        except BaseException as exc:  # noqa: BLE001 -- every failure must end the job
            if self.rank != 0:
                time.sleep(ABORT_GRACE_S)
            report(exc, self.rank)
            sys.stdout.flush()
            sys.stderr.flush()
            self.comm.Abort(130 if isinstance(exc, KeyboardInterrupt) else 1)


def _jump_generators(model, rank: int) -> None:
    """Rank r's dropout generators: rank 0's jumped r times (independent streams,
    derived from the state a checkpoint holds)."""
    if rank == 0:
        return
    jumped = {}  # id of a shared generator -> (it, kept alive so ids stay unique; its jump)
    for module in model.modules():
        for attr, value in list(vars(module).items()):
            if isinstance(value, np.random.Generator) and hasattr(value.bit_generator, "jumped"):
                if id(value) not in jumped:
                    jumped[id(value)] = (value, np.random.Generator(value.bit_generator.jumped(rank)))
                setattr(module, attr, jumped[id(value)][1])
