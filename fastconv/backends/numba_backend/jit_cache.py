"""numba's on-disk compile cache, made unable to break a run.

The kernels are ``@njit(cache=True)``.  Two ways numba's own cache fails are handled
here, for fastconv's functions only (those of ``fastconv.*`` modules):

* an entry that cannot be loaded -- a truncated or garbled ``.nbi`` index or ``.nbc``
  data file makes numba raise (EOFError, UnpicklingError, an LLVM parsing error) in
  every later process -- is discarded (that function's index and data files) and the
  kernel compiled again, with one line naming it; a failed save is one line too;
* no writable cache folder (a read-only install whose ``__pycache__``,
  ``NUMBA_CACHE_DIR`` and home cannot be written: numba raises "no locator
  available" as the kernel is decorated) falls back to `fallback_folder`, and where
  nothing is writable to compiling without the on-disk cache, with one line.

`install` puts the guarded cache in place of numba's ``FunctionCache`` for the
functions decorated after it (``kernels/__init__`` calls it before any kernel is
defined).  It relies on numba internals in a few places -- ``dispatcher.FunctionCache``,
``CacheImpl._locator_classes``, the user-wide locator, the index/data file names --
and where one of them has moved it installs less or nothing, leaving numba's plain
behaviour, and never raises.  Data files written here carry a checksum of their
payload (older ones load unchecked).  Lines go to the ``fastconv`` logger (without a
handler: stderr, the message alone).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import stat
import tempfile

from fastconv.system import env

_log = logging.getLogger(__name__)
_PACKAGE = "fastconv."
_installed = False
_said: set = set()


def _say_once(key, message: str) -> None:
    if key not in _said:
        _said.add(key)
        _log.warning(message)


def _ours(py_func) -> bool:
    return (getattr(py_func, "__module__", None) or "").startswith(_PACKAGE)


def _kernel_name(py_func) -> str:
    """``pool.max_pool2d_forward``: the kernel module's last name and the function."""
    module = (getattr(py_func, "__module__", None) or "?").rsplit(".", 1)[-1]
    return f"{module}.{getattr(py_func, '__qualname__', '?')}"


def _first_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0][:160]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# --------------------------------------------------------------------------- fallback folder
def _user_id() -> str:
    if hasattr(os, "getuid"):
        return str(os.getuid())
    import getpass

    return getpass.getuser()


def _candidates() -> list[str]:
    """fastconv's cache folder, then a per-user folder in the temp folder."""
    return [os.path.join(env.cache_dir(), "numba"),
            os.path.join(tempfile.gettempdir(), f"fastconv-numba-cache-{_user_id()}")]


def _private(folder: str) -> bool:
    """A real folder of this user's that nobody else can write: a cache entry is a
    pickle numba loads, so one planted in a shared temp folder would run as us."""
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        return False
    return not hasattr(os, "getuid") or (info.st_uid == os.getuid() and not info.st_mode & 0o022)


@functools.lru_cache(maxsize=None)
def fallback_folder() -> str | None:
    """Where numba's cache goes when numba finds no writable folder of its own: the
    first of `_candidates` that is private and writable; None when there is none."""
    for folder in _candidates():
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            if _private(folder):
                tempfile.TemporaryFile(dir=folder).close()
                _log.info("numba cache: no writable folder of numba's own; using %s", folder)
                return folder
        except OSError:
            continue
    return None


# --------------------------------------------------------------------------- the guard
def _discard(cache, error: BaseException) -> None:
    """Remove the function's index and data files (numba names them ``<base>.nbi`` and
    ``<base>.<n>.nbc``), so that the recompiled kernel is saved afresh."""
    outcome = "discarded it"
    try:
        folder, base = cache._cache_path, cache._impl.filename_base
        for name in os.listdir(folder):
            if name == base + ".nbi" or (name.startswith(base + ".") and name.endswith(".nbc")):
                os.remove(os.path.join(folder, name))
    except Exception:  # noqa: BLE001 - numba internals moved or the folder refuses: just recompile
        outcome = "could not remove it"
    _say_once(("load", cache._name), f"numba cache: the entry of kernel {_kernel_name(cache._py_func)} "
                                     f"could not be loaded ({_first_line(error)}); {outcome}, compiling it again")


