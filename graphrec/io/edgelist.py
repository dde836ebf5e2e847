"""Edge-list files and the :class:`EdgeList` container (a PyG ``Data`` plus the file's node ids)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import compress, cycle
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from graphrec.errors import InputFormatError
from graphrec.io._text import (
    EDGE_COLUMNS,
    Lines,
    PathLike,
    check_choice,
    first_data_line,
    is_number,
    parse_ints,
    parse_numbers,
    read_text_bytes,
    relabel_ids,
    scan,
)

POLICIES = ("keep", "drop", "error")
RELABEL = ("auto", "never", "always")
HEADER = ("auto", "yes", "no")
_HEADER_SYNONYMS = {None: "auto", True: "yes", False: "no"}
MAX_NODES = 2**31  # node indices fit in int32; pair keys fit in int64
_FIELDS = "2 or 3 fields: source target [weight]"


@dataclass(repr=False, eq=False)
class EdgeList:
    """A graph read from an edge list: PyG ``Data`` plus the original node ids.

    Attributes:
        data: ``Data`` with ``edge_index`` (int64, ``[2, num_edges]``), ``num_nodes`` and, when
            the file had a weight column, ``edge_weight`` (float32).
        node_ids: original id of node index ``i`` (int64 array, or object array of ``str``).
        directed: False when the edges were symmetrised (each pair stored in both directions).
        num_lines: edge lines read (comments, blank lines and a count line excluded).
        num_self_loops: lines with source == target.
        num_duplicates: lines repeating the pair of an earlier line (unordered when undirected).
        path: the file read, or None for in-memory graphs.
        header: what the reader took line 1 (the first data line) for when it was not an edge,
            e.g. ``"count line '9877 51971'"`` or ``"column names 'source,target'"``; None
            when every data line is an edge.

    Example:
        >>> g = EdgeList.from_edges([10, 20], [20, 30])
        >>> g.num_nodes, g.num_edges, g.index_of([30, 10]).tolist()
        (3, 2, [2, 0])
    """

    data: Data
    node_ids: np.ndarray
    directed: bool = True
    num_lines: int = 0
    num_self_loops: int = 0
    num_duplicates: int = 0
    path: str | None = None
    header: str | None = None

    @property
    def num_nodes(self) -> int:
        return int(self.data.num_nodes)

    @property
    def num_edges(self) -> int:
        """Number of directed edges in ``data`` (an undirected pair counts twice)."""
        return int(self.data.edge_index.shape[1])

    @property
    def remapped(self) -> bool:
        """True unless node index ``i`` is the original integer id ``i`` for every node."""
        ids = self.node_ids
        return ids.dtype == object or not np.array_equal(ids, np.arange(len(ids)))

    @classmethod
    def from_edges(
        cls,
        src: Any,
        dst: Any,
        *,
        node_ids: Any = None,
        edge_weight: Any = None,
        undirected: bool = False,
    ) -> EdgeList:
        """Build an edge list from parallel arrays of source and target ids.

        Args:
            src, dst: node ids (array-likes of equal length). With ``node_ids`` they are
                indices into it; otherwise they are ids, remapped like ``relabel='auto'``
                of :func:`read_edgelist`.
            node_ids: original id of each node index (fixes ``num_nodes``, so isolated
                nodes are kept).
            edge_weight: optional weight per edge.
            undirected: symmetrise (each pair in both directions, see :func:`read_edgelist`).
        """
        src, dst = np.asarray(src), np.asarray(dst)
        if src.shape != dst.shape or src.ndim != 1:
            raise ValueError(
                f"src and dst must be 1-d of equal length; got {src.shape}, {dst.shape}"
            )
        if node_ids is None:
            pairs = np.stack([src, dst], axis=1).ravel()
            index, node_ids = relabel_ids(pairs)
            row, col = index[0::2], index[1::2]
        else:
            node_ids = np.asarray(node_ids)
            row, col = src.astype(np.int64), dst.astype(np.int64)
            if len(row) and (
                min(row.min(), col.min()) < 0 or max(row.max(), col.max()) >= len(node_ids)
            ):
                raise ValueError(f"edge endpoints must be indices in [0, {len(node_ids)})")
        weight = None if edge_weight is None else np.asarray(edge_weight, dtype=np.float32)
        loops, dups = _loops_and_duplicates(row, col, len(node_ids), undirected)
        return _assemble(
            row,
            col,
            weight,
            node_ids,
            undirected=undirected,
            num_lines=len(row),
            num_self_loops=int(loops.sum()),
            num_duplicates=int(dups.sum()),
            path=None,
        )

    def index_of(self, ids: Any) -> np.ndarray:
        """Node indices of original ids (same shape as ``ids``).

        Raises:
            KeyError: an id does not occur in the graph (the message names it).
        """
        query = np.asarray(ids)
        flat = query.ravel()
        if self.node_ids.dtype != object and flat.dtype.kind in "iu":
            sorter = self._sorter
            pos = np.searchsorted(self.node_ids, flat, sorter=sorter)
            pos = np.minimum(pos, max(len(sorter) - 1, 0))
            index = sorter[pos] if len(sorter) else pos
            found = (self.node_ids[index] == flat) if len(sorter) else np.zeros(len(flat), bool)
            missing = np.flatnonzero(~found)
            if len(missing):
                self._missing(flat[missing[0]])
            return index.reshape(query.shape)
        lookup = self._lookup
        out = np.empty(len(flat), dtype=np.int64)
        for j, key in enumerate(flat.tolist()):
            if key not in lookup:
                self._missing(key)
            out[j] = lookup[key]
        return out.reshape(query.shape)

    def _missing(self, key: Any) -> None:
        where = self.path or "this graph"
        key = key.item() if isinstance(key, np.generic) else key
        raise KeyError(f"node id {key!r} does not occur in {where}")

    @cached_property
    def _sorter(self) -> np.ndarray:
        return np.argsort(self.node_ids, kind="stable")

    @cached_property
    def _lookup(self) -> dict[Any, int]:
        return {key: i for i, key in enumerate(self.node_ids.tolist())}

    def summary(self) -> str:
        """A short multi-line description: file, size, id handling, line counts, degrees."""
        n, m = self.num_nodes, self.num_edges
        row, col = self.data.edge_index.numpy()
        if self.directed:
            size = f"{m:,} directed"
        else:
            pairs = int((row < col).sum() + (row == col).sum())
            size = f"{pairs:,} undirected ({m:,} directed: both directions stored)"
        ids = "remapped to 0..n-1, see node_ids" if self.remapped else "used as indices"
        out = [
            f"EdgeList   {self.path or '<in memory>'}",
            f"  nodes    {n:,} (original ids {ids})",
            f"  edges    {size}",
            f"  lines    {self.num_lines:,} ({self.num_self_loops:,} self-loops, "
            f"{self.num_duplicates:,} repeating an earlier pair)",
        ]
        if self.path is not None:
            out.append(f"  header   {self.header or 'none (the first data line is an edge)'}")
        if n:
            degrees = (
                [("out-degree", row), ("in-degree", col)] if self.directed else [("degree", row)]
            )
            for name, ends in degrees:
                deg = np.bincount(ends, minlength=n)
                out.append(
                    f"  {name:<10} min {deg.min()}, median {np.median(deg):g}, "
                    f"mean {deg.mean():.2f}, max {deg.max()}"
                )
            isolated = n - len(np.union1d(row, col))
            out.append(f"  isolated {isolated:,} node(s)")
        weight = self.data.get("edge_weight")
        if weight is not None and m:
            out.append(f"  weights  min {weight.min().item():g}, max {weight.max().item():g}")
        return "\n".join(out)

    def __repr__(self) -> str:
        where = "" if self.path is None else f", path={self.path!r}"
        return (
            f"EdgeList(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
            f"directed={self.directed}{where})"
        )


def read_edgelist(
    path: PathLike,
    *,
    undirected: bool = False,
    self_loops: str = "keep",
    duplicates: str = "keep",
    relabel: str = "auto",
    delimiter: str | None = None,
    header: str | bool | None = "auto",
) -> EdgeList:
    """Read an edge list (``source target [weight]`` per line) into an :class:`EdgeList`.

    Format: fields separated by whitespace or by ``delimiter`` (``None`` picks ``','`` when the
    first data line contains a comma, else whitespace); with a delimiter, a field wrapped in
    double quotes loses them. A UTF-8 byte-order mark is ignored. Whole-line comments start
    with ``#`` or ``%``; blank lines are skipped; CRLF and ``.gz`` files are handled. An
    optional third column is a weight (stored as ``data.edge_weight``); every line must then
    have one.

    Header (``header``): with ``"auto"`` the first data line is a header, not an edge, when
    it is a count line ``n m`` - two integers where ``m`` is the number of edge lines that
    follow and ``n`` is their number of distinct ids, or every id lies in ``[0, n)`` (SNAP /
    influence-maximization style files, whose ids need not be ``0..n-1``) - or when it is a
    row of column names that cannot be an edge given the rest: non-integer names above
    integer ids, a non-numeric weight name above numeric weights, or well-known names such as
    ``source,target`` that occur nowhere else. After a ``%%MatrixMarket`` banner the first
    data line ``rows cols nnz`` is always the header. ``"yes"`` requires a header (a count
    line whose ``m`` matches, or column names), ``"no"`` reads line 1 as an edge; ``None``,
    True and False are accepted as ``"auto"``, ``"yes"`` and ``"no"``. What was taken is
    recorded in ``EdgeList.header`` and shown by ``summary()``.

    Node ids (``relabel``): ``"auto"`` keeps non-negative integer ids as indices when they are
    exactly ``0..max`` (or all below the ``n`` of a count line, which then sets
    ``num_nodes``); otherwise it remaps to ``0..n-1`` - integers in sorted order, strings in
    order of first appearance. A file mixing integer and other ids is rejected as a likely
    typo. ``"never"`` keeps integer ids (``num_nodes = max + 1``) and rejects others;
    ``"always"`` remaps (reading all ids as strings if any is not an integer).
    ``EdgeList.node_ids`` maps indices back.

    Self-loops and duplicate lines are always counted; ``self_loops`` / ``duplicates`` =
    ``"keep"``, ``"drop"`` or ``"error"`` (raise at the first such line). With ``undirected``,
    duplicates are unordered pairs and each pair is stored in both directions; a pair listed
    in both directions counts as a duplicate and is not doubled (with ``"keep"``, ``u v`` /
    ``v u`` lines are matched in file order, the surplus lines of either direction add
    parallel edges). Directed graphs keep file order, undirected ones are sorted by
    ``(row, col)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InputFormatError: a malformed line (names file, line, content and what was expected).
        ValueError: an unknown option value.

    Example:
        >>> g = read_edgelist("soc-douban.txt.gz")  # doctest: +SKIP
        >>> g.num_nodes, g.num_edges  # doctest: +SKIP
        (154908, 327162)
    """
    check_choice("self_loops", self_loops, POLICIES)
    check_choice("duplicates", duplicates, POLICIES)
    check_choice("relabel", relabel, RELABEL)
    header = _HEADER_SYNONYMS.get(header, header)
    check_choice("header", header, HEADER)
    sep = _check_delimiter(delimiter)
    raw = read_text_bytes(path)
    if delimiter is None and "," in first_data_line(raw):
        sep = ","
    lines = scan(raw, path, sep)
    if not len(lines):
        raise InputFormatError(
            "contains no edge lines (it is empty or only has comments)",
            path=str(path),
            expected="lines 'source target [weight]'",
        )
    found, num_nodes, parsed = _split_header(lines, header)
    row, col, node_ids = _relabel(parsed, relabel, num_nodes)
    loops, dups = _loops_and_duplicates(row, col, len(node_ids), undirected)
    keep = np.ones(len(row), dtype=bool)
    for policy, mask, what in ((self_loops, loops, "self_loops"), (duplicates, dups, "duplicates")):
        if policy == "drop":
            keep &= ~mask
        elif policy == "error" and mask.any():
            _raise_policy(parsed, what, int(np.flatnonzero(mask)[0]), row, col, undirected)
    weight = None if parsed.weight is None else parsed.weight[keep]
    return _assemble(
        row[keep],
        col[keep],
        weight,
        node_ids,
        undirected=undirected,
        num_lines=len(row),
        num_self_loops=int(loops.sum()),
        num_duplicates=int(dups.sum()),
        path=str(path),
        header=found,
    )


def _check_delimiter(delimiter: str | None) -> str | None:
    if delimiter is None or delimiter in (" ", "\t"):
        return None
    if (
        not isinstance(delimiter, str)
        or len(delimiter) != 1
        or not delimiter.isascii()
        or delimiter.isalnum()
        or delimiter in "#%-.+\r\n"
    ):
        raise ValueError(
            f"delimiter must be None (auto), ' ', '\\t' or one ASCII punctuation character "
            f"such as ',' or ';'; got {delimiter!r}"
        )
    return delimiter


@dataclass
class _Parsed:
    """Edge lines of a file: ids as int64 (or None when some id is not an integer)."""

    lines: Lines
    tokens: list[bytes]  # src0, dst0, src1, dst1, ...
    ints: np.ndarray | None
    weight: np.ndarray | None


def _parse_edges(lines: Lines) -> _Parsed:
    if not len(lines):
        return _Parsed(lines, [], np.zeros(0, dtype=np.int64), None)
    width = lines.check_width((2, 3), _FIELDS)
    tokens = lines.tokens
    weight = None
    if width == 3:
        weight = parse_numbers(tokens[2::3], lines, "weight")
        tokens = list(compress(tokens, cycle((True, True, False))))
    return _Parsed(lines, tokens, parse_ints(tokens), weight)


def _split_header(lines: Lines, header: str) -> tuple[str | None, int | None, _Parsed]:
    """Decide whether data line 0 is a header (see :func:`read_edgelist`).

    Returns the header's description (None when line 0 is an edge), the node count of a
    count line (or None) and the edge lines.
    """
    banner = lines.raw.lstrip()[:14].lower() == b"%%matrixmarket"
    if header == "no":
        return None, None, _parse_edges(lines)
    try:
        rest = _parse_edges(lines.tail(1))
    except InputFormatError:
        rest = None
    first = lines.fields(0)
    shown = " ".join(first)
    m = len(lines) - 1
    values = parse_ints(lines.tokens[: len(first)])
    if banner or (values is not None and len(first) == 2):
        valid = (
            values is not None
            and len(values) == (3 if banner else 2)
            and bool((values >= 0).all())
            and values[:-1].max() < MAX_NODES
            and values[-1] == m
            and rest is not None
        )
        if valid and (banner or _count_matches(rest, int(values[0]), header == "yes")):
            kind = "MatrixMarket size line" if banner else "count line"
            return f"{kind} {shown!r} (line {int(lines.lineno[0])})", int(values[:-1].max()), rest
        if banner or header == "yes":
            shape = (
                "'rows cols nnz' with nnz"
                if banner
                else "'num_nodes num_edges' with num_nodes >= the distinct ids and num_edges"
            )
            raise lines.error(
                0,
                "is not a valid count line",
                f"{shape} = the number of edge lines that follow ({m})",
            )
    elif rest is not None and _column_names(first, rest, header == "yes"):
        names = ",".join(first)
        return f"column names {names!r} (line {int(lines.lineno[0])})", None, rest
    elif header == "yes":
        raise lines.error(
            0,
            "is not a header",
            "a count line 'num_nodes num_edges' or column names such as 'source,target' "
            "above lines of the same width",
        )
    return None, None, _parse_edges(lines)


def _count_matches(rest: _Parsed, n: int, forced: bool) -> bool:
    """``n`` counts the distinct ids of ``rest`` (at least, when ``forced``) or bounds them.

    With ``header="auto"`` a count line needs at least one edge line after it.
    """
    ids = rest.ints
    if not len(rest.tokens):
        return forced
    if ids is not None and ids.min() >= 0 and ids.max() < n:
        return True
    distinct = len(np.unique(ids if ids is not None else np.array(rest.tokens)))
    return distinct <= n if forced else distinct == n


def _column_names(first: list[str], rest: _Parsed, forced: bool) -> bool:
    """Whether ``first`` is a row of column names above the edge lines ``rest``.

    Every name must be non-numeric (any one, when ``forced``) and the row as wide as the
    edge lines; then integer ids or a weight column below it make it a header, and with
    string ids so do well-known names (``source``, ``target``, ...) that are not ids.
    """
    width = 2 if rest.weight is None else 3
    if len(first) != width or not len(rest.tokens):
        return False
    numeric = [is_number(f) for f in first]
    if forced or any(numeric):
        return forced and not all(numeric)
    if rest.ints is not None or width == 3:
        return True
    ids = [t.encode() for t in first[:2]]
    known = all(f.lower() in EDGE_COLUMNS for f in first)
    return known and not np.isin(ids, np.array(rest.tokens)).any()


def _relabel(
    parsed: _Parsed, mode: str, count_nodes: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Node indices of each edge's endpoints and the original id of every index."""
    ids = parsed.ints
    lines = parsed.lines
    if ids is None:
        if mode == "never":
            j = next(j for j, t in enumerate(parsed.tokens) if parse_ints([t]) is None)
            raise lines.error(
                j // 2,
                f"node id {parsed.tokens[j].decode()!r} is not an integer",
                "integer ids >= 0 with relabel='never' (relabel='auto' maps other ids)",
            )
        if mode == "auto":
            _check_one_kind(parsed)
        index, node_ids = relabel_ids(parsed.tokens)
        return index[0::2], index[1::2], node_ids
    if not len(ids):
        return ids, ids, np.arange(count_nodes or 0, dtype=np.int64)
    lo, hi = int(ids.min()), int(ids.max())
    if mode == "never" and (lo < 0 or hi >= MAX_NODES):
        j = int(np.flatnonzero((ids < 0) | (ids >= MAX_NODES))[0])
        problem = "is negative" if ids[j] < 0 else f"exceeds {MAX_NODES:,} (too many nodes)"
        raise lines.error(
            j // 2,
            f"node id {int(ids[j])} {problem}",
            "integer ids >= 0 with relabel='never' (relabel='auto' maps other ids)",
        )
    keep = mode == "never" or (
        mode == "auto"
        and lo >= 0
        and (
            (count_nodes is not None and hi < count_nodes)
            or (hi < len(ids) and bool(np.bincount(ids, minlength=hi + 1).all()))
        )
    )
    if keep:
        n = max(hi + 1, count_nodes or 0)
        return ids[0::2], ids[1::2], np.arange(n, dtype=np.int64)
    index, node_ids = relabel_ids(ids)
    return index[0::2], index[1::2], node_ids


