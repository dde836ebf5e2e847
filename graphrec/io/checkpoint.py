"""Training checkpoints: written atomically, read safely, resumed only by the same run.

* :func:`save_checkpoint` - ``torch.save`` through :func:`graphrec.io.atomic.atomic_open`, so a
  killed run leaves the previous checkpoint (or none), never a half-written one.
* :func:`load_checkpoint` - ``torch.load(..., weights_only=True)``; a truncated file, random
  bytes, a pickle of arbitrary objects (never executed) or a file of another kind raise
  :class:`CheckpointError`, one line naming the file.
* :func:`fingerprint` - a hash of the data a run trains on (arrays, tensors, sparse matrices).
* :func:`check_same_run` - compares the configuration and data recorded in a checkpoint with
  the current ones and raises :class:`CheckpointError` listing every difference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from graphrec.errors import GraphrecError
from graphrec.io.atomic import atomic_open

__all__ = ["CheckpointError", "check_same_run", "fingerprint", "load_checkpoint", "save_checkpoint"]


class CheckpointError(GraphrecError, ValueError):
    """A checkpoint cannot be read, or was written by another run (configuration or data)."""


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """``torch.save(state)`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_open(path, "wb") as f:
        torch.save(dict(state), f)


def load_checkpoint(
    path: str | os.PathLike, *, keys: Iterable[str], what: str, records: Iterable[str] = ()
) -> dict:
    """The dict saved at ``path`` (``weights_only=True``), which must hold ``keys`` and, under
    each of ``records``, a dict.

    Raises:
        CheckpointError: the file is truncated, corrupt, holds objects a weights-only load
            refuses, or is not such a dict (``what`` names the expected kind, e.g. "CF
            training checkpoint").
        FileNotFoundError, PermissionError, IsADirectoryError: as ``open`` would.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch's notes on odd files: the error says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # zip, pickle, EOF, OSError(22), IndexError ... of a bad file
        raise CheckpointError(f"{path} is truncated, corrupt or not a {what}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a {what}")
    records = list(records)
    missing = [k for k in [*keys, *records] if k not in state]
    if missing:
        raise CheckpointError(
            f"{path} is not a {what} (it has no {', '.join(missing)}: another kind of file, or "
            "one of an older graphrec)"
        )
    bad = [k for k in records if not isinstance(state[k], dict)]
    if bad:
        raise CheckpointError(f"{path} is not a {what} ({bad[0]} is no dict)")
    return state


def _update(h: Any, obj: Any, seen: set[int], depth: int) -> None:
    """Feed ``obj``'s data into the hash ``h`` (see :func:`fingerprint`)."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, np.generic)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
        return
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"tensor:{obj.dtype}:{tuple(obj.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
        return
    if isinstance(obj, np.ndarray):
        h.update(f"array:{obj.dtype}:{obj.shape};".encode())
        if obj.dtype == object:
            h.update(repr(obj.tolist()).encode())
        else:
            h.update(np.ascontiguousarray(obj).tobytes())
        return
    if sp.issparse(obj):
        m = sp.csr_array(obj)
        if not m.has_sorted_indices:
            m = m.sorted_indices()  # a copy: the caller's matrix stays as it is
        h.update(f"sparse:{m.shape};".encode())
        for part in (m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data):
            _update(h, part, seen, depth)
        return
    if id(obj) in seen or depth > 8 or callable(obj) or isinstance(obj, torch.nn.Module):
        return  # modules: initial weights come from the seed; callables: code, not data
    seen.add(id(obj))
    if isinstance(obj, Mapping):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    elif dataclasses.is_dataclass(obj):
        items = ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
    elif hasattr(obj, "__dict__"):
        items = vars(obj).items()
    else:
        return
    h.update(f"{type(obj).__name__}(".encode())
    for key, value in items:
        if isinstance(key, str) and key.startswith("_"):
            continue  # caches and other private state
        h.update(f"{key!r}=".encode())
        _update(h, value, seen, depth + 1)
    h.update(b")")


def fingerprint(*objects: Any) -> str:
    """A SHA-256 (16 hex digits) of the data in ``objects``.

    Hashes arrays, tensors, sparse matrices, numbers and strings, found in mappings, lists,
    tuples, dataclasses and the public attributes of other objects; ``torch.nn.Module`` s,
    callables and attributes starting with ``_`` (caches) are skipped.

    Example:
        >>> fingerprint(np.arange(3)) == fingerprint(np.arange(3)) != fingerprint(np.arange(4))
        True
    """
    h = hashlib.sha256()
    seen: set[int] = set()
    for obj in objects:
        _update(h, obj, seen, 0)
    return h.hexdigest()[:16]


def _flat(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"local": {"lr": 0.1}}`` -> ``{"local.lr": 0.1}``; tuples become lists."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def check_same_run(
    path: str | os.PathLike, saved: Mapping[str, Any], current: Mapping[str, Any]
) -> None:
    """Raise :class:`CheckpointError` unless the (nested) records ``saved`` and ``current`` are
    equal; the message lists each difference as ``name saved -> current``."""
    old, new = _flat(saved), _flat(current)
    names = [*new, *(k for k in old if k not in new)]
    diffs = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in names if old.get(k) != new.get(k)]
    if diffs:
        raise CheckpointError(f"checkpoint {path} was written by another run: {'; '.join(diffs)}")
