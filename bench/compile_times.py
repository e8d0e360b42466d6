"""Cold compile time of every jitted kernel, per dtype, on an empty numba cache.

    python bench/compile_times.py                  # float32, every warm-up group
    python bench/compile_times.py --dtypes float32,float64 --groups direct,pool --top 30

Runs each warm-up group (`fastconv.backends.numba_backend.warmup`) in turn in this
process, with numba's cache pointed at a fresh temporary folder, and records numba's
compile events: each jitted function's own compile seconds (its callees' compiles,
which happen inside it, subtracted), the part of them spent holding the LLVM lock
(optimisation and machine code), whether it is ``parallel=True``, and which group
compiled it first.  Prints a markdown table of kernels and one of group wall times.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


class _CompileRecorder:
    """numba event listener: exclusive compile and LLVM seconds per (function, signature)."""

    def __init__(self):
        self.stack = []           # open compiles: [dispatcher, args, start, child seconds, llvm seconds]
        self.llvm_start = None
        self.rows = {}            # (qualname, args) -> dict
        self.group = None

    def on_start(self, event):
        now = time.perf_counter()
        if event.kind == "numba:compile":
            self.stack.append([event.data["dispatcher"], event.data["args"], now, 0.0, 0.0])
        elif event.kind == "numba:llvm_lock":
            self.llvm_start = now

    def on_end(self, event):
        now = time.perf_counter()
        if event.kind == "numba:llvm_lock" and self.llvm_start is not None:
            if self.stack:
                self.stack[-1][4] += now - self.llvm_start
            self.llvm_start = None
        elif event.kind == "numba:compile" and self.stack:
            dispatcher, args, start, children, llvm = self.stack.pop()
            total = now - start
            if self.stack:
                self.stack[-1][3] += total
            func = dispatcher.py_func
            name = f"{func.__module__.rsplit('.', 1)[-1]}.{func.__qualname__}"
            dtype = next((t for t in ("float32", "float64") if t in str(args)), "-")
            row = self.rows.setdefault((name, str(args)), {
                "kernel": name, "dtype": dtype, "group": self.group, "seconds": 0.0, "llvm": 0.0,
                "parallel": bool(dispatcher.targetoptions.get("parallel"))})
            row["seconds"] += total - children
            row["llvm"] += min(llvm, total - children)


def _warmup_module():
    # the package re-exports the function `warmup` under the module's name
    import importlib

    return importlib.import_module("fastconv.backends.numba_backend.warmup")


def measure(dtypes, groups):
    """(kernel rows, group rows) for a cold compile of ``groups`` for ``dtypes``."""
    from numba.core import event

    warmup = _warmup_module()

    recorder = _CompileRecorder()

    class Listener(event.Listener):
        def on_start(self, ev):
            recorder.on_start(ev)

        def on_end(self, ev):
            recorder.on_end(ev)

    listener = Listener()
    for kind in ("numba:compile", "numba:llvm_lock"):
        event.register(kind, listener)
    group_rows = []
    for dtype in dtypes:
        for group in groups:
            recorder.group = f"{dtype}:{group}"
            start = time.perf_counter()
            warmup.warm_items([recorder.group])
            group_rows.append((recorder.group, time.perf_counter() - start))
            print(f"  {recorder.group:<22} {group_rows[-1][1]:6.1f} s", file=sys.stderr, flush=True)
    return list(recorder.rows.values()), group_rows


def markdown(kernel_rows, group_rows, top):
    lines = ["| kernel | dtype | parallel | compile s | of which LLVM s | first compiled by |",
             "|---|---|---|---:|---:|---|"]
    ranked = sorted(kernel_rows, key=lambda r: -r["seconds"])
    for row in ranked[:top]:
        lines.append(f"| {row['kernel']} | {row['dtype']} | {'yes' if row['parallel'] else ''} | "
                     f"{row['seconds']:.2f} | {row['llvm']:.2f} | {row['group']} |")
    rest = ranked[top:]
    if rest:
        lines.append(f"| ({len(rest)} more) | | | {sum(r['seconds'] for r in rest):.2f} | "
                     f"{sum(r['llvm'] for r in rest):.2f} | |")
    total = sum(r["seconds"] for r in kernel_rows)
    llvm = sum(r["llvm"] for r in kernel_rows)
    parallel = sum(r["seconds"] for r in kernel_rows if r["parallel"])
    lines += ["", f"{len(kernel_rows)} compiled functions, {total:.1f} s in all: {llvm:.1f} s in LLVM, "
                  f"{parallel:.1f} s in the {sum(r['parallel'] for r in kernel_rows)} parallel ones.", "",
              "| warm-up group | wall s |", "|---|---:|"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in group_rows]
    lines.append(f"| all | {sum(s for _, s in group_rows):.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="float32", help="comma-separated (default: float32)")
    parser.add_argument("--groups", default=None, help="comma-separated warm-up groups (default: all)")
    parser.add_argument("--top", type=int, default=40, help="kernel rows to list (default: 40)")
    parser.add_argument("--markdown", default=None, help="also write the tables to this file")
    args = parser.parse_args(argv)
    if "numba" in sys.modules:
        raise SystemExit("run this as a script: numba must not be imported before its cache is redirected")
    with tempfile.TemporaryDirectory(prefix="fastconv-compile-times-") as cache:
        os.environ["NUMBA_CACHE_DIR"] = cache
        warmup = _warmup_module()
        groups = args.groups.split(",") if args.groups else list(warmup.groups())
        kernel_rows, group_rows = measure(args.dtypes.split(","), groups)
    text = markdown(kernel_rows, group_rows, args.top)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
