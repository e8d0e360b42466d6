"""The ``FASTCONV_*`` environment variables: read in one place, and a bad value is an
error naming the variable.

* ``FASTCONV_BACKEND``     -- backend chosen on first use (`fastconv.backends`);
* ``FASTCONV_NUM_THREADS`` -- threads of the numba (and torch) backend, a positive int;
* ``FASTCONV_CONV_ALGO``   -- the numba convolution algorithm mode (`numba_backend.select`);
* ``FASTCONV_CONV_EXACT``  -- 1: exact-arithmetic convolution algorithms only;
* ``FASTCONV_CACHE_DIR``   -- where autotuning results are kept (default ~/.cache/fastconv),
  and numba's compile cache when numba finds no writable folder of its own;
* ``FASTCONV_BLAS``        -- mkl, openblas or auto: the BLAS the numba GEMMs call;
* ``FASTCONV_OPENBLAS_CORETYPE`` -- the kernels (OpenBLAS core type) of fastconv's own
  OpenBLAS, default: what OpenBLAS detects on this CPU;
* ``FASTCONV_BACKGROUND_COMPILE`` -- 0: a first call compiles what it needs instead of
  running on what is compiled while a helper process compiles the rest;
* ``FASTCONV_LEAN_CODEGEN`` -- 0: numba's plain code generation (`numba_backend.lean_codegen`).

The data folders (``FASTCONV_DATA``, ``FASTCONV_CACHE``) are read by `fastconv.data`.
`check` validates every variable whose valid values are known here, for a command to
fail before it creates or loads anything.

`EnvironmentVariableError` is deliberately not a `ValueError`: code that turns a
ValueError from a model's forward pass into "this model cannot take that data" must
not relabel a misconfigured machine.
"""

from __future__ import annotations

import os

BACKEND = "FASTCONV_BACKEND"
NUM_THREADS = "FASTCONV_NUM_THREADS"
CONV_ALGO = "FASTCONV_CONV_ALGO"
CONV_EXACT = "FASTCONV_CONV_EXACT"
CACHE_DIR = "FASTCONV_CACHE_DIR"
BLAS = "FASTCONV_BLAS"
OPENBLAS_CORETYPE = "FASTCONV_OPENBLAS_CORETYPE"
DATA = "FASTCONV_DATA"
DATA_CACHE = "FASTCONV_CACHE"
BACKGROUND_COMPILE = "FASTCONV_BACKGROUND_COMPILE"
LEAN_CODEGEN = "FASTCONV_LEAN_CODEGEN"


class EnvironmentVariableError(Exception):
    """An environment variable fastconv reads holds a value it cannot use."""


def raw(name: str) -> str:
    """The variable's value, stripped ("" when unset)."""
    return os.environ.get(name, "").strip()


def snapshot(*names: str) -> tuple:
    """The variables' values as they stand, for a memo key on a per-call path: not
    decoded or checked, but cheap -- 20 ns a variable, against the 0.7 us of
    ``os.environ.get`` (which encodes the name and decodes the value every time)."""
    environ = os.environ
    data = getattr(environ, "_data", None)          # CPython's encoded mapping behind it
    encode = getattr(environ, "encodekey", None)
    if data is None or encode is None:
        return tuple(environ.get(name) for name in names)
    keys = _ENCODED.get(names)
    if keys is None:
        keys = _ENCODED[names] = tuple(encode(name) for name in names)
    return tuple(map(data.get, keys))


_ENCODED: dict = {}      # names -> their keys in ``os.environ._data``


def positive_int(name: str) -> int | None:
    """The variable as a positive int, None when unset or empty."""
    value = raw(name)
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise EnvironmentVariableError(f"{name} must be a positive integer, got {value!r}")
    return number


def num_threads() -> int | None:
    """``FASTCONV_NUM_THREADS``, None when unset (then: all cores)."""
    return positive_int(NUM_THREADS)


def choice(name: str, valid) -> str | None:
    """The variable lower-cased, which must be one of ``valid``; None when unset."""
    value = raw(name)
    if not value:
        return None
    if value.lower() not in valid:
        raise EnvironmentVariableError(f"{name}: unknown value {value!r}; valid: {', '.join(valid)}")
    return value.lower()


def flag(name: str, default: bool = False) -> bool:
    """The variable as a yes/no switch (1/true/yes or 0/false/no); ``default`` when unset."""
    value = raw(name).lower()
    if not value:
        return default
    if value in ("0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise EnvironmentVariableError(f"{name} must be 0 or 1, got {value!r}")


def background_compile() -> bool:
    """``FASTCONV_BACKGROUND_COMPILE``: whether a first call may run on the algorithm that
    is compiled while a helper process compiles the others (default: yes)."""
    return flag(BACKGROUND_COMPILE, default=True)


def lean_codegen() -> bool:
    """``FASTCONV_LEAN_CODEGEN``: whether numba skips the code generation whose result
    it throws away (`numba_backend.lean_codegen`; default: yes)."""
    return flag(LEAN_CODEGEN, default=True)


def cache_dir() -> str:
    """``FASTCONV_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastconv`` (default
    ``~/.cache/fastconv``); not created here."""
    return raw(CACHE_DIR) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fastconv")


def folder(name: str) -> str | None:
    """The variable as a folder path, which need not exist yet but must not be a
    file (everything under it would fail later, one file at a time); None when unset."""
    value = raw(name)
    if not value:
        return None
    path = os.path.expanduser(value)
    if os.path.exists(path) and not os.path.isdir(path):
        raise EnvironmentVariableError(f"{name} must name a folder, but {value!r} is a file")
    return path


def check() -> None:
    """Validate the variables whose valid values this module knows (raises
    `EnvironmentVariableError` naming the first bad one); the backend and algorithm
    names are checked by their owners (`fastconv.cli.console` asks them)."""
    num_threads()
    for name in (CONV_EXACT, BACKGROUND_COMPILE, LEAN_CODEGEN):
        flag(name)
    for name in (CACHE_DIR, DATA, DATA_CACHE):
        folder(name)
