"""How long each command line entry point waits before its first output, cold and warm.

    python bench/first_output.py              # --help, info, train --epochs 1, bench --quick
    python bench/first_output.py --skip-bench

Each command runs in a fresh process with its own empty numba and fastconv caches
(cold), then again on the same caches (warm).  Printed per command: seconds to its
first line of output, to the line that shows the real work done (the first training
batch, the first kernel timed), and to its exit (tqdm's carriage returns count as
line ends).  A background compile
helper a command leaves behind is waited for before the next command starts.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

# (label, arguments, pattern of the line that shows the real work going on: the first
# training batch done, the first kernel timed)
FIRST_BATCH = r"epoch 1/1: .*\| *[1-9]\d*/\d+"
COMMANDS = [
    ("fastconv --help", ["--help"], None),
    ("fastconv info", ["info"], None),
    ("fastconv train --epochs 1", ["train", "--epochs", "1", "--out", "{tmp}/run-{cache}"], FIRST_BATCH),
    ("fastconv train --model letters-cnn --epochs 1", ["train", "--model", "letters-cnn", "--epochs", "1",
                                                      "--out", "{tmp}/letters-{cache}"], FIRST_BATCH),
    ("fastconv bench --quick", ["bench", "--quick", "--out", "{tmp}/quick-{cache}"], r"^conv2d .* numba "),
]


def run(arguments, cache: str, marker: str | None) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(cache, "numba"),
               FASTCONV_CACHE_DIR=os.path.join(cache, "fastconv"), PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    first = work = None
    process = subprocess.Popen([sys.executable, "-m", "fastconv.cli", *arguments], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in process.stdout:
        now = time.perf_counter() - start
        if first is None and line.strip():
            first = now
        if work is None and marker is not None and re.search(marker, line):
            work = now
    code = process.wait()
    total = time.perf_counter() - start
    _wait_for_helpers()
    return dict(first=first, work=work, total=total, code=code)


def _wait_for_helpers(limit: float = 300.0) -> None:
    """A run leaves a background compile helper behind: let it finish before the next
    command is timed (it would take a core from it)."""
    deadline = time.time() + limit
    while time.time() < deadline:
        found = subprocess.run(["pgrep", "-f", "fastconv.backends.numba_backend.background"],
                               capture_output=True, text=True)
        if not found.stdout.strip():
            return
        time.sleep(1.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-bench", action="store_true", help="leave out bench --quick (minutes)")
    args = parser.parse_args(argv)
    print("| command | cache | first line s | work shown s | exit s | status |")
    print("|---|---|---:|---:|---:|---:|")
    for label, arguments, marker in COMMANDS:
        if args.skip_bench and arguments[0] == "bench":
            continue
        with tempfile.TemporaryDirectory(prefix="fastconv-first-output-") as tmp:
            for cache_state in ("cold", "warm"):
                r = run([a.format(tmp=tmp, cache=cache_state) for a in arguments], tmp, marker)
                cells = [f"{r[key]:.1f}" if r[key] is not None else "-" for key in ("first", "work", "total")]
                print(f"| `{label}` | {cache_state} | " + " | ".join(cells) + f" | {r['code']} |", flush=True)


if __name__ == "__main__":
    main()
