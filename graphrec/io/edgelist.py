"""Edge-list files and the :class:`EdgeList` container (a PyG ``Data`` plus the file's node ids)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data
from tqdm import tqdm

from graphrec.errors import ConfigError, InputFormatError
from graphrec.io._text import (
    DEFAULT_MAX_INPUT_BYTES,
    EDGE_COLUMNS,
    ChunkLines,
    PathLike,
    check_choice,
    first_data_line,
    gather_strings,
    is_number,
    iter_line_chunks,
    line_at,
    line_text,
    parse_int_ranges,
    relabel_ids,
    tokenize,
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
        notes: remarks on the ids worth a look, e.g. negative integer ids (kept as labels)
            or integers outside int64 (which make every id a string).

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
    notes: list[str] = field(default_factory=list)

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
            raise ConfigError(
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
                raise ConfigError(f"edge endpoints must be indices in [0, {len(node_ids)})")
        weight = None if edge_weight is None else np.asarray(edge_weight, dtype=np.float32)
        loops, dups = _loops_and_duplicates(row, col, len(node_ids), undirected)
        return _assemble(
            np.stack([row, col]),
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
        out += [f"  note     {note}" for note in self.notes]
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
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    progress: bool = False,
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

    Integer ids are ``-?[0-9]+`` (``1_000``, ``+5`` or ``1.0`` are strings); negative ids
    are labels like any other and noted in ``EdgeList.notes``, as are integers outside int64
    (which make every id a string). Weights must be finite and within float32's range.

    Input: the file is read in chunks (8 MiB of text at a time, gzip undone on the fly) into
    compact arrays, so memory peaks at about 2-2.5 times the returned arrays. Refused, each with a
    one-line :class:`~graphrec.errors.InputFormatError` naming the path: a path that is not
    a readable regular file (directory, FIFO, device, symbolic-link loop; checked before
    opening), content beyond ``max_input_bytes`` after decompression (default 8 GiB), gzip
    data expanding more than 100-fold (a gzip bomb), a line longer than 1 MiB, NUL bytes and
    invalid UTF-8 (named by line, never replaced). ``progress`` shows a tqdm bar (stderr) over
    the bytes read (after decompression).

    Self-loops and duplicate lines are always counted; ``self_loops`` / ``duplicates`` =
    ``"keep"``, ``"drop"`` or ``"error"`` (raise at the first such line). With ``undirected``,
    duplicates are unordered pairs and each pair is stored in both directions; a pair listed
    in both directions counts as a duplicate and is not doubled (with ``"keep"``, ``u v`` /
    ``v u`` lines are matched in file order, the surplus lines of either direction add
    parallel edges). Directed graphs keep file order, undirected ones are sorted by
    ``(row, col)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        InputFormatError: a malformed line (names file, line, content and what was expected),
            or an input refused as above.
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
    if (
        isinstance(max_input_bytes, bool)
        or not isinstance(max_input_bytes, int)
        or (max_input_bytes < 1)
    ):
        raise ConfigError(f"max_input_bytes must be an integer >= 1; got {max_input_bytes!r}")
    sep = _check_delimiter(delimiter)
    source = _Source(str(path), sep, delimiter is None, max_input_bytes, progress)
    f = source.read(strings=False)
    if f.abort is not None:
        if relabel == "never":
            raise f.abort
        f = source.read(strings=True)
    found, num_nodes = _split_header(f, header)
    first = f.first
    if found is None:
        f.check_first_edge()
        if f.status is None and (first.status[:2] != 0).any():
            if relabel == "never":
                j = int(np.flatnonzero(first.status[:2])[0])
                raise f.first_error(_not_int(first.fields[j], int(first.status[j])), _NEVER)
            f = source.read(strings=True)
        f.put_first_edge()
    lines = _LineIndex(f.where, found is None)
    cut = 0 if found is None else 1
    weight = None if f.weight is None else f.weight[cut:]
    notes: list[str] = []
    if f.status is None or not f.status[:, cut:].any():
        pairs = np.ascontiguousarray(f.ints[:, cut:])
        del f
        pairs, node_ids = _relabel_ints(pairs, relabel, num_nodes, lines)
        if relabel != "never" and node_ids.size and node_ids[0] < 0:
            negative = int(np.searchsorted(node_ids, 0))
            notes.append(f"{negative:,} negative integer id(s), e.g. {int(node_ids[0])}: labels")
    else:
        strs, status = f.strs[:, cut:], f.status[:, cut:]
        del f
        _check_strings(strs, status, relabel, lines)
        pairs, node_ids = _relabel_strings(strs)
        huge = int((status == 2).sum())
        if huge:
            notes.append(f"{huge:,} integer id(s) outside int64: every id read as a string")
    return _finish(
        pairs,
        weight,
        node_ids,
        lines,
        undirected=undirected,
        self_loops=self_loops,
        duplicates=duplicates,
        path=str(path),
        header=found,
        notes=notes,
    )


def _check_delimiter(delimiter: str | None) -> str | None:
    if delimiter is None or delimiter in (" ", "\t"):
        return None
    if (
        not isinstance(delimiter, str)
        or len(delimiter) != 1
        or not delimiter.isascii()
        or delimiter.isalnum()
        or delimiter in '#%-.+"\r\n'
    ):
        raise ConfigError(
            f"delimiter must be None (auto), ' ', '\\t' or one ASCII punctuation character "
            f"such as ',' or ';'; got {delimiter!r}"
        )
    return delimiter


_NEVER = "integer ids >= 0 with relabel='never' (relabel='auto' maps other ids)"


def _not_int(token: str, status: int) -> str:
    what = "does not fit in int64" if status == 2 else "is not an integer"
    return f"node id {token!r} {what}"


@dataclass
class _First:
    """The first data line: its fields, line number and text, and its fields as integers."""

    fields: list[str]
    lineno: int
    text: str
    values: np.ndarray
    status: np.ndarray


@dataclass
class _Lines:
    """Line numbers of consecutive data lines, stored by the gaps (comments, blank lines)."""

    base: int  # line of data line 0
    after: np.ndarray  # data lines that follow a gap ...
    skipped: np.ndarray  # ... and the lines skipped before each, accumulated

    @classmethod
    def of(cls, lineno: np.ndarray) -> _Lines:
        extra = np.diff(lineno) - 1
        where = np.flatnonzero(extra)
        return cls(int(lineno[0]), where + 1, np.cumsum(extra[where]))

    def line(self, k: int) -> int:
        """The line number of data line ``k``."""
        j = int(np.searchsorted(self.after, k, side="right"))
        return self.base + k + (int(self.skipped[j - 1]) if j else 0)


@dataclass
class _Where:
    """Where a file's edge lines are, for line numbers and line texts in error messages."""

    path: str
    max_input_bytes: int
    first: _First
    starts: np.ndarray  # the first edge line (after line 1) of each chunk
    linemap: list[_Lines]  # the line numbers of each chunk's edge lines

    def line(self, i: int) -> int:
        """The line number of edge line ``i`` after line 1."""
        c = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.linemap[c].line(i - int(self.starts[c]))

    def error_at(self, lineno: int, problem: str, expected: str | None = None) -> InputFormatError:
        """An error at line ``lineno`` (read again from the file for its text)."""
        if lineno == self.first.lineno:
            content = self.first.text
        else:
            content = line_at(self.path, lineno, self.max_input_bytes)
        return InputFormatError(
            problem, path=self.path, line=lineno, content=content, expected=expected
        )


