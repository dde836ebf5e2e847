"""Argument parsers shared by the subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable


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
    """An argparse ``type`` accepting floats > 0; the error names the option."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {value}")
        return value

    return parse
