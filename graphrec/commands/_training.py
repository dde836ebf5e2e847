"""Shared by the training commands (``cf train``, ``ctr train``, ``fl run``, ``fl ode``,
``vfl train``): options that do not apply refused, output and checkpoint paths prepared before
any work, run folders resumed only by the same configuration, resume errors with a hint."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from graphrec.errors import GraphrecError
from graphrec.io.atomic import check_output
from graphrec.io.checkpoint import CheckpointError, check_same_run

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


def prepare_run_folder(
    out: Path,
    config: dict[str, Any],
    *,
    force: bool,
    checkpoint: str,
    files: Sequence[str],
    config_file: str = "config.json",
    results_file: str = "results.json",
) -> bool:
    """Create the ``--out`` folder; True when an interrupted run of the same configuration
    (its ``checkpoint`` file and ``config_file`` there) is to be resumed. Another configuration
    is refused with the list of differences, a finished run (``results_file``) without
    ``force``; ``force`` removes the checkpoint and ``files`` first."""
    if out.exists() and not out.is_dir():
        raise GraphrecError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    if force:
        for name in {checkpoint, config_file, results_file, *files}:
            (out / name).unlink(missing_ok=True)
        return False
    if (out / results_file).exists():
        raise GraphrecError(f"--out {out} holds a finished run ({results_file}); pass --force")
    if not (out / checkpoint).exists():
        return False
    try:
        saved = json.loads((out / config_file).read_text())
    except (OSError, ValueError) as exc:
        raise GraphrecError(
            f"--out {out} holds a checkpoint but {config_file} is missing or unreadable ({exc}); "
            "pass --force to start over"
        ) from None
    try:
        check_same_run(out / checkpoint, saved, config)
    except CheckpointError as exc:
        raise resume_error(exc) from None
    return True