def _check_one_kind(parsed: _Parsed) -> None:
    """Reject files mixing integer and other ids (likely a typo) at the first odd id."""
    tokens = np.array(parsed.tokens)
    negative = np.char.startswith(tokens, b"-")
    is_int = np.char.isdigit(np.where(negative, np.char.replace(tokens, b"-", b"", 1), tokens))
    odd = np.flatnonzero(is_int != is_int[0])
    if is_int.any() and len(odd):
        j = int(odd[0])
        kinds = ("is not an integer", "integer") if is_int[0] else ("is an integer", "string")
        raise parsed.lines.error(
            j // 2,
            f"node id {parsed.tokens[j].decode()!r} {kinds[0]} but line "
            f"{int(parsed.lines.lineno[0])} has {kinds[1]} ids",
            "ids of one kind (relabel='always' reads every id as a string)",
        )


def _pair_keys(row: np.ndarray, col: np.ndarray, n: int, undirected: bool) -> np.ndarray:
    """One int64 per (ordered or unordered) pair; ``2 * key + 1`` fits as ``n <= MAX_NODES``."""
    a, b = (np.minimum(row, col), np.maximum(row, col)) if undirected else (row, col)
    return a * n + b


def _loops_and_duplicates(
    row: np.ndarray, col: np.ndarray, n: int, undirected: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of self-loop lines and of lines repeating an earlier pair."""
    dups = np.ones(len(row), dtype=bool)
    _, first = np.unique(_pair_keys(row, col, n, undirected), return_index=True)
    dups[first] = False
    return row == col, dups


def _raise_policy(
    parsed: _Parsed, what: str, i: int, row: np.ndarray, col: np.ndarray, undirected: bool
) -> None:
    lines = parsed.lines
    if what == "self_loops":
        raise lines.error(
            i, "is a self-loop (source == target)", "no self-loops with self_loops='error'"
        )
    keys = _pair_keys(row[: i + 1], col[: i + 1], int(max(row.max(), col.max())) + 1, undirected)
    earlier = int(np.flatnonzero(keys[:i] == keys[i])[0])
    pair = "unordered pair" if undirected else "edge"
    raise lines.error(
        i,
        f"repeats the {pair} of line {int(lines.lineno[earlier])}",
        "no duplicate lines with duplicates='error'",
    )


def _unmirrored(row: np.ndarray, col: np.ndarray, n: int) -> np.ndarray:
    """Mask dropping each line ``v u`` that mirrors an earlier, not yet matched line ``u v``.

    Within an unordered pair, the j-th forward line (``u < v``) is matched with the j-th
    reverse line; of each matched two the later one is dropped.
    """
    m = len(row)
    pos = np.arange(m)
    rev = row > col
    key = _pair_keys(row, col, n, True)
    order = np.argsort(key * 2 + rev, kind="stable")
    skey, srev = key[order], rev[order]
    new_key = np.ones(m, dtype=bool)
    new_key[1:] = skey[1:] != skey[:-1]
    new_run = new_key.copy()
    new_run[1:] |= srev[1:] != srev[:-1]
    key_start = np.maximum.accumulate(np.where(new_key, pos, 0))
    run_start = np.maximum.accumulate(np.where(new_run, pos, 0))
    rank = pos - run_start
    matched = srev & (rank < run_start - key_start)
    partner = key_start[matched] + rank[matched]
    keep = np.ones(m, dtype=bool)
    keep[np.maximum(order[matched], order[partner])] = False
    return keep


def _assemble(
    row: np.ndarray,
    col: np.ndarray,
    weight: np.ndarray | None,
    node_ids: np.ndarray,
    *,
    undirected: bool,
    num_lines: int,
    num_self_loops: int,
    num_duplicates: int,
    path: str | None,
    header: str | None = None,
) -> EdgeList:
    n = len(node_ids)
    if undirected:
        if num_duplicates:
            keep = _unmirrored(row, col, n)
            row, col = row[keep], col[keep]
            weight = None if weight is None else weight[keep]
        other = row != col
        row, col = np.concatenate([row, col[other]]), np.concatenate([col, row[other]])
        order = np.argsort(_pair_keys(row, col, n, False), kind="stable")
        row, col = row[order], col[order]
        if weight is not None:
            weight = np.concatenate([weight, weight[other]])[order]
    data = Data(
        edge_index=torch.from_numpy(np.stack([row, col]).astype(np.int64, copy=False)),
        num_nodes=n,
    )
    if weight is not None:
        data.edge_weight = torch.from_numpy(weight.astype(np.float32))
    return EdgeList(
        data=data,
        node_ids=node_ids,
        directed=not undirected,
        num_lines=num_lines,
        num_self_loops=num_self_loops,
        num_duplicates=num_duplicates,
        path=path,
        header=header,
    )
