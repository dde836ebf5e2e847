"""Low-level text input shared by the readers: guarded file access, validation, tokenizers.

Files are read through :func:`iter_line_chunks`: regular files only, gzip undone in bounded
blocks, whole lines validated as UTF-8 a chunk at a time. :func:`tokenize` and
:func:`parse_int_ranges` find fields, line numbers and integer values with numpy on a
chunk's raw bytes, so a reader holds compact arrays rather than Python objects per field and
still points at the exact line of the first problem when the file is malformed.
"""

from __future__ import annotations

import errno
import gzip
import os
import stat
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import BinaryIO

import numpy as np

from graphrec.errors import ConfigError, InputFormatError

PathLike = str | os.PathLike

_BOM = b"\xef\xbb\xbf"
# Bytes that ``bytes.split()`` treats as whitespace: \t \n \v \f \r and space.
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 32]] = True
_COMMENT = (ord("#"), ord("%"))
# Column names that mark a first line as the header row of an edge list.
EDGE_COLUMNS = frozenset(
    "source target src dst from to head tail node1 node2 id1 id2 sender receiver weight "
    "source_id target_id".split()
)


def check_choice(name: str, value: object, allowed: Sequence[object]) -> None:
    """Raise ``ValueError`` naming the argument and its allowed values unless ``value`` is one."""
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{name} must be one of {options}; got {value!r}")


def is_number(text: str) -> bool:
    """Whether ``text`` is a decimal number as data files write them (no ``_`` separators)."""
    if "_" in text:
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def line_text(raw: bytes, lineno: int) -> str:
    """Line ``lineno`` (1-based) of ``raw``, decoded for an error message."""
    lines = raw.split(b"\n", lineno)
    line = lines[lineno - 1] if lineno <= len(lines) else b""
    return line.rstrip(b"\r").decode("utf-8", "backslashreplace")


DEFAULT_MAX_INPUT_BYTES = 8 * 2**30
MAX_LINE_BYTES = 2**20
CHUNK_BYTES = 8 * 2**20  # read_edgelist peaks at about 2-2.5x its output (BENCHMARKS.md)
# Ordinary edge lists and logs compress 3-10x; deflate's limit is about 1032x.
MAX_GZIP_RATIO = 100
_RATIO_FROM_BYTES = 16 * 2**20
_FILE_KINDS = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISFIFO, "is a named pipe (FIFO), which could block forever"),
    (stat.S_ISCHR, "is a character device (such as /dev/zero), which may never end"),
    (stat.S_ISBLK, "is a block device"),
    (stat.S_ISSOCK, "is a socket"),
)


def _error_at(raw: bytes, path: str, pos: int, problem: str, expected: str) -> InputFormatError:
    lineno = raw.count(b"\n", 0, pos) + 1
    return InputFormatError(
        problem, path=path, line=lineno, content=line_text(raw, lineno), expected=expected
    )


def check_input_file(path: PathLike) -> os.stat_result:
    """Refuse, before opening it, a ``path`` that is not a readable regular file.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        InputFormatError: a directory, FIFO, device or socket, a symbolic-link loop, or a file
            the user may not read.
    """
    expected = "a readable regular file"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        problem = "is a symbolic link loop" if exc.errno == errno.ELOOP else exc.strerror
        raise InputFormatError(f"{problem}", path=path, expected=expected) from None
    for test, problem in _FILE_KINDS:
        if test(info.st_mode):
            raise InputFormatError(problem, path=path, expected=expected)
    if not stat.S_ISREG(info.st_mode):
        raise InputFormatError("is not a regular file", path=path, expected=expected)
    if not os.access(path, os.R_OK):
        raise InputFormatError("permission denied", path=path, expected=expected)
    return info


def _too_large(path: PathLike, max_input_bytes: int, what: str) -> InputFormatError:
    return InputFormatError(
        f"{what} more than max_input_bytes = {max_input_bytes:,} bytes",
        path=path,
        expected="a smaller input, or a larger max_input_bytes (--max-input-bytes)",
    )


