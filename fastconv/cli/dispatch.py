"""The ``fastconv`` command's entry point: `main` reads the command line, checks the
``FASTCONV_*`` environment (except for ``--help``, ``--version`` and ``info``), runs
the command and turns what it raises into an exit status (`_guarded`).

``fastconv.cli.main`` (the console script) and ``python -m fastconv.cli`` are this
`main`; it lives here, not in the package's ``__init__``, so that ``__main__`` can
import it from a sibling.
"""

from __future__ import annotations

import sys

from fastconv.cli.arguments import _one_checkpoint, build_parser
from fastconv.cli.commands import EXIT_INTERRUPTED, EXIT_USER_ERROR, USER_ERRORS, _run_bench, _run_command
from fastconv.cli.console import bad_environment, one_line_notices


def main(argv=None) -> int:
    """Entry point of the ``fastconv`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with one_line_notices():
        return _main(argv)


def _main(argv: list) -> int:
    debug = "--debug" in argv[:1]
    if argv[int(debug):int(debug) + 1] == ["bench"]:
        bench_argv = argv[int(debug) + 1:]
        if not {"-h", "--help"} & set(bench_argv):
            bad = bad_environment(debug)
            if bad is not None:
                return bad
        return _guarded(lambda: _run_bench(bench_argv), debug)
    parser = build_parser()
    if not argv[int(debug):]:
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
        if args.command == "viz":
            args.checkpoint = _one_checkpoint(parser, args)
    except SystemExit as exc:  # --help or a usage error: argparse already printed why
        return int(exc.code or 0)
    if args.command != "info":                 # info reports the environment's problems
        bad = bad_environment(args.debug)
        if bad is not None:
            return bad
    return _guarded(lambda: _run_command(args), args.debug)


def _guarded(run, debug: bool) -> int:
    """``run()``'s status; a user error is one line (the traceback with ``--debug``)."""
    try:
        return run()
    except KeyboardInterrupt:
        print("fastconv: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"fastconv: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
