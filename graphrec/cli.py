"""The ``graphrec`` command line.

Subcommands (one module each in :mod:`graphrec.commands`)::

    graphrec data info PATH          load any supported file and print a summary
    graphrec fastcover [GRAPH] ...   choose k seeds covering the most nodes within d hops
    graphrec cf train|recommend ...  MF / LightGCN with BPR, InfoNCE or HDCCF; top-k items
    graphrec ctr train ...           five base CTR models, optionally with HIEN
    graphrec fl run|ode ...          federated strategies (FedSubAvg ...), ODE data selection
    graphrec export CHECKPOINT ...   ONNX / MNN export with a torch parity check

Every failure the user can fix (bad file, bad argument, missing file, memory budget) prints one
line ``graphrec: error: ...`` and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_all(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``graphrec`` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return func(args)
    except (GraphrecError, FileNotFoundError, ValueError) as exc:
        print(f"graphrec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