@dataclass
class _File:
    """The data lines of an edge-list file: line 1 apart, then the m edge lines after it.

    ``ints`` (and in string mode ``strs`` and ``status``) have shape ``[2, m + 1]``: column 0
    is reserved for line 1 (filled by :meth:`put_first_edge` when it is an edge), column
    ``i + 1`` holds edge line ``i`` after it. ``status`` is that of
    :func:`~graphrec.io._text.parse_int_ranges` (None in integer mode, where every id is an
    int64). ``abort``: in integer mode, the error for the first id that is not an int64 (the
    file must then be read in string mode).
    """

    where: _Where
    banner: bool
    width: int
    ints: np.ndarray
    strs: np.ndarray | None = None
    status: np.ndarray | None = None
    weight: np.ndarray | None = None
    abort: InputFormatError | None = None

    @property
    def first(self) -> _First:
        return self.where.first

    @property
    def m(self) -> int:
        return self.ints.shape[1] - 1

    def first_error(self, problem: str, expected: str | None = None) -> InputFormatError:
        return self.where.error_at(self.first.lineno, problem, expected)

    def _first_weight_error(self, _: int, problem: str, expected: str) -> InputFormatError:
        return self.first_error(problem, expected)

    def check_first_edge(self) -> None:
        """Line 1 is an edge: it must be as wide as the lines after it."""
        width = len(self.first.fields)
        if self.m and width != self.width:
            raise self.where.error_at(
                self.where.line(0),
                f"has {self.width} fields but line {self.first.lineno} has {width}",
                "the same number of fields on every line",
            )

    def put_first_edge(self) -> None:
        """Fill column 0 with line 1."""
        first = self.first
        self.ints[:, 0] = first.values[:2]
        if self.strs is not None:
            self.strs[:, 0] = [f.encode() for f in first.fields[:2]]
            self.status[:, 0] = first.status[:2]
        if self.weight is not None:
            self.weight[0] = _weights_of([first.fields[2].encode()], self._first_weight_error)[0]