def iter_blocks(
    path: PathLike, *, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES, size: int | None = None
) -> Iterator[bytes]:
    """The content of ``path`` in blocks of at most ``size`` bytes, gzip undone.

    Memory stays bounded by ``size`` (default ``CHUNK_BYTES``) whatever the input. Raises
    :class:`InputFormatError` for a file that is not a regular file (see
    :func:`check_input_file`), content beyond ``max_input_bytes`` (after decompression), gzip
    data that decompresses more than ``MAX_GZIP_RATIO`` times its size (a gzip bomb),
    corrupt gzip data and a ``.gz`` name on plain data.
    """
    info = check_input_file(path)
    size = size or CHUNK_BYTES
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputFormatError(
            f"cannot be opened ({exc.strerror})", path=path, expected="a readable regular file"
        ) from None
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the check
            raise InputFormatError("is not a regular file", path=path, expected="a regular file")
        magic = fh.read(2)
        fh.seek(0)
        if magic != b"\x1f\x8b":
            if Path(path).suffix.lower() == ".gz":
                raw = fh.read(MAX_LINE_BYTES)
                raise _error_at(
                    raw,
                    str(path),
                    0,
                    "the name ends in .gz but the content is not gzip-compressed",
                    "gzip data (starting with bytes 1f 8b), or a name without .gz",
                )
            if info.st_size > max_input_bytes:
                raise _too_large(path, max_input_bytes, f"has {info.st_size:,} bytes,")
            while block := fh.read(size):
                yield block
            return
        yield from _gunzip_blocks(path, fh, max_input_bytes, size)


def _gunzip_blocks(
    path: PathLike, fh: BinaryIO, max_input_bytes: int, size: int
) -> Iterator[bytes]:
    total = 0
    with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
        while True:
            try:
                block = gz.read(size)
            except (OSError, EOFError, zlib.error) as exc:
                raise InputFormatError(
                    f"gzip data is corrupt or truncated ({exc})",
                    path=path,
                    expected="a complete gzip file",
                ) from None
            if not block:
                return
            total += len(block)
            if total > max_input_bytes:
                raise _too_large(path, max_input_bytes, "decompresses to")
            if total > _RATIO_FROM_BYTES and total > MAX_GZIP_RATIO * fh.tell():
                raise InputFormatError(
                    f"gzip data decompresses to more than {MAX_GZIP_RATIO} times its size "
                    f"({total:,} bytes from the first {fh.tell():,}): a gzip bomb?",
                    path=path,
                    expected="ordinary gzip data (decompress the file yourself to read it)",
                )
            yield block


def iter_line_chunks(
    path: PathLike, *, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES, size: int | None = None
) -> Iterator[tuple[bytes, int]]:
    """Complete lines of ``path`` as validated UTF-8, about ``size`` bytes at a time.

    Yields ``(data, lineno)``: ``data`` holds whole lines (a BOM at the start of the file is
    removed) and its first line is line ``lineno`` (1-based) of the file. Besides the errors
    of :func:`iter_blocks`, raises :class:`InputFormatError` naming the line for a NUL byte,
    invalid UTF-8 and a line longer than ``MAX_LINE_BYTES``.
    """
    carry = b""
    lineno = 1
    first = True
    for block in iter_blocks(path, max_input_bytes=max_input_bytes, size=size):
        buf = carry + block if carry else block
        if first and len(buf) < len(_BOM) and _BOM.startswith(buf):
            carry = buf
            continue
        if first:
            buf = buf[len(_BOM) :] if buf.startswith(_BOM) else buf
            first = False
        nul = buf.find(b"\x00")
        if nul >= 0:  # before any UTF-8 error: the better diagnosis of a binary file
            raise _shift(
                _error_at(
                    buf,
                    str(path),
                    nul,
                    "contains a NUL byte: binary data, or UTF-16 text",
                    "UTF-8 text",
                ),
                lineno,
            )
        cut = buf.rfind(b"\n") + 1
        data, carry = buf[:cut], buf[cut:]
        if len(carry) > MAX_LINE_BYTES:
            raise _long_line(carry, path, lineno + data.count(b"\n"))
        if data:
            _validate(data, path, lineno)
            yield data, lineno
            lineno += data.count(b"\n")
    if carry:
        _validate(carry, path, lineno)
        yield carry, lineno


