"""Output files that are never half-written: checked before the work, replaced in one step."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from graphrec.errors import GraphrecError


def check_output(path: str | os.PathLike, *, force: bool = False, option: str = "--out") -> Path:
    """Validate an output path before any work is done; returns it as a ``Path``.

    Refuses a path that is a folder, an existing file without ``force`` and a missing parent
    folder (the message names ``option``), so a long run cannot fail at its very end.
    """
    path = Path(path)
    if path.is_dir():
        raise GraphrecError(f"{option} {path} is a folder; expected a file name")
    if path.exists() and not force:
        raise GraphrecError(f"{option} {path} exists; pass --force to overwrite it")
    parent = path.parent
    if not parent.is_dir():
        raise GraphrecError(f"{option} {path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise GraphrecError(f"{option} {path}: folder {parent} is not writable")
    return path


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it is fsynced and renamed to ``path``.

    If the block raises (or the process is killed), ``path`` keeps its old content (or stays
    absent) and the temporary file is removed (a kill can leave a ``.<name>.*.tmp`` behind,
    never a half-written ``path``).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as open() would create it (mkstemp makes it owner-only)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(text.encode("utf-8"))
