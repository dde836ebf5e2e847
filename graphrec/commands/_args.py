"""Argument parsers shared by the subcommands."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path


def positive_int(name: str) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers >= 1; the error names the option."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be >= 1, got {value}")
        return value

    return parse


def positive_float(name: str) -> Callable[[str], float]:
    """An argparse ``type`` accepting finite floats > 0; the error names the option."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number > 0, got {text}")
        return value

    return parse


def bounded_float(
    name: str, *, minimum: float | None = None, below: float | None = None
) -> Callable[[str], float]:
    """An argparse ``type``: a finite float ``>= minimum`` and ``< below`` (each optional);
    the error names the option."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number, got {text}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum:g}, got {text}")
        if below is not None and value >= below:
            raise argparse.ArgumentTypeError(f"{name} must be < {below:g}, got {text}")
        return value

    return parse


def nonnegative_int(name: str) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers >= 0; the error names the option."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{name} must be >= 0, got {value}")
        return value

    return parse


class _DeprecatedRoot(argparse.Action):
    """``--root``: the old name of ``--data-root``; stores the value and warns once."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        print(
            f"graphrec: warning: {option_string} is deprecated; use --data-root (the data root, "
            "e.g. shared/data, or the dataset's own folder)",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_data_root(parser: argparse.ArgumentParser, what: str = "the named dataset") -> None:
    """Add ``--data-root DIR`` (and its deprecated alias ``--root``) to ``parser``.

    One meaning in every subcommand: the data root laid out like ``shared/data`` or the
    dataset's own folder; default ``$GRAPHREC_DATA`` (resolved by
    :func:`graphrec.datasets.dataset_folder`, so the value stays ``None`` when not given).
    """
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"folder of {what}: the data root (e.g. shared/data) or the dataset's own folder; "
        "default $GRAPHREC_DATA",
    )
    parser.add_argument(
        "--root", dest="data_root", type=Path, action=_DeprecatedRoot, help=argparse.SUPPRESS
    )