class _LineIndex:
    """Line numbers of the edges in file order, line 1 included when it is an edge."""

    def __init__(self, where: _Where, first_is_edge: bool) -> None:
        self.where = where
        self.shift = 0 if first_is_edge else 1

    def line(self, i: int) -> int:
        j = i + self.shift
        return self.where.first.lineno if j == 0 else self.where.line(j - 1)

    def error(self, i: int, problem: str, expected: str | None = None) -> InputFormatError:
        return self.where.error_at(self.line(i), problem, expected)


class _Source:
    """Reads an edge-list file chunk by chunk into compact arrays."""

    def __init__(
        self, path: str, sep: str | None, auto_sep: bool, max_input_bytes: int, progress: bool
    ) -> None:
        self.path, self.sep, self.auto_sep = path, sep, auto_sep
        self.max_input_bytes, self.progress = max_input_bytes, progress

    def read(self, *, strings: bool) -> _File:
        """Parse the file; with ``strings``, keep every id as bytes and its status too."""
        parts: list[tuple[np.ndarray, ...]] = []
        weights: list[np.ndarray] = []
        starts: list[int] = []
        linemap: list[_Lines] = []
        first: _First | None = None
        banner = False
        width = ref_line = 0
        m = 0
        sep = self.sep
        decided = not self.auto_sep
        chunks = iter_line_chunks(self.path, max_input_bytes=self.max_input_bytes)
        for data, lineno in _counted(chunks, self.progress):
            if lineno == 1:
                banner = data.lstrip()[:14].lower() == b"%%matrixmarket"
            if not decided:
                line = first_data_line(data)
                if not line:
                    continue
                sep, decided = ("," if "," in line else None), True
            chunk = tokenize(data, self.path, lineno, sep)
            if first is None and len(chunk):
                first = _first_line(chunk)
                chunk = chunk.tail(1)
            if not len(chunk):
                continue
            if not width:
                width = int(chunk.counts[0])
                if width not in (2, 3):
                    raise chunk.error(0, f"has {width} field(s)", _FIELDS)
                ref_line = first.lineno if len(first.fields) == width else int(chunk.lineno[0])
            _check_width(chunk, width, ref_line)
            part = _ids_of(chunk, width, strings)
            if isinstance(part, InputFormatError):
                return self._empty(first, banner, part)
            parts.append(part)
            if width == 3:
                w_start, w_end = chunk.start[2::3], chunk.end[2::3]
                tokens = gather_strings(chunk.bytes, w_start, w_end)
                weights.append(_weights_of(tokens, chunk.error))
            starts.append(m)
            linemap.append(_Lines.of(chunk.lineno))
            m += len(chunk)
        if first is None:
            raise InputFormatError(
                "contains no edge lines (it is empty or only has comments)",
                path=self.path,
                expected="lines 'source target [weight]'",
            )
        return self._collect(first, banner, width, parts, weights, starts, linemap, m, strings)

    def _empty(self, first: _First, banner: bool, abort: InputFormatError) -> _File:
        where = _Where(self.path, self.max_input_bytes, first, np.zeros(0, np.int64), [])
        return _File(where, banner, 0, np.zeros((2, 1), dtype=np.int64), abort=abort)

    def _collect(
        self,
        first: _First,
        banner: bool,
        width: int,
        parts: list[tuple[np.ndarray, ...]],
        weights: list[np.ndarray],
        starts: list[int],
        linemap: list[_Lines],
        m: int,
        strings: bool,
    ) -> _File:
        """One ``[2, m + 1]`` array per kind, freeing the chunks' arrays as they are copied."""
        ints = np.empty((2, m + 1), dtype=np.int64)
        ints[:, 0] = 0
        strs = status = None
        if strings:
            names = np.array([f.encode() for f in first.fields[:2]])
            kinds = [names.dtype] + [p[2].dtype for p in parts]
            strs = np.empty((2, m + 1), dtype=np.result_type(*kinds))
            status = np.empty((2, m + 1), dtype=np.int8)
            status[:, 0] = 0
        weight = None
        if width == 3 or (not m and len(first.fields) == 3):
            weight = np.empty(m + 1, dtype=np.float32)
            weight[1:] = np.concatenate(weights) if weights else []
            weights.clear()
        parts.reverse()
        pos = 1
        while parts:
            part = parts.pop()
            k = part[0].shape[1]
            ints[:, pos : pos + k] = part[0]
            if strings:
                status[:, pos : pos + k] = part[1]
                strs[:, pos : pos + k] = part[2]
            pos += k
            del part
        where = _Where(
            self.path, self.max_input_bytes, first, np.array(starts, dtype=np.int64), linemap
        )
        return _File(where, banner, width or len(first.fields), ints, strs, status, weight)


