"""Shared by the training commands (``cf train``, ``fl run``, ``fl ode``): number options checked
on parse, output and checkpoint paths prepared before any work, resume errors with a hint."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from graphrec.errors import GraphrecError
from graphrec.io.atomic import check_output
from graphrec.io.checkpoint import CheckpointError

RESUME_HINT = "--force starts over"


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


def refuse_unused(args: argparse.Namespace, applies: dict[str, tuple[str, bool]]) -> None:
    """Refuse options given where they do not apply.

    ``applies`` maps an option (``"--prox-mu"``; its value is ``args.prox_mu``, None when not
    given) to ``(where it applies, whether it applies now)``.
    """
    for option, (where, ok) in applies.items():
        if not ok and getattr(args, option.lstrip("-").replace("-", "_")) is not None:
            raise GraphrecError(f"{option} applies to {where} only")


def prepare_output(path: Path, *, force: bool, option: str, resumable: bool = False) -> Path:
    """Create ``path``'s folder and validate ``path`` before any work
    (:func:`graphrec.io.atomic.check_output`); a ``resumable`` file (a checkpoint) may exist."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GraphrecError(
            f"{option} {path}: cannot create folder {path.parent} ({exc.strerror})"
        ) from exc
    return check_output(path, force=force or resumable, option=option)


def resume_error(exc: CheckpointError) -> GraphrecError:
    """The CLI error for a checkpoint that cannot be resumed: its message and the hint."""
    return GraphrecError(f"{exc}; {RESUME_HINT}")