def _long_line(raw: bytes, path: PathLike, lineno: int) -> InputFormatError:
    return InputFormatError(
        f"is longer than {MAX_LINE_BYTES:,} bytes",
        path=path,
        line=lineno,
        content=raw[:100].decode("utf-8", "backslashreplace"),
        expected="lines of text (is this a binary file, or one without line breaks?)",
    )


def _validate(data: bytes, path: PathLike, lineno: int) -> None:
    """Invalid UTF-8 and overlong lines in ``data`` (whole lines from line ``lineno``)."""
    name = str(path)
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            err = _error_at(
                data,
                name,
                exc.start,
                f"byte 0x{data[exc.start]:02x} at column {column} is not valid UTF-8",
                "UTF-8 text",
            )
            raise _shift(err, lineno) from None
    if len(data) > MAX_LINE_BYTES:
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        lengths = np.diff(ends, prepend=-1)
        if len(lengths) and lengths.max() > MAX_LINE_BYTES + 1:
            i = int(np.argmax(lengths))
            start = int(ends[i] - lengths[i] + 1)
            raise _long_line(data[start : start + 100], path, lineno + i)


def _shift(err: InputFormatError, lineno: int) -> InputFormatError:
    """``err`` (at a line of a chunk) with the line number of the file."""
    return InputFormatError(
        err.problem,
        path=err.path,
        line=None if err.line is None else err.line + lineno - 1,
        content=err.content,
        expected=err.expected,
    )