def _counted(chunks: Iterator[tuple[bytes, int]], progress: bool) -> Iterator[tuple[bytes, int]]:
    """``chunks`` as they are, with a tqdm bar over their bytes when ``progress``."""
    with tqdm(desc="reading", unit="B", unit_scale=True, leave=False, disable=not progress) as bar:
        for data, lineno in chunks:
            bar.update(len(data))
            yield data, lineno


def _first_line(chunk: ChunkLines) -> _First:
    fields = chunk.fields(0)
    if len(fields) not in (2, 3):
        raise chunk.error(0, f"has {len(fields)} field(s)", _FIELDS)
    k = len(fields)
    values, status = parse_int_ranges(chunk.bytes, chunk.start[:k], chunk.end[:k])
    lineno = int(chunk.lineno[0])
    text = line_text(chunk.data, lineno - chunk.first_line + 1)
    return _First(fields, lineno, text, values, status)


def _check_width(chunk: ChunkLines, width: int, ref_line: int) -> None:
    bad = np.flatnonzero(chunk.counts != width)
    if len(bad):
        i = int(bad[0])
        n = int(chunk.counts[i])
        if n not in (2, 3):
            raise chunk.error(i, f"has {n} field(s)", _FIELDS)
        raise chunk.error(
            i,
            f"has {n} fields but line {ref_line} has {width}",
            "the same number of fields on every line",
        )


