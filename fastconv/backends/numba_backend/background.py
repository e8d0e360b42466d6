"""Compile kernel groups in a helper process into numba's on-disk cache.

Two uses:

* **while this process works** (`request`): a first call runs on an algorithm that is
  compiled already (`readiness`), and the other candidates of its problem are compiled
  by a helper at low priority; each group the helper reports ready bumps
  `generation`, and `select` then times the candidates again.  The helper outlives a
  short run (it finishes its groups for the next one) and is niced so the run keeps
  its cores;
* **up front, in parallel** (`Helper` with ``wait``): `warmup` gives a share of the
  groups to a helper and compiles the rest itself.

The helper is ``python -m fastconv.backends.numba_backend.background dtype:group ...``;
it prints ``ready dtype:group`` after each group and writes its errors to
``compile-helper.log`` in the fastconv cache folder.  A helper that dies costs time,
never a result: whatever it did not compile is compiled in this process when needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from fastconv.system import env

_lock = threading.Lock()
_requested: set = set()      # items asked for in this process (each compiled once)
_pending: list = []          # asked for, no helper started yet
_done: set = set()           # reported ready by a helper
_failed: set = set()         # its helper exited without reporting them
_running = None              # the `Helper` working for `request`, if any
generation = 0
"""Bumped whenever a requested item becomes ready or its helper exits: a decision
taken with items pending is revisited when this changes."""
_enabled: bool | None = None


def set_enabled(enabled: bool | None) -> None:
    """Allow (True) or forbid (False) background compilation, or follow
    ``FASTCONV_BACKGROUND_COMPILE`` again (None).  The benchmark forbids it: it times
    nothing before every candidate is compiled, and nothing while a helper runs."""
    global _enabled
    _enabled = enabled


def enabled() -> bool:
    return env.background_compile() if _enabled is None else _enabled


def log_path() -> str:
    return os.path.join(env.cache_dir(), "compile-helper.log")


class Helper:
    """One helper process compiling ``items``; ``on_ready(item)`` runs (on a reader
    thread) as each is reported, ``on_exit(helper)`` when the process has ended."""

    def __init__(self, items, on_ready=None, on_exit=None, nice: int = 0):
        self.items = list(items)
        self.ready: list = []
        self.returncode = None
        self._on_ready, self._on_exit = on_ready, on_exit
        child_env = dict(os.environ, FASTCONV_BACKGROUND_COMPILE="0", FASTCONV_HELPER_NICE=str(nice))
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, *self.items], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=_log_file(), text=True, env=child_env,
            start_new_session=True)          # a Ctrl-C in the terminal is for the run
        self._thread = threading.Thread(target=self._follow, daemon=True, name="fastconv-compile-helper")
        self._thread.start()

    def _follow(self) -> None:
        for line in self.process.stdout:
            word, _, item = line.strip().partition(" ")
            if word == "ready" and item in self.items:
                self.ready.append(item)
                if self._on_ready is not None:
                    self._on_ready(item)
        self.returncode = self.process.wait()
        if self._on_exit is not None:
            self._on_exit(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the helper to end; whether it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def missing(self) -> list:
        return [item for item in self.items if item not in self.ready]


def _log_file():
    try:
        os.makedirs(env.cache_dir(), exist_ok=True)
        return open(log_path(), "a", encoding="utf-8")     # noqa: SIM115 - the child's stderr
    except OSError:
        return subprocess.DEVNULL


# --------------------------------------------------------------------------- while working
def request(items) -> None:
    """Have a background helper compile ``items`` ("dtype:group") not asked for before."""
    with _lock:
        new = [item for item in items if item not in _requested]
        if not new:
            return
        _requested.update(new)
        _pending.extend(new)
        if _running is None:
            _start_next()


def _start_next() -> None:
    """Start a helper for everything pending (under ``_lock``)."""
    global _running
    items = list(_pending)
    _pending.clear()
    try:
        _running = Helper(items, on_ready=_item_ready, on_exit=_helper_exited, nice=10)
    except OSError:
        _running = None
        _failed.update(items)


def _item_ready(item) -> None:
    global generation
    _done.add(item)
    generation += 1


def _helper_exited(helper) -> None:
    global _running, generation
    with _lock:
        _failed.update(helper.missing())
        _running = None
        if _pending:
            _start_next()
        generation += 1


def busy() -> bool:
    """Whether a helper is compiling (or has work queued)."""
    with _lock:
        return _running is not None or bool(_pending)


def pending(item) -> bool:
    """Whether ``item`` was asked for and its helper may still deliver it."""
    return item in _requested and item not in _done and item not in _failed


def wait(timeout: float | None = None) -> bool:
    """Wait until no background helper runs; whether none does."""
    while True:
        with _lock:
            helper = _running
        if helper is None:
            return True
        if not helper.wait(timeout):
            return False


def reset() -> None:
    """Forget every request (tests); a running helper is left to finish."""
    with _lock:
        _requested.clear()
        _pending.clear()
        _done.clear()
        _failed.clear()


def lower_priority(nice: int) -> None:
    """Give this process ``nice`` -- and its session's autogroup too: the helper runs in
    a session of its own, and where the kernel groups the scheduler by session
    (``sched_autogroup``, on by default on desktop and server Linux) a task's nice only
    ranks it inside that group, so a niced helper alone in its session still took half
    the cores from the run it works for (measured: 50 % of one core; 3 % with the
    autogroup niced too)."""
    try:
        os.nice(nice)
    except OSError:
        pass
    try:
        with open("/proc/self/autogroup", "w", encoding="ascii") as autogroup:
            autogroup.write(str(nice))
    except OSError:                    # no autogroups here (other OS, or the feature off)
        pass


def _main(items) -> int:
    nice = int(os.environ.get("FASTCONV_HELPER_NICE", "0") or 0)
    if nice:
        lower_priority(nice)
    import importlib

    # the module, not the function the package re-exports under the same name
    warmup = importlib.import_module("fastconv.backends.numba_backend.warmup")
    for item in items:
        warmup.warm_items([item])
        try:
            print("ready", item, flush=True)
        except (BrokenPipeError, OSError):     # the run that asked has ended: keep compiling
            sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