def read_text_bytes(path: PathLike, *, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> bytes:
    """The content of ``path`` as validated UTF-8 bytes (gzip is undone, a BOM removed).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        InputFormatError: not a regular file, too large, corrupt gzip data, a ``.gz`` name on
            plain data, binary content or invalid UTF-8 (see :func:`iter_line_chunks`).
    """
    return b"".join(data for data, _ in iter_line_chunks(path, max_input_bytes=max_input_bytes))


def line_at(path: PathLike, lineno: int, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> str:
    """Line ``lineno`` (1-based) of ``path``, read again, decoded for an error message."""
    for data, first in iter_line_chunks(path, max_input_bytes=max_input_bytes):
        count = data.count(b"\n") + (not data.endswith(b"\n"))
        if lineno < first + count:
            return line_text(data, lineno - first + 1)
    return ""


def first_data_line(raw: bytes) -> str:
    """The first line that is neither blank nor a comment, stripped ('' if there is none)."""
    start = 0
    while start < len(raw):
        end = raw.find(b"\n", start)
        end = len(raw) if end < 0 else end
        line = raw[start:end].strip()
        if line and line[0] not in _COMMENT:
            return line.decode("utf-8")
        start = end + 1
    return ""


@dataclass
class Lines:
    """The data lines of a text file, split into fields.

    Data line ``i`` is line ``lineno[i]`` of the file and has the fields
    ``tokens[first[i] : first[i] + counts[i]]``. Blank lines and comment lines (first field
    starting with ``#`` or ``%``) are not data lines.
    """

    raw: bytes
    path: str
    tokens: list[bytes]
    counts: np.ndarray
    lineno: np.ndarray

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def first(self) -> np.ndarray:
        starts = np.zeros(len(self.counts), dtype=np.int64)
        np.cumsum(self.counts[:-1], out=starts[1:])
        return starts

    def tail(self, start: int) -> Lines:
        """The data lines from data line ``start`` on."""
        skip = int(self.counts[:start].sum())
        return Lines(
            self.raw, self.path, self.tokens[skip:], self.counts[start:], self.lineno[start:]
        )

    def fields(self, i: int) -> list[str]:
        """The fields of data line ``i``, decoded."""
        begin = int(self.counts[:i].sum())
        return [t.decode("utf-8") for t in self.tokens[begin : begin + int(self.counts[i])]]

    def error(self, i: int, problem: str, expected: str | None = None) -> InputFormatError:
        """An :class:`InputFormatError` pointing at data line ``i``."""
        lineno = int(self.lineno[i])
        return InputFormatError(
            problem,
            path=self.path,
            line=lineno,
            content=line_text(self.raw, lineno),
            expected=expected,
        )

    def check_width(self, allowed: Sequence[int], expected: str) -> int:
        """The common field count of all lines; raises at the first line that differs."""
        width = int(self.counts[0])
        if width not in allowed:
            raise self.error(0, f"has {width} field(s)", expected)
        bad = np.flatnonzero(self.counts != width)
        if len(bad):
            i = int(bad[0])
            n = int(self.counts[i])
            if n not in allowed:
                raise self.error(i, f"has {n} field(s)", expected)
            raise self.error(
                i,
                f"has {n} fields but line {int(self.lineno[0])} has {width}",
                "the same number of fields on every line",
            )
        return width


def scan(raw: bytes, path: PathLike, sep: str | None = None) -> Lines:
    """Split ``raw`` into data lines and fields.

    Args:
        raw: validated UTF-8 bytes (see :func:`read_text_bytes`).
        path: file name used in error messages.
        sep: ``None`` splits on runs of whitespace; otherwise fields are separated by ``sep``
            (surrounding whitespace and one pair of enclosing double quotes are stripped).
            Empty fields and whitespace inside a field are errors in that case.
    """
    path = str(path)
    work = raw
    if sep is not None:
        code = sep.encode("utf-8")
        if len(code) > 1:
            # A multi-byte separator such as '::' becomes one byte that never occurs in text.
            work = raw.replace(code, b"\x1f")
            code = b"\x1f"
    b = np.frombuffer(work, dtype=np.uint8)
    is_sep = _WHITESPACE[b]
    if sep is not None:
        is_sep |= b == code[0]
    prev = np.empty_like(is_sep)
    prev[:1] = True
    prev[1:] = is_sep[:-1]
    starts = np.flatnonzero(~is_sep & prev)
    newlines = np.flatnonzero(b == 10)
    tok_line = np.searchsorted(newlines, starts)
    tokens = (work if sep is None else work.replace(code, b" ")).split()
    if sep is not None and b'"' in raw:
        tokens = [t[1:-1] if len(t) > 1 and t[0] == t[-1] == 34 else t for t in tokens]
    is_first = np.empty(len(starts), dtype=bool)
    is_first[:1] = True
    is_first[1:] = tok_line[1:] != tok_line[:-1]
    first = np.flatnonzero(is_first)
    counts = np.diff(np.append(first, len(starts)))
    line_idx = tok_line[first]
    comment = np.isin(b[starts[first]], _COMMENT)
    if sep is not None:
        _check_separators(raw, path, sep, b == code[0], newlines, line_idx, counts, comment)
    if comment.any():
        tokens = list(compress(tokens, np.repeat(~comment, counts).tolist()))
        counts, line_idx = counts[~comment], line_idx[~comment]
    return Lines(raw, path, tokens, counts, line_idx + 1)


def _check_separators(
    raw: bytes,
    path: str,
    sep: str,
    is_sep: np.ndarray,
    newlines: np.ndarray,
    line_idx: np.ndarray,
    counts: np.ndarray,
    comment: np.ndarray,
) -> None:
    """Every data line with k fields must contain exactly k - 1 separators."""
    num_lines = len(newlines) + 1
    num_sep = np.bincount(np.searchsorted(newlines, np.flatnonzero(is_sep)), minlength=num_lines)
    num_tok = np.zeros(num_lines, dtype=np.int64)
    num_tok[line_idx] = counts
    skip = np.zeros(num_lines, dtype=bool)
    skip[line_idx[comment]] = True
    bad = np.flatnonzero((num_sep != num_tok - 1) & ~skip & ((num_tok > 0) | (num_sep > 0)))
    if not len(bad):
        return
    lineno = int(bad[0]) + 1
    text = line_text(raw, lineno)
    fields = text.split(sep)
    problem = "has an empty field"
    for j, field in enumerate(fields, start=1):
        if not field.strip():
            problem = f"field {j} is empty"
            break
        if len(field.split()) > 1:
            problem = f"field {j} ({field.strip()!r}) contains whitespace"
            break
    raise InputFormatError(
        problem, path=path, line=lineno, content=text, expected=f"fields separated by {sep!r}"
    )


def parse_ints(tokens: list[bytes]) -> np.ndarray | None:
    """``tokens`` as int64 if every one is a plain decimal integer (``-?[0-9]+``), else None."""
    if b"".join(tokens).translate(None, b"0123456789-"):
        return None
    try:
        return np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        return None


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def parse_numbers(
    tokens: list[bytes], lines: Lines, what: str, *, integer: bool = False, float32: bool = False
) -> np.ndarray:
    """Parse ``tokens`` (token ``j`` on data line ``j``) as finite floats or as int64; with
    ``float32`` as float32, refusing values beyond its range (they would become ``inf``).

    Raises :class:`InputFormatError` at the first token that is not a valid number.
    """
    parse = parse_ints if integer else _parse_floats
    values = parse(tokens)
    if values is not None and float32:
        big = np.flatnonzero(np.abs(values) > _FLOAT32_MAX)
        if len(big):
            j = int(big[0])
            raise lines.error(
                j,
                f"{what} {tokens[j].decode('utf-8')!r} overflows float32",
                f"{what} within float32's range (|x| <= {_FLOAT32_MAX:.4g})",
            )
        return values.astype(np.float32)
    if values is not None:
        return values
    kind = "an integer" if integer else "a finite number"
    j = next(j for j, token in enumerate(tokens) if parse([token]) is None)
    text = tokens[j].decode("utf-8")
    raise lines.error(j, f"{what} {text!r} is not {kind}", f"{what} as {kind}")


def _parse_floats(tokens: list[bytes]) -> np.ndarray | None:
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        return None
    return values if np.isfinite(values).all() else None


def relabel_ids(ids: np.ndarray | list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Indices 0..n-1 for ``ids`` and the id of each index.

    Integer ids are numbered in sorted order (so ``0..max`` maps to itself), other ids
    (``bytes`` tokens are decoded to ``str``) in order of first appearance.
    """
    if isinstance(ids, list):
        ids = np.array([t.decode("utf-8") for t in ids])
    if ids.dtype.kind in "iu":
        uniq, inverse = np.unique(ids, return_inverse=True)
        return inverse.reshape(-1).astype(np.int64), uniq.astype(np.int64)
    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    return rank[inverse.reshape(-1)], uniq[order].astype(object)


@dataclass
class ChunkLines:
    """The data lines of a chunk of whole lines of a file (see :func:`tokenize`).

    ``data`` starts at line ``first_line`` of the file. Data line ``i`` is line ``lineno[i]``
    and its fields are the bytes ``data[start[j]:end[j]]``, ``j`` in
    ``first[i] : first[i] + counts[i]``. Blank and comment lines are not data lines.
    """

    data: bytes
    path: str
    first_line: int
    start: np.ndarray
    end: np.ndarray
    counts: np.ndarray
    lineno: np.ndarray

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def bytes(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.uint8)

    def token(self, j: int) -> str:
        """Field ``j`` (counting all fields of the chunk), decoded."""
        return self.data[int(self.start[j]) : int(self.end[j])].decode("utf-8")

    def fields(self, i: int) -> list[str]:
        """The fields of data line ``i``, decoded."""
        begin = int(self.counts[:i].sum())
        return [self.token(j) for j in range(begin, begin + int(self.counts[i]))]

    def tail(self, start: int) -> ChunkLines:
        """The data lines from data line ``start`` on."""
        skip = int(self.counts[:start].sum())
        return ChunkLines(
            self.data,
            self.path,
            self.first_line,
            self.start[skip:],
            self.end[skip:],
            self.counts[start:],
            self.lineno[start:],
        )

    def error(self, i: int, problem: str, expected: str | None = None) -> InputFormatError:
        """An :class:`InputFormatError` pointing at data line ``i``."""
        lineno = int(self.lineno[i])
        content = line_text(self.data, lineno - self.first_line + 1)
        return InputFormatError(
            problem, path=self.path, line=lineno, content=content, expected=expected
        )


def tokenize(data: bytes, path: PathLike, first_line: int, sep: str | None) -> ChunkLines:
    """Split whole lines ``data`` (line ``first_line`` on) into data lines and field ranges.

    ``sep=None`` splits on runs of whitespace; a one-character ``sep`` separates fields
    (surrounding whitespace is stripped, one pair of enclosing double quotes removed; an empty
    field, whitespace or a double quote inside a field is an error naming the line).
    """
    path = str(path)
    b = np.frombuffer(data, dtype=np.uint8)
    is_sep = _WHITESPACE[b]
    code = None if sep is None else ord(sep)
    if code is not None:
        is_sep |= b == code
    change = np.diff((~is_sep).view(np.int8), prepend=np.int8(0), append=np.int8(0))
    del is_sep
    bounds = np.flatnonzero(change)  # start0, end0, start1, end1, ...
    del change
    start, end = bounds[0::2], bounds[1::2]
    newlines = np.flatnonzero(b == 10)
    first = np.flatnonzero(_starts_line(b, start, end, newlines))
    counts = np.diff(np.append(first, len(start)))
    line_idx = np.searchsorted(newlines, start[first])
    comment = np.isin(b[start[first]], _COMMENT)
    chunk = ChunkLines(data, path, first_line, start, end, counts, line_idx + first_line)
    if code is not None:
        try:
            _check_separators(data, path, sep, b == code, newlines, line_idx, counts, comment)
        except InputFormatError as err:
            raise _shift(err, first_line) from None
        if b'"' in data:
            _strip_quotes(chunk, b, np.repeat(comment, counts))
    if comment.any():
        keep = np.repeat(~comment, counts)
        chunk.start, chunk.end = start[keep], end[keep]
        chunk.counts, chunk.lineno = counts[~comment], chunk.lineno[~comment]
    return chunk


def _starts_line(
    b: np.ndarray, start: np.ndarray, end: np.ndarray, newlines: np.ndarray
) -> np.ndarray:
    """Whether each field is the first of its line (a newline lies between it and the last)."""
    first = np.empty(len(start), dtype=bool)
    first[:1] = True
    if len(start) > 1:
        # a gap of 1-2 bytes holds its newline at one of its ends ('\n', ' \n', '\r\n')
        is_newline = b == 10
        first[1:] = is_newline[end[:-1]] | is_newline[start[1:] - 1]
        wide = np.flatnonzero(start[1:] - end[:-1] > 2)
        if len(wide):
            after = np.searchsorted(newlines, end[wide])
            first[wide + 1] = after < np.searchsorted(newlines, start[wide + 1])
    return first


def _strip_quotes(chunk: ChunkLines, b: np.ndarray, skip: np.ndarray) -> None:
    """Remove one pair of enclosing double quotes from each field; refuse other quotes."""
    start, end = chunk.start, chunk.end
    quoted = (b[start] == 34) & (b[end - 1] == 34) & (end - start > 1) & ~skip
    allowed = np.concatenate([start[quoted], end[quoted] - 1])
    quotes = np.flatnonzero(b == 34)
    owner = np.searchsorted(end, quotes, side="right")  # the field holding each quote
    stray = np.flatnonzero(~np.isin(quotes, allowed) & ~skip[owner])
    if len(stray):
        j = int(owner[stray[0]])
        line = int(np.searchsorted(np.cumsum(chunk.counts), j, side="right"))
        raise chunk.error(
            line,
            f"field {chunk.token(j)!r} has a double quote inside",
            'fields without quotes, or quoted as a whole ("a") with no separator or quote inside',
        )
    start[quoted] += 1
    end[quoted] -= 1


_U = np.uint64
_ZEROS = _U(0x3030303030303030)  # eight ASCII '0'
_HIGH = _U(0xF0F0F0F0F0F0F0F0)
_SIX = _U(0x0606060606060606)
_THREES = _U(0x3333333333333333)
_LOW = _U(0x000000FF000000FF)
_MUL1 = _U(100 + (1_000_000 << 32))
_MUL2 = _U(1 + (10_000 << 32))


def _eight_digits(b: np.ndarray, end: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, ...]:
    """Values of the 1-8 digit fields ending at ``end`` (``end >= 8``), eight bytes at once.

    The eight bytes before ``end`` are read as one little-endian word, the bytes before the
    field are set to ``'0'``, then all eight are checked to be digits and combined (the SWAR
    method of simdjson's ``parse_eight_digits_unrolled``).
    """
    words = np.ndarray(shape=(len(b) - 7,), dtype="<u8", buffer=b, strides=(1,))[end - 8]
    fill = (8 - length).astype(_U)  # in place from here: these arrays are large
    fill <<= _U(3)
    np.left_shift(_U(1), fill, out=fill)
    fill -= _U(1)
    tmp = np.invert(fill)
    words &= tmp
    fill &= _ZEROS
    words |= fill
    np.bitwise_and(words, _HIGH, out=tmp)
    np.add(words, _SIX, out=fill)
    fill &= _HIGH
    fill >>= _U(4)
    tmp |= fill
    ok = tmp == _THREES
    words -= _ZEROS
    np.right_shift(words, _U(8), out=tmp)
    words *= _U(10)
    words += tmp
    np.right_shift(words, _U(16), out=tmp)
    tmp &= _LOW
    tmp *= _MUL2
    words &= _LOW
    words *= _MUL1
    words += tmp
    words >>= _U(32)
    return words, ok


def _digits_loop(b: np.ndarray, start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, ...]:
    """Values (of the first 19 digits) and digit checks of fields, one digit position a time."""
    ok = length > 0
    value = np.zeros(len(start), dtype=_U)
    for k in range(min(int(length.max(initial=0)), 19)):
        active = length > k
        digit = b[np.where(active, start + k, 0)] - np.uint8(48)
        ok &= ~active | (digit <= 9)
        value = np.where(active, value * _U(10) + digit, value)
    return value, ok


def parse_int_ranges(
    b: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The integers ``b[start[j]:end[j]]`` (``-?[0-9]+``), vectorised over the fields.

    Returns ``(values, status)``: ``values`` int64 (0 where not an int64), ``status`` int8:
    0 an integer, 1 not an integer (``1_000``, ``+5``, ``1.0`` and names included), 2 an
    integer outside int64.
    """
    n = len(start)
    neg = b[start] == 45 if n else np.zeros(0, dtype=bool)
    digits_start = start + neg
    length = end - digits_start
    slow = np.flatnonzero((length <= 0) | (length > 8) | (end < 8))
    if len(b) >= 8 and len(slow) < n:
        # every field at once (the few slow ones clipped to valid reads), then the slow ones
        value, ok = _eight_digits(b, np.maximum(end, 8), np.clip(length, 1, 8))
    else:
        value, ok = np.zeros(n, dtype=_U), np.zeros(n, dtype=bool)
    if len(slow):
        value[slow], ok[slow] = _digits_loop(b, digits_start[slow], length[slow])
    status = np.where(ok, 0, 1).astype(np.int8)
    if n and length.max() >= 19:
        limit = _U(2**63) - (~neg).astype(_U)  # |min int64| = 2**63
        status[ok & ((length > 19) | (value > limit))] = 2
        for j in np.flatnonzero(ok & (length > 19)).tolist():  # rare: leading zeros, or huge
            token = b[start[j] : end[j]].tobytes()
            if not token.lstrip(b"-").isdigit():
                status[j] = 1
            elif -(2**63) <= (number := int(token)) < 2**63:
                status[j], value[j] = 0, abs(number)
    values = value.view(np.int64)  # 2**63 wraps to -2**63, the value wanted when negative
    if neg.any():
        np.negative(values, out=values, where=neg & (values > 0))
    if status.any():
        values[status != 0] = 0
    return values, status


def gather_strings(b: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The fields ``b[start[j]:end[j]]`` as a fixed-width bytes array (object when long)."""
    n = len(start)
    length = end - start
    width = int(length.max()) if n else 1
    if width > 256:
        raw = b.tobytes()
        return np.array([raw[s:e] for s, e in zip(start.tolist(), end.tolist())], dtype=object)
    table = np.zeros((n, width), dtype=np.uint8)
    for k in range(width):
        active = np.flatnonzero(length > k)
        table[active, k] = b[start[active] + k]
    return table.view(f"S{width}").reshape(n)
