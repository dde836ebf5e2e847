"""Locating and opening the files of a named dataset under a user-given root."""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence
from pathlib import Path

from graphrec.errors import DatasetNotFoundError


def locate(dataset: str, root: str | Path, names: Sequence[str], hint: str = "") -> dict[str, Path]:
    """Map each file name to its path under ``root``, accepting ``name`` or ``name.gz``.

    ``.npz`` files are looked up under their exact name only.

    Raises:
        DatasetNotFoundError: listing every missing file (with its accepted alternatives).
    """
    root = Path(root).expanduser()
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in names:
        candidates = [name] if name.endswith(".npz") else [name, name + ".gz"]
        path = next((root / c for c in candidates if (root / c).is_file()), None)
        if path is None:
            missing.append(" or ".join(candidates))
        else:
            found[name] = path
    if missing:
        raise DatasetNotFoundError(dataset, root, missing, hint)
    return found


def open_text(path: Path, encoding: str = "utf-8") -> io.TextIOBase:
    """Open a plain or gzip-compressed (``.gz``) text file for reading."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding=encoding)
    return open(path, encoding=encoding)
