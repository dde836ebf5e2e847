"""User-item interaction logs (MovieLens ratings, LightGCN splits, CSV) -> :class:`Interactions`."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import compress
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.data import Data

from graphrec.errors import ConfigError, InputFormatError
from graphrec.io._text import (
    DEFAULT_MAX_INPUT_BYTES,
    Lines,
    PathLike,
    check_choice,
    first_data_line,
    parse_ints,
    parse_numbers,
    read_text_bytes,
    relabel_ids,
    scan,
)

FORMATS = ("auto", "movielens", "lightgcn", "csv")
# CSV header names (lower case, '_' removed) accepted for each role.
_COLUMNS = {
    "user": ("user", "userid", "uid"),
    "item": ("item", "itemid", "movieid", "iid"),
    "rating": ("rating", "score"),
    "timestamp": ("timestamp", "time", "ts"),
}


@dataclass(repr=False, eq=False)
class Interactions:
    """A user-item interaction log with contiguous user and item indices.

    Attributes:
        user, item: int64 index per interaction (``0..num_users-1``, ``0..num_items-1``).
        rating: float32 per interaction, or None.
        timestamp: int64 per interaction, or None.
        user_ids, item_ids: original id of each index (int64, or object array of ``str``).
        path: the file read, or None.
        format: ``"movielens"``, ``"lightgcn"`` or ``"csv"``.
        extra_columns: columns after ``timestamp`` in a ``movielens`` log (read, not kept).

    Example:
        >>> log = Interactions(np.array([0, 1]), np.array([1, 0]), None, None,
        ...                    np.array([7, 9]), np.array([3, 5]))
        >>> log.to_csr().toarray().tolist()
        [[0.0, 1.0], [1.0, 0.0]]
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray | None
    timestamp: np.ndarray | None
    user_ids: np.ndarray
    item_ids: np.ndarray
    path: str | None = None
    format: str | None = None
    extra_columns: int = 0

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_interactions(self) -> int:
        return len(self.user)

    def to_csr(self) -> sp.csr_array:
        """Binary ``num_users x num_items`` matrix (float32; repeated pairs give 1)."""
        shape = (self.num_users, self.num_items)
        ones = np.ones(len(self.user), dtype=np.float32)
        matrix = sp.csr_array((ones, (self.user, self.item)), shape=shape)
        matrix.data[:] = 1.0
        return matrix

    def to_bipartite_data(self) -> Data:
        """The user-item graph as PyG ``Data``: users ``0..U-1``, items ``U..U+I-1``.

        Edges are the distinct user-item pairs of :meth:`to_csr`, user -> item first, then the
        same pairs item -> user (so ``edge_index`` is symmetric). ``num_users`` and
        ``num_items`` are stored on the ``Data``.
        """
        return bipartite_data(self.to_csr())

    def summary(self) -> str:
        """A short multi-line description: file, sizes, density, per-user counts, ranges."""
        u, i, m = self.num_users, self.num_items, self.num_interactions
        pairs = self.to_csr().nnz
        density = pairs / (u * i) if u and i else 0.0
        out = [
            f"Interactions  {self.path or '<in memory>'} ({self.format or 'in memory'})",
            f"  users         {u:,}",
            f"  items         {i:,}",
            f"  interactions  {m:,} ({pairs:,} distinct pairs, density {density:.4%})",
        ]
        if u:
            per_user = np.bincount(self.user, minlength=u)
            out.append(
                f"  per user      min {per_user.min()}, median {np.median(per_user):g}, "
                f"mean {per_user.mean():.2f}, max {per_user.max()}"
            )
        if self.rating is not None and len(self.rating):
            r = self.rating
            out.append(f"  ratings       {r.min():g} .. {r.max():g}, mean {r.mean():.3f}")
        if self.timestamp is not None and len(self.timestamp):
            out.append(f"  timestamps    {self.timestamp.min()} .. {self.timestamp.max()}")
        if self.extra_columns:
            out.append(f"  ignored       {self.extra_columns} column(s) after the timestamp")
        return "\n".join(out)

    def __repr__(self) -> str:
        return (
            f"Interactions(num_users={self.num_users}, num_items={self.num_items}, "
            f"num_interactions={self.num_interactions}, path={self.path!r})"
        )


