"""What the ``fastconv`` command prints besides its results: the ``FASTCONV_*``
environment checked before a command creates or loads anything, and warnings as one
``fastconv: ...`` line each.

Imports nothing heavy: `fastconv.cli.dispatch` imports it before it knows the command.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings

from fastconv.system import env
from fastconv.system.env import EnvironmentVariableError

EXIT_USAGE = 2      # argparse's status for a bad invocation: a bad variable is one too


def check_environment() -> None:
    """Every ``FASTCONV_*`` variable the commands read (`fastconv.system.env.check`, and the
    backend name): raises `EnvironmentVariableError` naming the first bad one.  The
    algorithm and BLAS names are the numba backend's, asked only when set (importing
    it takes a second)."""
    from fastconv.backends import registered_backends

    env.check()
    requested = env.raw(env.BACKEND)
    if requested and requested.lower() not in registered_backends():
        raise EnvironmentVariableError(f"{env.BACKEND}={requested!r}: unknown backend {requested.lower()!r}; "
                                       f"registered: {', '.join(registered_backends())}")
    if env.raw(env.CONV_ALGO) or env.raw(env.BLAS):
        try:
            from fastconv.backends.numba_backend import blas, select
        except ImportError:
            return                   # no numba: nothing reads them
        env.choice(env.CONV_ALGO, select.MODES)
        env.choice(env.BLAS, blas.PROVIDERS)


def bad_environment(debug: bool = False) -> int | None:
    """`EXIT_USAGE` after one error line naming a bad variable (with ``debug``: the
    exception); None when every variable is good."""
    try:
        check_environment()
    except EnvironmentVariableError as exc:
        if debug:
            raise
        print(f"fastconv: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return None


def say(text: str) -> None:
    """``fastconv: text`` as one line on stderr, above any progress bar."""
    line = "fastconv: " + " ".join(str(text).split())
    try:
        from tqdm import tqdm
    except ImportError:
        print(line, file=sys.stderr, flush=True)
    else:
        tqdm.write(line, file=sys.stderr)


class _LineHandler(logging.Handler):
    def emit(self, record):
        try:
            say(record.getMessage())
        except Exception:  # noqa: BLE001 - logging's contract: a handler never raises
            self.handleError(record)


def _show_warning(message, category, *args, **kwargs) -> None:
    kind = "" if category in (UserWarning, RuntimeWarning) else f"{category.__name__}: "
    say(f"warning: {kind}{message}")


@contextlib.contextmanager
def one_line_notices():
    """Inside: the ``fastconv`` loggers' warnings (a compile or autotuning cache that
    cannot be used) and Python's warnings (the thread cap) as `say` lines."""
    logger, handler = logging.getLogger("fastconv"), _LineHandler(logging.WARNING)
    logger.addHandler(handler)
    shown, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        yield
    finally:
        warnings.showwarning = shown
        logger.removeHandler(handler)
