"""``graphrec data info``: load any supported file and print a summary."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``data`` subcommand group to the top-level parser."""
    data = sub.add_parser("data", help="inspect data files")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    info = data_sub.add_parser(
        "info",
        help="load a file (edge list, rating log, CTR table, sparse .npz) and print a summary",
    )
    info.add_argument("path", type=Path)
    info.add_argument(
        "--kind",
        choices=["auto", "edges", "interactions", "ctr", "npz"],
        default="auto",
        help="what the file holds (default: detected from its content)",
    )
    info.add_argument("--undirected", action="store_true", help="edge list: symmetrise")
    add_edgelist_options(info)
    info.set_defaults(func=info_command)


def add_edgelist_options(parser: argparse.ArgumentParser) -> None:
    """Add the edge-list reading options ``--header`` and ``--delimiter`` to ``parser``."""
    parser.add_argument(
        "--header",
        choices=["auto", "yes", "no"],
        default="auto",
        help="edge list: is the first data line a count line 'n m' or column names? "
        "(default: auto, detected from the rest of the file)",
    )
    parser.add_argument(
        "--delimiter",
        default=None,
        metavar="D",
        help="edge list: field separator, e.g. ',' or ';' (default: ',' when the first data "
        "line has one, else whitespace)",
    )


def info_command(args: argparse.Namespace) -> int:
    """Run ``graphrec data info``."""
    from graphrec.io.describe import describe_file

    summary = describe_file(
        args.path,
        kind=args.kind,
        undirected=args.undirected,
        header=args.header,
        delimiter=args.delimiter,
    )
    print(summary)
    return 0
