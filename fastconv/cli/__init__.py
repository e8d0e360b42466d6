"""The ``fastconv`` command.

    fastconv train --model cnn --dataset fashion-mnist --epochs 5 --backend numba --out runs/fashion
    fastconv train --model cnn --dataset fashion-mnist --epochs 10 --out runs/fashion --resume
    fastconv viz --checkpoint runs/fashion/model.npz --out runs/fashion/figures
    fastconv compare --dataset mnist --epochs 5 --backends numpy,numba --out runs/compare
    fastconv bench --quick
    fastconv info
    mpiexec -n 2 fastconv train --model cnn --dataset digits --out runs/digits-2ranks   # fastconv[mpi]

A user mistake (unknown data set, missing files, a checkpoint that does not fit)
prints one ``fastconv: error: ...`` line and exits with status 1, in every command
including ``bench``; bad options exit with argparse's status 2, and so does a bad
``FASTCONV_*`` environment variable, checked before anything is created or loaded;
Ctrl-C during training saves and exits with 130.  ``--debug`` shows the full
traceback instead.  ``--help``, ``--version`` and ``info`` work whatever the
environment holds; bare ``fastconv`` prints the help.  Warnings (fastconv's and
Python's) are one ``fastconv: ...`` line each on stderr.

The package, one concern a module:

* `fastconv.cli.arguments` -- the options: argparse types, `HelpFormatter`, `build_parser`;
* `fastconv.cli.commands`  -- what each command runs once parsed, the exit statuses;
* `fastconv.cli.console`   -- the ``FASTCONV_*`` check before a command, warnings as lines;
* `fastconv.cli.dispatch`  -- `main`: parse, check, run, and the exit status.

Nothing heavy is imported before the command is known: ``fastconv --help`` is fast.
"""

# _positive_int too: fastconv.benchmark's options use it.
from fastconv.cli.arguments import HelpFormatter, _positive_int, build_parser  # noqa: F401
from fastconv.cli.dispatch import main

__all__ = ["HelpFormatter", "build_parser", "main"]
