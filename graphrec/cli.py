"""The ``graphrec`` command line.

Subcommands (one module each in :mod:`graphrec.commands`)::

    graphrec data info PATH          load any supported file and print a summary
    graphrec fastcover [GRAPH] ...   choose k seeds covering the most nodes within d hops
    graphrec fastcover train ...     train the FastCover model of one hop count d
    graphrec cf train|recommend ...  MF / LightGCN with BPR, InfoNCE or HDCCF; top-k items
    graphrec ctr train ...           five base CTR models, optionally with HIEN
    graphrec fl run|ode ...          federated strategies (FedSubAvg ...), ODE data selection
    graphrec ondevice finetune ...   per-user fine-tuning of a CTR model, label correction
    graphrec export CHECKPOINT ...   ONNX / MNN export with a torch parity check

Every failure the user can fix (bad file, bad argument, missing file, memory budget) prints one
line ``graphrec: error: ...`` and exits with status 2; no traceback. Only the package's own
errors (:class:`graphrec.errors.GraphrecError`) and OS errors are reported that way: any other
exception is a bug and keeps its traceback. Options are never abbreviated.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from graphrec import __version__
from graphrec.commands import register_all
from graphrec.errors import GraphrecError


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphrec",
        description="Graph learning for recommendation, federated and on-device learning, "
        "and influence maximization.",
    )
    parser.add_argument("--version", action="version", version=f"graphrec {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_all(sub)
    _no_abbreviations(parser)
    return parser


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """Refuse abbreviated options everywhere: ``--d 9`` must not silently mean ``--delimiter``."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _no_abbreviations(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``graphrec`` console script."""
    parser = _build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # ``fastcover`` takes an optional GRAPH, so ``fastcover train`` is its own subcommand.
    i = next((i for i, word in enumerate(argv) if not word.startswith("-")), len(argv))
    if argv[i : i + 2] == ["fastcover", "train"]:
        argv[i : i + 2] = ["fastcover train"]
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return func(args)
    except BrokenPipeError:
        # the reader of our output went away (``graphrec data info F | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # as a process killed by SIGPIPE
    except KeyboardInterrupt:
        print("graphrec: interrupted", file=sys.stderr)
        return 130
    except (GraphrecError, OSError, MemoryError) as exc:
        if args.debug:
            raise
        print(f"graphrec: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` (an ``OSError`` as 'path: what'), on one line where it was one."""
    if isinstance(exc, OSError) and not isinstance(exc, GraphrecError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror}"
    return str(exc) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
