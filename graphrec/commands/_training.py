"""Shared by the training commands (``cf train``, ``ctr train``, ``fl run``, ``fl ode``): options
that do not apply refused, output and checkpoint paths prepared before any work, resume errors
with a hint."""

from __future__ import annotations

import argparse
from pathlib import Path

from graphrec.errors import GraphrecError
from graphrec.io.atomic import check_output
from graphrec.io.checkpoint import CheckpointError

RESUME_HINT = "--force starts over"


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
