"""Ctrl-C during training: the first one asks the loop to stop after the current
batch (and save); a second one is the usual `KeyboardInterrupt`."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable


class StopFlag:
    """Set by the first SIGINT; the loop checks it between batches."""

    def __init__(self):
        self.requested = False


@contextlib.contextmanager
def stop_on_sigint(flag: StopFlag, log: Callable[[str], None]):
    """First Ctrl-C: set ``flag`` (stop after this batch).  Second: the usual
    `KeyboardInterrupt`.  Only the main thread can own signal handlers; a process
    started with SIGINT ignored (``nohup``, a background job) keeps ignoring it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return

    def handler(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True
        log("\nCtrl-C: stopping after this batch and saving (press again to stop at once)")

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
