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
    add_read_options(info)
    info.set_defaults(func=info_command)


def byte_size(text: str) -> int:
    """An argparse ``type``: a byte count >= 1, optionally with a K, M or G (binary) suffix."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    digits, scale = text, 1
    if text[-1:].upper() in units:
        digits, scale = text[:-1], units[text[-1].upper()]
    try:
        value = int(float(digits) * scale) if digits.strip() else 0
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"--max-input-bytes must be a size such as 500000000, 512M or 8G; got {text!r}"
        )
    return value


def add_read_options(parser: argparse.ArgumentParser) -> None:
    """Add the reading options ``--header``, ``--delimiter``, ``--max-input-bytes``."""
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
    parser.add_argument(
        "--max-input-bytes",
        type=byte_size,
        default=None,
        metavar="N",
        help="refuse input larger than N bytes after decompression, e.g. 512M (default: 8G)",
    )


def max_input_bytes(args: argparse.Namespace) -> int:
    """The ``--max-input-bytes`` limit, or the readers' default (8 GiB)."""
    from graphrec.io._text import DEFAULT_MAX_INPUT_BYTES

    return args.max_input_bytes or DEFAULT_MAX_INPUT_BYTES


def info_command(args: argparse.Namespace) -> int:
    """Run ``graphrec data info``."""
    from graphrec.io.describe import describe_file

    summary = describe_file(
        args.path,
        kind=args.kind,
        undirected=args.undirected,
        header=args.header,
        delimiter=args.delimiter,
        max_input_bytes=max_input_bytes(args),
    )
    print(summary)
    return 0