_CHECKED = "fastconv-sha256"     # marks a data file whose payload carries its checksum


def _impl_class(caching):
    """numba's cache implementation with `fallback_folder` after numba's own locators,
    and a checksum around each data file's payload: garbled machine code could load
    without error and crash when run, so it must fail the check instead.  Each part
    is left out where numba's internals are not as expected."""
    impl = caching.FunctionCache._impl_class
    members = {}
    user_wide = getattr(caching, "UserWideCacheLocator", None) or getattr(caching, "_UserWideCacheLocator", None)
    if user_wide is not None and isinstance(getattr(impl, "_locator_classes", None), list):
        class FallbackLocator(user_wide):
            def __init__(self, py_func, py_file):
                super().__init__(py_func, py_file)
                self._cache_path = os.path.join(fallback_folder(), self.get_suitable_cache_subpath(py_file))

            @classmethod
            def from_function(cls, py_func, py_file):
                return super().from_function(py_func, py_file) if fallback_folder() else None

        members["_locator_classes"] = [*impl._locator_classes, FallbackLocator]
    dumps = getattr(caching, "dumps", None)
    if callable(dumps):
        def reduce(self, data):
            payload = dumps(super(checked, self).reduce(data))
            return (_CHECKED, hashlib.sha256(payload).digest(), payload)

        def rebuild(self, target_context, reduced):
            if isinstance(reduced, tuple) and len(reduced) == 3 and reduced[0] == _CHECKED:
                if hashlib.sha256(reduced[2]).digest() != reduced[1]:
                    raise ValueError("checksum mismatch")
                reduced = pickle.loads(reduced[2])
            return super(checked, self).rebuild(target_context, reduced)   # an older entry: unchecked

        members.update(reduce=reduce, rebuild=rebuild)
    checked = type("GuardedCacheImpl", (impl,), members)
    return checked


def _guarded_class(caching):
    """numba's ``FunctionCache`` on `_impl_class`, with loading and saving that
    cannot raise."""
    impl = _impl_class(caching)

    class GuardedFunctionCache(caching.FunctionCache):
        _impl_class = impl
        _unusable = False

        def __init__(self, py_func):
            try:
                super().__init__(py_func)
            except RuntimeError as error:           # no locator: nowhere to write
                self._name, self._py_func, self._cache_path = repr(py_func), py_func, None
                self._unusable, self._enabled = True, False
                _without_disk_cache.append(self._name)
                _say_once("no folder", f"numba cache: no writable folder for compiled kernels ({_first_line(error)}); "
                                       "compiling them in every process")

        def enable(self):
            if not self._unusable:
                super().enable()

        def flush(self):
            if not self._unusable:
                super().flush()

        def load_overload(self, sig, target_context):
            try:
                return super().load_overload(sig, target_context)
            except Exception as error:  # noqa: BLE001 - whatever is wrong with the entry, compiling fixes it
                _discard(self, error)
                return None

        def save_overload(self, sig, data):
            try:
                super().save_overload(sig, data)
            except Exception as error:  # noqa: BLE001 - a kernel that runs matters more than its cache entry
                _say_once(("save", self._name), f"numba cache: could not save kernel {_kernel_name(self._py_func)} "
                                                f"({_first_line(error)}); it is compiled again in the next process")

    return GuardedFunctionCache


_without_disk_cache: list = []      # kernels that found no folder to cache in


def disk_cache_works() -> bool:
    """Whether every kernel defined so far has a folder for its compiled code."""
    return not _without_disk_cache


def install() -> bool:
    """Guard numba's cache for the fastconv functions decorated from now on (once
    per process); False when numba's internals are not as expected (then nothing
    changes)."""
    global _installed
    if _installed:
        return True
    try:
        from numba.core import caching, dispatcher

        plain = dispatcher.FunctionCache
        if not (isinstance(caching.FunctionCache, type) and issubclass(caching.FunctionCache, caching.Cache)):
            return False
        guarded = _guarded_class(caching)
    except Exception:  # noqa: BLE001 - numba moved its internals: keep its plain behaviour
        return False

    def function_cache(py_func):
        return guarded(py_func) if _ours(py_func) else plain(py_func)

    dispatcher.FunctionCache = function_cache
    _installed = True
    return True
