"""The ``fastconv`` command's options: the argparse types that check them
(`_positive_int`, `_probability`, `_setting`, `_names`), `HelpFormatter`, and
`build_parser` with one sub-parser per command (``bench`` only forwards its
arguments to `fastconv.benchmark`, which parses them).

Imports nothing heavy: the hyper-parameter ranges, the models and the version are
imported when the parser is built or an option is parsed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


# ------------------------------------------------------------------ argument types
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def _setting(name: str):
    """An argparse type for hyper-parameter ``name``: a number in its accepted range
    (`fastconv.training.hyperparameters`)."""
    def parse(text: str):
        from fastconv.training.hyperparameters import INTEGER_SETTINGS, range_problem

        try:
            value = int(text) if name in INTEGER_SETTINGS else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        problem = range_problem(name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = name
    return parse


def _names(text: str, flag: str) -> list[str]:
    """A comma-separated list of names; an empty one is an error naming ``flag``."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"{flag} {text!r} names nothing; give a comma-separated list")
    return names


def default_dataset(model_name: str) -> str:
    """The offline data set a model trains on when --dataset is left out."""
    return "letters" if model_name == "letters-cnn" else "digits"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless the text already says it
    (options whose default is None describe it in words)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None:
            return text
        return super()._get_help_string(action)


# ------------------------------------------------------------------ the parser
def _add_data_options(parser: argparse.ArgumentParser, dataset_default: str | None) -> None:
    parser.add_argument("--dataset", default=dataset_default,
                        help="mnist, fashion-mnist, digits, letters, or a folder (IDX files or one "
                             "sub-folder of images per class)"
                        + (f" (default {dataset_default})" if dataset_default
                           else " (default: the one the checkpoint was trained on)"))
    parser.add_argument("--data-root", type=Path, default=None,
                        help="folder searched first for the data files (default: none; FASTCONV_DATA, "
                             "~/.cache/fastconv and /usr/share/datasets are searched after it)")
    parser.add_argument("--download", action="store_true", help="download missing MNIST-format files")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="use at most N train and N test images (a seeded subset, for quick runs; "
                             "default: all)")


def build_parser() -> argparse.ArgumentParser:
    from fastconv import __version__

    parser = argparse.ArgumentParser(prog="fastconv", formatter_class=HelpFormatter, description=(
        "Numba-JIT convolution kernels and a from-scratch CNN framework: train, visualise "
        "and benchmark the networks of the two course reports."))
    parser.add_argument("--version", action="version", version=f"fastconv {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(commands)
    _add_viz(commands)
    _add_compare(commands)
    _add_tools(commands)
    return parser


def _add_train(commands) -> None:
    from fastconv.models import MODELS

    train = commands.add_parser("train", help="train a model, writing checkpoint, logs and curves",
                                formatter_class=HelpFormatter,
                                description="Train a model; hyper-parameters left out take the "
                                            "report's defaults for that model.")
    train.add_argument("--model", choices=list(MODELS), default=None,
                       help="network (default cnn; with --resume the checkpoint's)")
    _add_data_options(train, None)
    train.add_argument("--epochs", type=_positive_int, default=10,
                       help="total epochs (with --resume: continue up to this many; default 10)")
    train.add_argument("--batch-size", type=_setting("batch_size"), default=None,
                       help="global batch size over all MPI ranks (default: the model's report setting, "
                            "like every hyper-parameter)")
    train.add_argument("--lr", type=_setting("lr"), default=None,
                       help="initial learning rate, in (0, 100] (default: the model's report setting)")
    train.add_argument("--momentum", type=_setting("momentum"), default=None,
                       help="in [0, 1) (default: the model's report setting)")
    train.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=None,
                       help="sgd (default), adam or adamw (PyTorch semantics; their lr default is 1e-3)")
    train.add_argument("--weight-decay", type=_setting("weight_decay"), default=None,
                       help="in [0, 1] (default: the model's report setting)")
    train.add_argument("--lr-step", type=_setting("lr_step"), default=None,
                       help="multiply the learning rate by --lr-gamma every this many epochs (default 5)")
    train.add_argument("--lr-gamma", type=_setting("lr_gamma"), default=None, help="in (0, 1] (default 0.5)")
    train.add_argument("--no-bn", action="store_true", help="letters-cnn without batch normalisation")
    train.add_argument("--dropout", type=_probability, default=None,
                       help="letters-cnn dropout probability (default: the model's report setting)")
    train.add_argument("--dtype", choices=["float32", "float64"], default=None,
                       help="model dtype (default float32, or the checkpoint's on --resume)")
    train.add_argument("--backend", default=None, help="numpy, numba, ... (default: FASTCONV_BACKEND or numba)")
    train.add_argument("--seed", type=int, default=None,
                       help="weights, batch order and data subset (default 0)")
    train.add_argument("--out", type=Path, default=None,
                       help="output folder (default runs/MODEL-DATASET)")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_viz(commands) -> None:
    viz = commands.add_parser("viz", help="figures and entropy table of a trained model",
                              formatter_class=HelpFormatter,
                              description="Curves, conv kernels, feature maps, t-SNE and the entropy "
                                          "table of a checkpoint, on its data set's test split.")
    viz.add_argument("checkpoint", type=Path, nargs="?", default=None,
                     help="model.npz (or its folder), here or as --checkpoint (required: no default)")
    viz.add_argument("--checkpoint", dest="checkpoint_option", type=Path, default=None,
                     help="the same as the positional CHECKPOINT (default: none)")
    viz.add_argument("--out", type=Path, default=None, help="output folder (default: CHECKPOINT_DIR/figures)")
    _add_data_options(viz, None)
    viz.add_argument("--images", type=int, nargs="+", default=None,
                     help="test image indices for the feature maps (default: one each of 4 classes)")
    viz.add_argument("--tsne-points", type=_positive_int, default=1000, help="test images in the t-SNE plots")
    viz.add_argument("--entropy-images", type=_positive_int, default=None,
                     help="test images averaged in the entropy table (default: all)")
    viz.add_argument("--backend", default=None, help="numpy, numba, ... (default: FASTCONV_BACKEND or numba)")
    viz.add_argument("--seed", type=int, default=0, help="t-SNE and image choice")


