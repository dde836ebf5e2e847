"""CTR tables (one impression per row: label, categorical, numeric and sequence features)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from graphrec.errors import ConfigError, InputFormatError
from graphrec.io._text import PathLike, line_text, read_text_bytes

Vocab = dict[str, dict[str, int]]


@dataclass
class CTRSchema:
    """Which column of a CTR table plays which role.

    Attributes:
        label: the 0/1 click column.
        categorical: columns encoded to int64 codes (0 = missing or out of vocabulary).
        numeric: columns parsed to float32 (empty = NaN).
        sequence: column -> element separator, e.g. ``{"click_sequence": "^"}``; encoded to
            padded int64 codes (0 = padding) plus lengths.
        shared_vocab: column -> categorical column whose vocabulary it uses, e.g.
            ``{"click_sequence": "adgroup_id"}`` (the ids clicked before are ad groups).
        drop: columns to ignore. Every column of the file must have exactly one role.

    Example:
        >>> CTRSchema("clk", categorical=["adgroup_id"], sequence={"click_sequence": "^"},
        ...           shared_vocab={"click_sequence": "adgroup_id"}).vocab_owner("click_sequence")
        'adgroup_id'
    """

    label: str
    categorical: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    sequence: dict[str, str] = field(default_factory=dict)
    shared_vocab: dict[str, str] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label:
            raise ConfigError(f"label must be a column name; got {self.label!r}")
        for role in ("categorical", "numeric", "drop"):
            names = getattr(self, role)
            if isinstance(names, str) or not all(isinstance(c, str) and c for c in names):
                raise ConfigError(f"{role} must be a list of column names; got {names!r}")
            setattr(self, role, list(names))
        for name in ("sequence", "shared_vocab"):
            mapping = getattr(self, name)
            if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and k and v for k, v in mapping.items()
            ):
                raise ConfigError(f"{name} must map column names to strings; got {mapping!r}")
        seen: dict[str, str] = {}
        roles = [
            ("label", [self.label]),
            ("categorical", self.categorical),
            ("numeric", self.numeric),
            ("sequence", list(self.sequence)),
            ("drop", self.drop),
        ]
        for role, names in roles:
            for column in names:
                if column in seen:
                    raise ConfigError(
                        f"column {column!r} is declared as both {seen[column]} and {role}"
                    )
                seen[column] = role
        for column, owner in self.shared_vocab.items():
            if seen.get(column) not in ("categorical", "sequence"):
                raise ConfigError(
                    f"shared_vocab key {column!r} must be a categorical or sequence column"
                )
            if seen.get(owner) != "categorical" or owner in self.shared_vocab:
                raise ConfigError(
                    f"shared_vocab[{column!r}] = {owner!r} must be a categorical column "
                    "that has its own vocabulary"
                )

    @property
    def columns(self) -> list[str]:
        """Every declared column (label first)."""
        return [self.label, *self.categorical, *self.numeric, *self.sequence, *self.drop]

    def vocab_owner(self, column: str) -> str:
        """The column whose vocabulary encodes ``column``."""
        return self.shared_vocab.get(column, column)


@dataclass(repr=False, eq=False)
class CTRTable:
    """An encoded CTR table; every array has ``num_rows`` rows.

    Attributes:
        labels: float32 0/1.
        categorical: column -> int64 codes (0 = missing / out of vocabulary).
        numeric: column -> float32 (NaN = missing).
        sequence: column -> int64 codes ``[num_rows, max_len]``, 0-padded on the right.
        sequence_lengths: column -> int64 number of elements per row.
        vocab: owner column -> {value: code >= 1}; pass it to the next table to reuse it.
        schema: the :class:`CTRSchema` used.
        path: the file read.
    """

    labels: np.ndarray
    categorical: dict[str, np.ndarray]
    numeric: dict[str, np.ndarray]
    sequence: dict[str, np.ndarray]
    sequence_lengths: dict[str, np.ndarray]
    vocab: Vocab
    schema: CTRSchema
    path: str | None = None

    @property
    def num_rows(self) -> int:
        return len(self.labels)

    def vocab_size(self, column: str) -> int:
        """Number of codes of a categorical or sequence column, including 0 (embedding size)."""
        return len(self.vocab[self.schema.vocab_owner(column)]) + 1

    def take(self, rows: np.ndarray) -> CTRTable:
        """The table of ``rows`` (indices), same vocabulary and schema."""
        rows = np.asarray(rows, dtype=np.int64)
        return CTRTable(
            labels=self.labels[rows],
            categorical={c: v[rows] for c, v in self.categorical.items()},
            numeric={c: v[rows] for c, v in self.numeric.items()},
            sequence={c: v[rows] for c, v in self.sequence.items()},
            sequence_lengths={c: v[rows] for c, v in self.sequence_lengths.items()},
            vocab=self.vocab,
            schema=self.schema,
            path=self.path,
        )

    def summary(self) -> str:
        """A short multi-line description: rows, click rate and one line per feature."""
        rate = float(self.labels.mean()) if self.num_rows else 0.0
        out = [
            f"CTRTable  {self.path or '<in memory>'}",
            f"  rows    {self.num_rows:,} (label {self.schema.label!r}, click rate {rate:.4f})",
        ]
        for name, codes in self.categorical.items():
            oov = float((codes == 0).mean()) if self.num_rows else 0.0
            out.append(
                f"  categorical {name:<22} vocab {self.vocab_size(name):>8,}  missing/OOV {oov:.1%}"
            )
        for name, values in self.numeric.items():
            missing = float(np.isnan(values).mean()) if self.num_rows else 0.0
            finite = values[~np.isnan(values)]
            span = f"{finite.min():g} .. {finite.max():g}" if len(finite) else "all missing"
            out.append(f"  numeric     {name:<22} {span}  missing {missing:.1%}")
        for name, codes in self.sequence.items():
            lengths = self.sequence_lengths[name]
            mean = float(lengths.mean()) if self.num_rows else 0.0
            out.append(
                f"  sequence    {name:<22} vocab {self.vocab_size(name):>8,}  "
                f"max length {codes.shape[1]}, mean {mean:.2f}"
            )
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"CTRTable(num_rows={self.num_rows}, path={self.path!r})"


def read_ctr_table(
    path: PathLike,
    schema: CTRSchema,
    *,
    sep: str = ",",
    header: bool = True,
    columns: Sequence[str] | None = None,
    vocab: Vocab | None = None,
    min_count: int = 1,
) -> CTRTable:
    """Read and encode a CTR table (CSV/TSV, ``.gz`` allowed) according to ``schema``.

    Categorical values (and sequence elements) get codes ``1..`` in order of first appearance
    in this file; a column in ``schema.shared_vocab`` uses its owner's codes, built from the
    owner's values first, then from the columns sharing it. Values seen fewer than
    ``min_count`` times get 0, like missing values. Pass ``vocab=train.vocab`` to encode a
    test table with the training codes (unseen values -> 0). Fields are stripped of
    surrounding whitespace.

    Args:
        path: the file.
        schema: roles of the columns; every column of the file must be declared.
        sep: field separator (one character).
        header: whether the first row names the columns.
        columns: column names of a file without header (required with ``header=False``).
        vocab: vocabularies to reuse instead of building new ones.
        min_count: minimum count of a value to get its own code (when building).

    Raises:
        InputFormatError: a missing or undeclared column, a row with the wrong field count,
            a label other than 0/1, a non-numeric numeric value, an empty sequence element.

    Example:
        >>> schema = CTRSchema("label", numeric=[f"I{i}" for i in range(1, 14)],
        ...                    categorical=[f"C{i}" for i in range(1, 27)])
        >>> table = read_ctr_table("criteo_sample.txt", schema)  # doctest: +SKIP
    """
    if not isinstance(schema, CTRSchema):
        raise TypeError(f"schema must be a CTRSchema; got {type(schema).__name__}")
    if not isinstance(sep, str) or len(sep) != 1 or sep in '\r\n"':
        raise ConfigError(f"sep must be one character other than a quote or newline; got {sep!r}")
    if not isinstance(min_count, int) or min_count < 1:
        raise ConfigError(f"min_count must be an integer >= 1; got {min_count!r}")
    if not header and columns is None:
        raise ConfigError("header=False needs the column names: pass columns=[...]")
    encoded = [*schema.categorical, *schema.sequence]
    if vocab is not None:
        for column in encoded:
            if schema.vocab_owner(column) not in vocab:
                raise ConfigError(
                    f"vocab has no entry {schema.vocab_owner(column)!r} (for column {column!r});"
                    f" it has: {', '.join(vocab)}"
                )
    raw = read_text_bytes(path)
    reader = _Rows(raw, str(path), sep)
    names = reader.header() if header else list(columns)
    _check_columns(reader, names, schema, header)
    reader.width = len(names)
    used = [schema.label, *schema.numeric, *encoded]
    values = dict(zip(used, reader.body([names.index(c) for c in used])))
    labels = _labels(values[schema.label], reader)
    numeric = {c: _numeric(values[c], reader, c) for c in schema.numeric}
    split = {c: _split(values[c], schema.sequence[c], reader, c) for c in schema.sequence}
    return encode_ctr_table(
        labels, values, numeric, split, schema, vocab=vocab, min_count=min_count, path=str(path)
    )


def encode_ctr_table(
    labels: np.ndarray,
    values: dict[str, list[str]],
    numeric: dict[str, np.ndarray],
    sequences: dict[str, list[list[str]]],
    schema: CTRSchema,
    *,
    vocab: Vocab | None = None,
    min_count: int = 1,
    path: str | None = None,
) -> CTRTable:
    """A :class:`CTRTable` from raw values, encoded as :func:`read_ctr_table` encodes a file.

    Args:
        labels: float32 0/1 per row.
        values: categorical column -> its raw values (strings) per row.
        numeric: numeric column -> float32 per row.
        sequences: sequence column -> its raw elements per row.
        schema: the roles of the columns.
        vocab: vocabularies to reuse (unseen values -> 0); default: built from these values
            in order of first appearance.
        min_count: minimum count of a value to get its own code (when building).
        path: where the values came from (for messages).
    """
    vocab = _build_vocab(values, sequences, schema, min_count) if vocab is None else vocab
    categorical = {c: _codes(values[c], vocab[schema.vocab_owner(c)]) for c in schema.categorical}
    sequence, lengths = {}, {}
    for column, elements in sequences.items():
        sequence[column], lengths[column] = _pad(elements, vocab[schema.vocab_owner(column)])
    return CTRTable(labels, categorical, numeric, sequence, lengths, vocab, schema, path)


class _Rows:
    """csv rows of a file with their line numbers, raising InputFormatError on bad input."""

    def __init__(self, raw: bytes, path: str, sep: str) -> None:
        self.raw, self.path = raw, path
        text = io.StringIO(raw.decode("utf-8"), newline="")
        self.reader = csv.reader(text, delimiter=sep, strict=True)
        self.header_line = 0
        self.width = 0
        self.lines: list[int] = []

    def error(self, line: int, problem: str, expected: str | None = None) -> InputFormatError:
        return InputFormatError(
            problem, path=self.path, line=line, content=line_text(self.raw, line), expected=expected
        )

    def _next(self) -> list[str] | None:
        try:
            for row in self.reader:
                if len(row) > 1 or (row and row[0].strip()):
                    return [f.strip() for f in row]
        except csv.Error as exc:
            raise self.error(self.reader.line_num, f"is not valid CSV ({exc})", "CSV") from None
        return None

    def header(self) -> list[str]:
        row = self._next()
        if row is None:
            raise InputFormatError(
                "is empty", path=self.path, expected="a header row naming the columns"
            )
        self.header_line = self.reader.line_num
        return row

    def body(self, keep: list[int]) -> list[list[str]]:
        """The fields at positions ``keep`` of every remaining row, column by column."""
        out: list[list[str]] = [[] for _ in keep]
        while (row := self._next()) is not None:
            line = self.reader.line_num
            if len(row) != self.width:
                like = (
                    f"like the header on line {self.header_line}"
                    if self.header_line
                    else "(one per name in columns)"
                )
                raise self.error(line, f"has {len(row)} fields", f"{self.width} fields {like}")
            self.lines.append(line)
            for values, j in zip(out, keep):
                values.append(row[j])
        if not self.lines:
            raise InputFormatError(
                "has no data rows", path=self.path, expected="at least one row after the header"
            )
        return out


def _check_columns(reader: _Rows, names: list[str], schema: CTRSchema, header: bool) -> None:
    problem = None
    duplicated = sorted({c for c in names if names.count(c) > 1})
    missing = [c for c in schema.columns if c not in names]
    extra = [c for c in names if c not in schema.columns]
    if duplicated:
        problem = f"column name(s) {', '.join(map(repr, duplicated))} appear more than once"
    elif missing:
        problem = f"missing column(s) {', '.join(map(repr, missing))}"
    elif extra:
        problem = f"column(s) {', '.join(map(repr, extra))} are not in the schema (add to drop?)"
    if problem is None:
        return
    expected = f"the schema's columns; the file has: {', '.join(names)}"
    if header:
        raise reader.error(reader.header_line, problem, expected)
    raise ConfigError(f"{problem}; expected {expected}")


def _labels(values: list[str], reader: _Rows) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float32)
    for i, value in enumerate(values):
        if value in ("0", "1"):
            out[i] = value == "1"
            continue
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if number not in (0.0, 1.0):
            raise reader.error(reader.lines[i], f"label {value!r} is not 0 or 1", "a 0/1 label")
        out[i] = number
    return out


def _numeric(values: list[str], reader: _Rows, column: str) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float32)
    limit = float(np.finfo(np.float32).max)
    for i, value in enumerate(values):
        try:
            number = float(value) if value else np.nan
        except ValueError:
            number = None
        if number is None or abs(number) > limit:  # not a number, inf, or beyond float32
            problem = "is not a number" if number is None else "is not a finite float32"
            raise reader.error(
                reader.lines[i],
                f"column {column!r}: {value!r} {problem}",
                f"a number with |x| <= {limit:.4g} or an empty field (missing)",
            )
        out[i] = number
    return out


def _split(values: list[str], sep: str, reader: _Rows, column: str) -> list[list[str]]:
    out = []
    for i, value in enumerate(values):
        elements = [e.strip() for e in value.split(sep)] if value else []
        if "" in elements:
            raise reader.error(
                reader.lines[i],
                f"column {column!r}: sequence {value!r} has an empty element",
                f"elements separated by single {sep!r}",
            )
        out.append(elements)
    return out


def _build_vocab(
    values: dict[str, list[str]],
    split: dict[str, list[list[str]]],
    schema: CTRSchema,
    min_count: int,
) -> Vocab:
    counts: dict[str, Counter[str]] = {}
    for column in schema.categorical:
        counts.setdefault(schema.vocab_owner(column), Counter()).update(values[column])
    for column, rows in split.items():
        counter = counts.setdefault(schema.vocab_owner(column), Counter())
        for elements in rows:
            counter.update(elements)
    vocab: Vocab = {}
    for owner, counter in counts.items():
        counter.pop("", None)
        kept = (value for value, count in counter.items() if count >= min_count)
        vocab[owner] = {value: code for code, value in enumerate(kept, start=1)}
    return vocab


def _codes(values: list[str], vocab: dict[str, int]) -> np.ndarray:
    return np.fromiter((vocab.get(v, 0) for v in values), dtype=np.int64, count=len(values))


def _pad(rows: list[list[str]], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max()) if len(rows) else 0
    padded = np.zeros((len(rows), width), dtype=np.int64)
    flat = [vocab.get(e, 0) for r in rows for e in r]
    padded[np.arange(width) < lengths[:, None]] = flat
    return padded, lengths
