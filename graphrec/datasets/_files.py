"""Locating and opening the files of a named dataset under a user-given root."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Sequence
from pathlib import Path

from graphrec.errors import DatasetNotFoundError, GraphrecError


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


#: Named dataset -> its folder under a data root laid out like ``shared/data``.
DATASET_FOLDERS: dict[str, tuple[str, ...]] = {
    "ml-100k": ("movielens", "ml-100k"),
    "gowalla": ("lightgcn", "gowalla"),
    "amazon-users": ("amazon_electronics_users",),
    "taobao": ("ctr", "taobao_userbehavior_sample"),
    "uci-heart": ("fl", "uci_heart_disease"),
    "uci-har": ("fl", "uci_har_labels"),
}

#: Environment variable naming the default data root of every command.
DATA_ENV = "GRAPHREC_DATA"


def dataset_folder(name: str, root: str | Path | None) -> Path:
    """The folder of named dataset ``name``: ``root`` may be the data root or the folder itself.

    ``root=None`` falls back to ``$GRAPHREC_DATA``. Under a data root laid out like
    ``shared/data`` the dataset's own subfolder (``DATASET_FOLDERS``) is used when it exists;
    otherwise ``root`` is taken to be the dataset's folder.

    Raises:
        GraphrecError: neither ``root`` nor ``$GRAPHREC_DATA`` is given, or ``root`` is not a
            folder (the message names ``--data-root``).
    """
    if root is None:
        root = os.environ.get(DATA_ENV) or None
    if root is None:
        raise GraphrecError(
            f"dataset {name!r} needs its files: pass --data-root DIR (the data root, e.g. "
            f"shared/data, or the dataset's own folder) or set ${DATA_ENV}"
        )
    root = Path(root).expanduser()
    if not root.is_dir():
        raise GraphrecError(
            f"--data-root {root} is not a folder (expected the data root, e.g. shared/data, "
            f"or the folder of dataset {name!r})"
        )
    nested = root.joinpath(*DATASET_FOLDERS.get(name, ()))
    return nested if nested.is_dir() else root
