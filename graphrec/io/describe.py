"""Detect what a data file holds and summarise it (``graphrec data info``)."""

from __future__ import annotations

import csv
import io
import itertools
from contextlib import closing
from pathlib import Path

import numpy as np

from graphrec.errors import ConfigError, InputFormatError
from graphrec.io._text import (
    DEFAULT_MAX_INPUT_BYTES,
    EDGE_COLUMNS,
    check_input_file,
    is_number,
    iter_line_chunks,
    read_text_bytes,
)

KINDS = ("auto", "edges", "interactions", "ctr", "npz")


def _data_lines(path: Path, limit: int, max_input_bytes: int) -> list[str]:
    """The first ``limit`` data lines (neither blank nor comments), from the first chunk."""
    with closing(iter_line_chunks(path, max_input_bytes=max_input_bytes)) as chunks:
        data, _ = next(chunks, (b"", 1))
    pieces = data.split(b"\n", 10_000)
    lines = []
    for raw in pieces[:10_000]:  # the last piece is the rest of the chunk when it has more
        line = raw.decode("utf-8").strip()
        if line and not line.startswith(("#", "%")):
            lines.append(line)
            if len(lines) == limit:
                break
    return lines


def sniff_kind(path: str | Path, *, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> str:
    """Guess whether ``path`` is an edge list, an interaction log, a CTR table or an ``.npz``.

    Rules, on the first 50 data lines: ``.npz`` suffix -> ``npz``; a first line with a
    non-numeric field and a comma or tab separated header of 3+ columns -> ``ctr`` (unless
    every column name is an edge-list one such as ``source,target,weight`` -> ``edges``); a ``::``
    separator (MovieLens ``ratings.dat``), the same number (>= 4) of numeric fields on every line
    (MovieLens ``u.data``, logs with extra columns) or a varying number (>= 2) of fields per line
    (LightGCN ``user item item ...``) -> ``interactions``; otherwise ``edges``.
    """
    path = Path(path)
    if path.suffix == ".npz":
        return "npz"
    lines = _data_lines(path, 50, max_input_bytes)
    if not lines:
        raise InputFormatError("no data lines", path=path, expected="edges, ratings or a CSV table")
    first = lines[0]
    if "::" in first:  # MovieLens-1M/10M ratings.dat: user::item::rating::timestamp
        return "interactions"
    sep = "," if "," in first else ("\t" if "\t" in first else None)
    fields = first.split(sep)
    names = [f.strip().strip('"').lower() for f in fields]
    if all(name in EDGE_COLUMNS for name in names):
        return "edges"
    if sep is not None and len(fields) >= 3 and not all(is_number(f) for f in fields):
        return "ctr"
    counts = {len(line.split(sep)) for line in lines}
    if len(counts) == 1 and counts.pop() >= 4:  # user item rating timestamp [more ...]
        return "interactions"
    if len(counts) > 1 and min(counts) >= 2 and max(counts) > 3:
        return "interactions"
    return "edges"


def _table_summary(path: Path, max_input_bytes: int) -> str:
    text = read_text_bytes(path, max_input_bytes=max_input_bytes).decode("utf-8")
    sample = text[:4096]
    delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
    try:  # a first row typed like the rest (e.g. numbers) is data, not column names
        named = csv.Sniffer().has_header(sample)
    except csv.Error:
        named = True
    with io.StringIO(text, newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        first = next(reader)
        header = first if named else [f"column {j + 1}" for j in range(len(first))]
        distinct: list[set[str]] = [set() for _ in header]
        missing = [0] * len(header)
        numeric = [True] * len(header)
        rows = 0
        body = reader if named else itertools.chain([first], reader)
        for lineno, row in enumerate(body, start=2 if named else 1):
            if len(row) != len(header):
                raise InputFormatError(
                    f"has {len(row)} fields",
                    path=path,
                    line=lineno,
                    content=delimiter.join(row),
                    expected=f"{len(header)} fields like the header",
                )
            rows += 1
            for j, value in enumerate(row):
                if value == "":
                    missing[j] += 1
                    continue
                if len(distinct[j]) <= 100_000:
                    distinct[j].add(value)
                if numeric[j] and not is_number(value):
                    numeric[j] = False
    what = "" if named else "; no header row: line 1 is data"
    out = [f"file      {path}", f"kind      table ({len(header)} columns, {rows:,} rows{what})"]
    for j, name in enumerate(header):
        kind = "numeric" if numeric[j] else "text"
        out.append(
            f"  {name:<24} {kind:<8} distinct {len(distinct[j]):>8,}  missing {missing[j]:>7,}"
        )
    return "\n".join(out)


def _npz_summary(path: Path) -> str:
    import scipy.sparse as sp

    try:
        mat = sp.load_npz(path)
    except (OSError, ValueError, KeyError) as exc:
        raise InputFormatError(
            f"not a scipy sparse .npz ({exc})", path=path, expected="scipy.sparse.save_npz output"
        ) from None
    rows, cols = mat.shape
    out = [f"file      {path}", f"kind      sparse matrix {rows:,} x {cols:,}, nnz {mat.nnz:,}"]
    if rows == cols:
        sym = abs(mat - mat.T).nnz == 0
        out.append(
            f"square    symmetric={sym}, diagonal nnz {int(np.count_nonzero(mat.diagonal()))}"
        )
    return "\n".join(out)


def describe_file(
    path: str | Path,
    *,
    kind: str = "auto",
    undirected: bool = False,
    header: str = "auto",
    delimiter: str | None = None,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> str:
    """Load ``path`` with the reader its content calls for and return a readable summary.

    Args:
        path: an edge list, a rating/interaction log, a CSV/TSV table or a sparse ``.npz``.
        kind: one of ``auto``, ``edges``, ``interactions``, ``ctr``, ``npz``.
        undirected: for edge lists, symmetrise.
        header, delimiter: for edge lists, as in :func:`~graphrec.io.read_edgelist`.
        max_input_bytes: refuse content larger than this (after decompression).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InputFormatError: ``path`` is not a readable regular file, or is malformed.
    """
    path = Path(path)
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    check_input_file(path)
    if kind == "auto":
        kind = sniff_kind(path, max_input_bytes=max_input_bytes)
    if kind == "npz":
        return _npz_summary(path)
    if kind == "ctr":
        return _table_summary(path, max_input_bytes)
    if kind == "interactions":
        from graphrec.io import read_interactions

        return read_interactions(path, max_input_bytes=max_input_bytes).summary()
    from graphrec.io import read_edgelist

    graph = read_edgelist(
        path,
        undirected=undirected,
        header=header,
        delimiter=delimiter,
        max_input_bytes=max_input_bytes,
    )
    return graph.summary()