def _ids_of(
    chunk: ChunkLines, width: int, strings: bool
) -> tuple[np.ndarray, ...] | InputFormatError:
    """The ``[2, k]`` ids of a chunk's edge lines (with status and bytes when ``strings``).

    In integer mode, the error for the first id that is not an int64 is returned instead.
    """
    b = chunk.bytes
    start = np.stack([chunk.start[0::width], chunk.start[1::width]]).reshape(-1)
    end = np.stack([chunk.end[0::width], chunk.end[1::width]]).reshape(-1)
    values, status = parse_int_ranges(b, start, end)
    values, status = values.reshape(2, -1), status.reshape(2, -1)
    if strings:
        return values, status, gather_strings(b, start, end).reshape(2, -1)
    bad = status.any(axis=0)
    if bad.any():
        i = int(np.argmax(bad))
        r = 0 if status[0, i] else 1
        token = chunk.token(i * width + r)
        return chunk.error(i, _not_int(token, int(status[r, i])), _NEVER)
    if len(values) and -(2**31) <= values.min() and values.max() < 2**31:
        values = values.astype(np.int32)  # half the memory until the chunks are joined
    return (values,)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _weights_of(tokens: np.ndarray | list[bytes], error: Callable[..., Exception]) -> np.ndarray:
    """Weight tokens (token ``i`` on data line ``i``) as float32; ``error(i, ...)`` on a bad one.

    A weight is a finite decimal number within float32's range (no ``_`` digit separators).
    """
    tokens = np.asarray(tokens)
    try:
        values = tokens.astype(np.float64)
    except ValueError:
        values = None
    if values is not None:
        bad = ~(np.abs(values) <= _FLOAT32_MAX)
        if tokens.dtype.kind == "S":
            bad |= np.char.find(tokens, b"_") >= 0
        if not bad.any():
            return values.astype(np.float32)
    for i, token in enumerate(tokens.tolist()):
        text = token.decode("utf-8")
        if not is_number(text) or not math.isfinite(float(text)):
            problem = f"weight {text!r} is not a finite number"
            raise error(i, problem, "weight as a finite number")
        if abs(float(text)) > _FLOAT32_MAX:
            raise error(
                i,
                f"weight {text!r} overflows float32",
                f"weights within float32's range (|w| <= {_FLOAT32_MAX:.4g})",
            )
    return np.array([float(t) for t in tokens.tolist()], dtype=np.float32)


def _split_header(f: _File, header: str) -> tuple[str | None, int | None]:
    """Whether line 1 is a header (see :func:`read_edgelist`).

    Returns its description and, for a count line, its node count; ``(None, None)`` when
    line 1 is an edge.
    """
    first = f.first
    if header == "no":
        return None, None
    m = f.m
    integers = not first.status.any()
    where = f"(line {first.lineno})"
    if f.banner or (integers and len(first.fields) == 2):
        values = first.values
        valid = (
            integers
            and len(values) == (3 if f.banner else 2)
            and bool((values >= 0).all())
            and values[:-1].max() < MAX_NODES
            and values[-1] == m
        )
        shown = " ".join(first.fields)
        if valid and (f.banner or _count_matches(f, int(values[0]), header == "yes")):
            kind = "MatrixMarket size line" if f.banner else "count line"
            return f"{kind} {shown!r} {where}", int(values[:-1].max())
        if f.banner or header == "yes":
            shape = (
                "'rows cols nnz' with nnz"
                if f.banner
                else "'num_nodes num_edges' with num_nodes >= the distinct ids and num_edges"
            )
            raise f.first_error(
                "is not a valid count line", f"{shape} = the number of edge lines that follow ({m})"
            )
    elif _column_names(f, header == "yes"):
        return f"column names {','.join(first.fields)!r} {where}", None
    elif header == "yes":
        raise f.first_error(
            "is not a header",
            "a count line 'num_nodes num_edges' or column names such as 'source,target' "
            "above lines of the same width",
        )
    return None, None


def _rest_is_int(f: _File) -> bool:
    return f.status is None or not f.status[:, 1:].any()


def _count_matches(f: _File, n: int, forced: bool) -> bool:
    """``n`` counts the distinct ids after line 1 (at least, when ``forced``) or bounds them.

    With ``header="auto"`` a count line needs at least one edge line after it.
    """
    if not f.m:
        return forced
    if _rest_is_int(f):
        ids = f.ints[:, 1:]
        lo, hi = int(ids.min()), int(ids.max())
        if lo >= 0 and hi < n:
            return True
        distinct = _distinct(ids, lo, hi)
    else:
        distinct = len(np.unique(f.strs[:, 1:]))
    return distinct <= n if forced else distinct == n


def _distinct(ids: np.ndarray, lo: int, hi: int) -> int:
    """The number of distinct integers in ``ids`` (min ``lo``, max ``hi``)."""
    if lo >= 0 and hi < 4 * ids.size + 2**20:
        present = np.zeros(hi + 1, dtype=bool)
        present[ids] = True
        return int(np.count_nonzero(present))
    return len(np.unique(ids))


