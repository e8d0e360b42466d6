"""Say so when a kernel's first use compiles for more than a couple of seconds.

`warmup` compiles what a run needs first, with its own progress lines; what it leaves
(a strided layer's kernel, a candidate timed once its helper is done, a dtype first
used mid-run) compiles when first called.  `watch` installs a numba event listener
that names such a compile once it has taken `ANNOUNCE_SECONDS`, then says every
`TICK_SECONDS` that it still runs and, at the end, how long it took.
"""

from __future__ import annotations

import threading
import time

from numba.core import event

ANNOUNCE_SECONDS = 2.0
TICK_SECONDS = 5.0


class _Watch(event.Listener):
    def __init__(self, log):
        self.log = log
        self.depth = 0
        self.started = None            # the outermost compile's start and name
        self.name = ""
        self.said = None               # when it was last reported (None: not yet)
        self.quiet = 0                 # > 0 while a warm-up reports its own progress
        self.lock = threading.Lock()
        threading.Thread(target=self._tick, daemon=True, name="fastconv-compile-watch").start()

    def on_start(self, ev):
        with self.lock:
            self.depth += 1
            if self.depth == 1:
                func = ev.data["dispatcher"].py_func
                self.started, self.name, self.said = time.perf_counter(), func.__qualname__, None

    def on_end(self, ev):
        with self.lock:
            self.depth -= 1
            if self.depth == 0:
                if self.said is not None:
                    self.log(f"  compiled {self.name} in {time.perf_counter() - self.started:.0f} s")
                self.started = None

    def _tick(self):
        while True:
            time.sleep(0.5)
            with self.lock:
                if self.started is None or self.quiet:
                    continue
                now = time.perf_counter()
                if self.said is None and now - self.started >= ANNOUNCE_SECONDS:
                    self.log(f"compiling the numba kernel {self.name} (its first use here; numba keeps "
                             f"it in its on-disk cache for later runs)")
                    self.said = now
                elif self.said is not None and now - self.said >= TICK_SECONDS:
                    self.log(f"  still compiling {self.name}: {now - self.started:.0f} s so far")
                    self.said = now


_watch: _Watch | None = None


def watch(log) -> None:
    """Report long first-use compiles through ``log`` from now on (once per process;
    a later call only changes where the lines go)."""
    global _watch
    if _watch is None:
        _watch = _Watch(log)
        event.register("numba:compile", _watch)
    _watch.log = log


class quiet:
    """Within it the watch says nothing (the warm-up reports its own progress)."""

    def __enter__(self):
        if _watch is not None:
            with _watch.lock:
                _watch.quiet += 1

    def __exit__(self, *exc):
        if _watch is not None:
            with _watch.lock:
                _watch.quiet -= 1