def bipartite_data(matrix: sp.sparray | sp.spmatrix) -> Data:
    """PyG ``Data`` of a ``users x items`` matrix: users ``0..U-1``, items ``U..U+I-1``.

    Edges are user -> item for every nonzero, then the same pairs item -> user;
    ``num_users`` / ``num_items`` are stored on the ``Data``.
    """
    num_users, num_items = matrix.shape
    coo = sp.coo_array(matrix)
    users = torch.from_numpy(coo.row.astype(np.int64))
    items = torch.from_numpy(coo.col.astype(np.int64)) + num_users
    edge_index = torch.cat([torch.stack([users, items]), torch.stack([items, users])], dim=1)
    return Data(
        edge_index=edge_index,
        num_nodes=num_users + num_items,
        num_users=num_users,
        num_items=num_items,
    )


def read_interactions(
    path: PathLike,
    *,
    format: str = "auto",
    sep: str | None = None,
    keep_ids: bool = False,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> Interactions:
    """Read a user-item interaction log.

    Formats:
        ``"movielens"``: ``user item rating [timestamp [more ...]]`` per line (MovieLens
        ``u.data``; ``::`` separated ``ratings.dat`` works too). Every line has the same field
        count; columns after the timestamp are ignored (``extra_columns`` counts them).
        Ratings must be finite and within float32's range.
        ``"lightgcn"``: ``user item item ...`` per line (LightGCN/NGCF splits); a line with
        only a user is a user without interactions (still counted in ``num_users``).
        ``"csv"``: a header naming the columns ``user``, ``item`` and optionally ``rating``,
        ``timestamp`` (also ``user_id``/``userId``/``uid``, ``item_id``/``movieId``/``iid``,
        ``score``, ``time``/``ts``); other columns are ignored. No quoting: use
        :func:`~graphrec.io.read_ctr_table` for general CSV.
        ``"auto"``: by the first data line: a non-numeric field -> csv; a ``::``, tab or comma
        separator -> movielens; spaces only -> lightgcn.

    Args:
        path: the file (``.gz`` is read transparently); ``#`` lines are comments.
        format: one of the formats above.
        sep: field separator; None detects ``::``, then ``,`` in the first data line, else
            splits on whitespace. Fields never contain whitespace.
        keep_ids: use the integer ids as indices (``num_users = max user id + 1``, likewise
            items), so files of one dataset share an id space; ids must be integers >= 0.
            Otherwise ids are remapped to ``0..n-1``: integers in sorted order (MovieLens
            ``1..943`` becomes ``id - 1``), strings in order of first appearance.
        max_input_bytes: refuse content larger than this (after decompression).

    Raises:
        InputFormatError: a malformed line (wrong field count, bad rating or timestamp, ...).

    Example:
        >>> log = read_interactions("ml-100k/u.data.gz")  # doctest: +SKIP
        >>> log.num_users, log.num_items, log.num_interactions  # doctest: +SKIP
        (943, 1682, 100000)
    """
    check_choice("format", format, FORMATS)
    check_choice("keep_ids", keep_ids, (False, True))
    if sep is not None and (not isinstance(sep, str) or not sep or sep.isspace()):
        raise ConfigError(f"sep must be None (whitespace) or a non-blank string; got {sep!r}")
    raw = read_text_bytes(path, max_input_bytes=max_input_bytes)
    first = first_data_line(raw)
    if not first:
        raise InputFormatError(
            "contains no interaction lines (it is empty or only has comments)",
            path=str(path),
            expected="lines like 'user item rating timestamp' or 'user item item ...'",
        )
    if sep is None:
        sep = "::" if "::" in first else "," if "," in first else None
    if format == "auto":
        format = _detect(first)
    lines = scan(raw, path, sep)
    parse = {"movielens": _movielens, "lightgcn": _lightgcn, "csv": _csv}[format]
    parsed = parse(lines)
    user, user_ids = _encode(parsed.users, lines, parsed.user_line, keep_ids, "user")
    item, item_ids = _encode(parsed.items, lines, parsed.item_line, keep_ids, "item")
    if format == "lightgcn":  # one user token per line, several items
        user = user[parsed.item_line]
    return Interactions(
        user=user,
        item=item,
        rating=parsed.rating,
        timestamp=parsed.timestamp,
        user_ids=user_ids,
        item_ids=item_ids,
        path=str(path),
        format=format,
        extra_columns=parsed.extra_columns,
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _detect(first: str) -> str:
    fields = first.replace("::", "\t").replace(",", "\t").split()
    if not all(_is_number(f) for f in fields):
        return "csv"
    if "::" in first or "\t" in first or "," in first:
        return "movielens"
    return "lightgcn"


class _Parsed(NamedTuple):
    """User and item id tokens with the data line of each, plus the optional columns."""

    users: list[bytes]
    items: list[bytes]
    user_line: np.ndarray
    item_line: np.ndarray
    rating: np.ndarray | None
    timestamp: np.ndarray | None
    extra_columns: int = 0


def _movielens(lines: Lines) -> _Parsed:
    first = int(lines.counts[0])
    width = lines.check_width(
        (first,) if first >= 3 else (3,),
        "3 or more fields, as many on every line: user item rating [timestamp ...]",
    )
    toks = lines.tokens
    rating = parse_numbers(toks[2::width], lines, "rating", float32=True)
    timestamp = None
    if width >= 4:
        timestamp = parse_numbers(toks[3::width], lines, "timestamp", integer=True)
    line = np.arange(len(lines))
    return _Parsed(toks[0::width], toks[1::width], line, line, rating, timestamp,
                   max(width - 4, 0))  # fmt: skip


def _lightgcn(lines: Lines) -> _Parsed:
    first = lines.first
    is_item = np.ones(len(lines.tokens), dtype=bool)
    is_item[first] = False
    users = [lines.tokens[j] for j in first.tolist()]
    items = list(compress(lines.tokens, is_item.tolist()))
    item_line = np.repeat(np.arange(len(lines)), lines.counts - 1)
    return _Parsed(users, items, np.arange(len(lines)), item_line, None, None)


def _csv(lines: Lines) -> _Parsed:
    header = lines.fields(0)
    position: dict[str, int] = {}
    for j, name in enumerate(header):
        key = name.lower().replace("_", "")
        for role, names in _COLUMNS.items():
            if key in names:
                if role in position:
                    raise lines.error(
                        0,
                        f"columns {header[position[role]]!r} and {name!r} both name the {role}",
                        f"one {role} column",
                    )
                position[role] = j
    missing = [role for role in ("user", "item") if role not in position]
    if missing:
        raise lines.error(
            0,
            f"the header has no {' and no '.join(missing)} column",
            "a header naming user, item[, rating][, timestamp] (or user_id, item_id, ...)",
        )
    body = lines.tail(1)
    if not len(body):
        raise lines.error(0, "the header is not followed by any row", "at least one data row")
    width = len(header)
    body.check_width((width,), f"{width} fields like the header on line {int(lines.lineno[0])}")
    toks = body.tokens
    rating = timestamp = None
    if "rating" in position:
        values = parse_numbers(toks[position["rating"] :: width], body, "rating")
        rating = values.astype(np.float32)
    if "timestamp" in position:
        column = toks[position["timestamp"] :: width]
        timestamp = parse_numbers(column, body, "timestamp", integer=True)
    # Line indices refer to ``lines`` (with the header), so shift by one.
    line = np.arange(1, len(body) + 1)
    return _Parsed(
        toks[position["user"] :: width],
        toks[position["item"] :: width],
        line,
        line,
        rating,
        timestamp,
    )


def _encode(
    tokens: list[bytes], lines: Lines, line_of: np.ndarray, keep_ids: bool, role: str
) -> tuple[np.ndarray, np.ndarray]:
    values = parse_ints(tokens)
    if not keep_ids:
        return relabel_ids(tokens if values is None else values)
    if values is None:
        bad = next(j for j, t in enumerate(tokens) if parse_ints([t]) is None)
    elif len(values) and values.min() < 0:
        bad = int(np.flatnonzero(values < 0)[0])
    else:
        bad = None
    if bad is not None:
        raise lines.error(
            int(line_of[bad]),
            f"{role} id {tokens[bad].decode()!r} is not an integer >= 0",
            "integer ids >= 0 with keep_ids=True",
        )
    n = int(values.max()) + 1 if len(values) else 0
    return values, np.arange(n, dtype=np.int64)