def _column_names(f: _File, forced: bool) -> bool:
    """Whether line 1 is a row of column names above the edge lines.

    Every name must be non-numeric (any one, when ``forced``) and the row as wide as the
    edge lines; then integer ids or a weight column below it make it a header, and with
    string ids so do well-known names (``source``, ``target``, ...) that are not ids.
    """
    fields = f.first.fields
    if not f.m or len(fields) != f.width:
        return False
    numeric = [is_number(x) for x in fields]
    if forced or any(numeric):
        return forced and not all(numeric)
    if f.width == 3 or _rest_is_int(f):
        return True
    known = all(x.lower() in EDGE_COLUMNS for x in fields)
    names = np.array([x.encode() for x in fields[:2]])
    return known and not np.isin(names, f.strs[:, 1:]).any()


def _check_strings(strs: np.ndarray, status: np.ndarray, mode: str, lines: _LineIndex) -> None:
    """Ids that are not all int64: refused with ``never``, of one kind with ``auto``."""
    if mode == "never":
        i = int(np.argmax(status.any(axis=0)))
        r = 0 if status[0, i] else 1
        raise lines.error(i, _not_int(strs[r, i].decode(), int(status[r, i])), _NEVER)
    if mode == "auto":
        kinds = status != 1  # integer-like, int64 or not
        odd = kinds != kinds[0, 0]
        if odd.any():
            i = int(np.argmax(odd.any(axis=0)))
            r = 0 if odd[0, i] else 1
            found, other = (
                ("is not an integer", "integer") if kinds[0, 0] else ("is an integer", "string")
            )
            raise lines.error(
                i,
                f"node id {strs[r, i].decode()!r} {found} but line {lines.line(0)} has {other} ids",
                "ids of one kind (relabel='always' reads every id as a string)",
            )


def _relabel_ints(
    ids: np.ndarray, mode: str, count_nodes: int | None, lines: _LineIndex
) -> tuple[np.ndarray, np.ndarray]:
    """Node indices ``[2, m]`` (``ids`` itself, possibly overwritten) and the original ids."""
    if not ids.size:
        return ids, np.arange(count_nodes or 0, dtype=np.int64)
    lo, hi = int(ids.min()), int(ids.max())
    if mode == "never" and (lo < 0 or hi >= MAX_NODES):
        bad = (ids < 0) | (ids >= MAX_NODES)
        i = int(np.argmax(bad.any(axis=0)))
        value = int(ids[0, i] if bad[0, i] else ids[1, i])
        problem = "is negative" if value < 0 else f"exceeds {MAX_NODES:,} (too many nodes)"
        raise lines.error(i, f"node id {value} {problem}", _NEVER)
    if mode == "never":
        return ids, np.arange(max(hi + 1, count_nodes or 0), dtype=np.int64)
    if mode == "auto" and lo >= 0:
        if count_nodes is not None and hi < count_nodes:
            return ids, np.arange(count_nodes, dtype=np.int64)
        if hi < ids.size and _distinct(ids, lo, hi) == hi + 1:
            return ids, np.arange(hi + 1, dtype=np.int64)
    if lo >= 0 and hi < 4 * ids.size + 2**20:
        present = np.zeros(hi + 1, dtype=bool)
        present[ids] = True
        node_ids = np.flatnonzero(present)
        table = np.cumsum(present, dtype=np.int64) - 1
        del present
    else:
        node_ids = np.unique(ids)
        table = None
    flat = ids.reshape(-1)
    for begin in range(0, flat.size, 2**20):  # in place, a block at a time
        block = flat[begin : begin + 2**20]
        block[:] = table[block] if table is not None else np.searchsorted(node_ids, block)
    return ids, node_ids.astype(np.int64)