def _add_compare(commands) -> None:
    compare = commands.add_parser("compare", help="CNN vs MLP-1 vs MLP-2 (report 000 section 4)",
                                  formatter_class=HelpFormatter,
                                  description="Train cnn, mlp1 and mlp2 with the report's settings "
                                              "and tabulate time, accuracy and parameter count.")
    _add_data_options(compare, "digits")
    compare.add_argument("--epochs", type=_positive_int, default=5, help="epochs per model")
    compare.add_argument("--backends", default=None,
                         help="comma-separated, e.g. numpy,numba (default: the current backend)")
    compare.add_argument("--models", default="cnn,mlp1,mlp2", help="comma-separated models")
    compare.add_argument("--seed", type=int, default=0, help="weights, batch order and data subset")
    compare.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder")
    compare.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_tools(commands) -> None:
    """``bench``, ``compile`` and ``info``."""
    # bench: its arguments are parsed by fastconv.benchmark (see fastconv.cli.dispatch)
    commands.add_parser("bench", add_help=False, help="kernel and training-step benchmarks "
                                                      "(fastconv bench --help)")
    compile_ = commands.add_parser(
        "compile", help="compile every numba kernel this CPU can use, now",
        formatter_class=HelpFormatter,
        description="Compile (or load from numba's on-disk cache) every kernel of the numba backend that "
                    "this CPU can use, on two processes, with progress lines: for a machine image, a "
                    "shared installation or before a benchmark, so that no later run waits.  Runs also "
                    "compile what they need on their own.")
    compile_.add_argument("--dtype", default="float32", choices=("float32", "float64", "both"),
                          help="the kernels' dtype")
    compile_.add_argument("--jobs", type=_positive_int, default=2, help="processes that compile")
    commands.add_parser("info", help="version, backends, threads and environment problems",
                        description="Print the fastconv and Python versions, the backends that load here "
                                    "(and why another does not), the cores and threads, numba's threading "
                                    "layer, the BLAS the kernels' GEMMs call and the PyTorch version.  It "
                                    "works whatever the FASTCONV_* variables hold.")


def _one_checkpoint(parser, args) -> Path:
    """``viz``'s checkpoint, given positionally (as examples/visualize.py) or as
    ``--checkpoint``; argparse's usage error when missing or given twice differently."""
    given = {path for path in (args.checkpoint, args.checkpoint_option) if path is not None}
    if len(given) != 1:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices["viz"].error("give one checkpoint: fastconv viz RUN/model.npz "
                                      "(or --checkpoint RUN/model.npz)")
    return given.pop()