def _relabel_strings(strs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Node indices ``[2, m]`` for string ids, numbered in order of first appearance."""
    flat = strs.T.reshape(-1)  # file order: src0, dst0, src1, ...
    uniq, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    index = np.ascontiguousarray(rank[inverse.reshape(-1)].reshape(-1, 2).T)
    node_ids = np.empty(len(uniq), dtype=object)
    node_ids[:] = [u.decode("utf-8") for u in uniq[order].tolist()]
    return index, node_ids


def _count_duplicates(row: np.ndarray, col: np.ndarray, n: int) -> int:
    """The number of lines repeating the (ordered) pair of an earlier line."""
    if not len(row):
        return 0
    keys = _pair_keys(row, col, n, False)
    if not np.all(keys[1:] >= keys[:-1]):  # files sorted by source and target skip the sort
        keys.sort()
    return len(keys) - 1 - int(np.count_nonzero(keys[1:] != keys[:-1]))


def _finish(
    pairs: np.ndarray,
    weight: np.ndarray | None,
    node_ids: np.ndarray,
    lines: _LineIndex,
    *,
    undirected: bool,
    self_loops: str,
    duplicates: str,
    path: str,
    header: str | None,
    notes: list[str],
) -> EdgeList:
    """Count and apply the self-loop and duplicate policies, then assemble."""
    row, col = pairs
    n = len(node_ids)
    loops = row == col
    num_loops = int(np.count_nonzero(loops))
    if duplicates == "keep" and not undirected:
        dups, num_dups = None, _count_duplicates(row, col, n)
    else:
        dups = _loops_and_duplicates(row, col, n, undirected)[1]
        num_dups = int(np.count_nonzero(dups))
    keep = None
    for policy, mask, what in ((self_loops, loops, "self_loops"), (duplicates, dups, "duplicates")):
        if policy == "drop" and mask.any():
            keep = ~mask if keep is None else keep & ~mask
        elif policy == "error" and mask.any():
            _raise_policy(lines, what, int(np.argmax(mask)), row, col, undirected)
    del loops, dups
    num_lines = pairs.shape[1]
    if keep is not None:
        pairs = pairs[:, keep]
        weight = None if weight is None else weight[keep]
    return _assemble(
        pairs,
        weight,
        node_ids,
        undirected=undirected,
        num_lines=num_lines,
        num_self_loops=num_loops,
        num_duplicates=num_dups,
        path=path,
        header=header,
        notes=notes,
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
    lines: _LineIndex, what: str, i: int, row: np.ndarray, col: np.ndarray, undirected: bool
) -> None:
    if what == "self_loops":
        raise lines.error(
            i, "is a self-loop (source == target)", "no self-loops with self_loops='error'"
        )
    keys = _pair_keys(row[: i + 1], col[: i + 1], int(max(row.max(), col.max())) + 1, undirected)
    earlier = int(np.flatnonzero(keys[:i] == keys[i])[0])
    pair = "unordered pair" if undirected else "edge"
    raise lines.error(
        i,
        f"repeats the {pair} of line {lines.line(earlier)}",
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
    pairs: np.ndarray,
    weight: np.ndarray | None,
    node_ids: np.ndarray,
    *,
    undirected: bool,
    num_lines: int,
    num_self_loops: int,
    num_duplicates: int,
    path: str | None,
    header: str | None = None,
    notes: list[str] | None = None,
) -> EdgeList:
    n = len(node_ids)
    if undirected:
        row, col = pairs
        if num_duplicates:
            keep = _unmirrored(row, col, n)
            row, col = row[keep], col[keep]
            weight = None if weight is None else weight[keep]
        other = row != col
        row, col = np.concatenate([row, col[other]]), np.concatenate([col, row[other]])
        order = np.argsort(_pair_keys(row, col, n, False), kind="stable")
        pairs = np.stack([row[order], col[order]])
        if weight is not None:
            weight = np.concatenate([weight, weight[other]])[order]
    edge_index = np.ascontiguousarray(pairs, dtype=np.int64)
    data = Data(edge_index=torch.from_numpy(edge_index), num_nodes=n)
    if weight is not None:
        data.edge_weight = torch.from_numpy(weight.astype(np.float32, copy=False))
    return EdgeList(
        data=data,
        node_ids=node_ids,
        directed=not undirected,
        num_lines=num_lines,
        num_self_loops=num_self_loops,
        num_duplicates=num_duplicates,
        path=path,
        header=header,
        notes=notes or [],
    )
