"""Malformed inputs: every reader raises a readable error naming file, line and content."""

from __future__ import annotations

import gzip
from functools import partial
from pathlib import Path

import pytest

from graphrec.errors import InputFormatError
from graphrec.io import CTRSchema, read_ctr_table, read_edgelist, read_interactions

SCHEMA = CTRSchema("y", categorical=["c"], numeric=["x"], sequence={"s": "^"})
ctr = partial(read_ctr_table, schema=SCHEMA)

# (file name, content, reader, line number, offending content, words of the problem)
LINE_ERRORS = [
    ("edges-4-fields.txt", "0 1\n1 2 0.5 7\n", read_edgelist, 2, "1 2 0.5 7", "has 4 field(s)"),
    ("edges-no-target.txt", "# c\n0 1\n\n5\n", read_edgelist, 4, "5", "has 1 field(s)"),
    ("edges-weight.txt", "0 1 0.5\n1 2 heavy\n", read_edgelist, 2, "1 2 heavy",
     "weight 'heavy' is not a finite number"),
    ("edges-nan-weight.txt", "0 1 nan\n", read_edgelist, 1, "0 1 nan", "is not a finite number"),
    ("edges-mixed.txt", "0 1\n1 2\n2 0 1.5\n", read_edgelist, 3, "2 0 1.5",
     "has 3 fields but line 1 has 2"),
    ("edges-empty-field.csv", "0,1\n1,,2\n", read_edgelist, 2, "1,,2", "field 2 is empty"),
    ("edges-space-in-field.csv", "0,1\n1 2,3\n", read_edgelist, 2, "1 2,3",
     "field 1 ('1 2') contains whitespace"),
    ("edges-mixed-ids.txt", "0 1\n1 2\n2 x\n", read_edgelist, 3, "2 x",
     "node id 'x' is not an integer but line 1 has integer ids"),
    ("edges-mixed-ids2.txt", "a b\nb 7\n", read_edgelist, 2, "b 7",
     "node id '7' is an integer but line 1 has string ids"),
    ("edges-strings.txt", "0 1\n1 x\n", partial(read_edgelist, relabel="never"), 2, "1 x",
     "node id 'x' is not an integer"),
    ("edges-negative.txt", "0 1\n-3 1\n", partial(read_edgelist, relabel="never"), 2, "-3 1",
     "node id -3 is negative"),
    ("edges-huge-id.txt", "0 1\n1 99999999999\n", partial(read_edgelist, relabel="never"), 2,
     "1 99999999999", "node id 99999999999 exceeds 2,147,483,648 (too many nodes)"),
    ("edges-loop.txt", "0 1\n1 1\n", partial(read_edgelist, self_loops="error"), 2, "1 1",
     "is a self-loop"),
    ("edges-dup.txt", "0 1\n1 2\n0 1\n", partial(read_edgelist, duplicates="error"), 3, "0 1",
     "repeats the edge of line 1"),
    ("edges-dup-undirected.txt", "0 1\n1 0\n",
     partial(read_edgelist, duplicates="error", undirected=True), 2, "1 0",
     "repeats the unordered pair of line 1"),
    ("edges-count.txt", "3 5\n0 1\n1 2\n", partial(read_edgelist, header=True), 1, "3 5",
     "is not a valid count line"),
    ("edges-latin1.txt", b"0 1\n1 caf\xe9\n", read_edgelist, 2, "1 caf\\xe9",
     "byte 0xe9 at column 6 is not valid UTF-8"),
    ("edges-binary.bin", b"0 1\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", read_edgelist, 4,
     "\x00\x00\x00\rIHDR", "contains a NUL byte"),
    ("edges-not-gzip.txt.gz", b"0 1\n1 2\n", read_edgelist, 1, "0 1", "not gzip-compressed"),
    ("ratings-rating.data", "1\t2\t5\t100\n1\t3\tfive\t101\n", read_interactions, 2,
     "1\t3\tfive\t101", "rating 'five' is not a finite number"),
    ("ratings-timestamp.data", "1\t2\t5\t100\n1\t3\t4\tnoon\n", read_interactions, 2,
     "1\t3\t4\tnoon", "timestamp 'noon' is not an integer"),
    ("ratings-fields.data", "1\t2\t5\t100\n1\t3\t4\t100\t9\n", read_interactions, 2,
     "1\t3\t4\t100\t9", "has 5 field(s)"),
    ("ratings-no-item.csv", "user,rating\n1,5\n", read_interactions, 1, "user,rating",
     "the header has no item column"),
    ("ratings-row.csv", "user,item,rating\n1,2,5\n1,3\n", read_interactions, 3, "1,3",
     "has 2 field(s)"),
    ("ratings-ids.txt", "0 1 2\nu7 3\n", partial(read_interactions, keep_ids=True), 2, "u7 3",
     "user id 'u7' is not an integer >= 0"),
    ("ctr-label.csv", "y,c,x,s\n1,a,0.5,1^2\n2,b,1,\n", ctr, 3, "2,b,1,",
     "label '2' is not 0 or 1"),
    ("ctr-missing-column.csv", "y,c,s\n1,a,1\n", ctr, 1, "y,c,s",
     "missing column(s) 'x'; expected the schema's columns; the file has: y, c, s"),
    ("ctr-extra-column.csv", "y,c,x,s,z\n1,a,1,2,3\n", ctr, 1, "y,c,x,s,z",
     "column(s) 'z' are not in the schema"),
    ("ctr-numeric.csv", "y,c,x,s\n0,a,1.5,\n1,b,n/a,\n", ctr, 3, "1,b,n/a,",
     "column 'x': 'n/a' is not a number"),
    ("ctr-fields.csv", "y,c,x,s\n0,a,1.5,\n1,b,2\n", ctr, 3, "1,b,2",
     "has 3 fields; expected 4 fields like the header on line 1"),
    ("ctr-sequence.csv", "y,c,x,s\n0,a,1,3^^4\n", ctr, 2, "0,a,1,3^^4",
     "sequence '3^^4' has an empty element"),
    ("ctr-quote.csv", 'y,c,x,s\n0,"a"b,1,\n', ctr, 2, '0,"a"b,1,', "is not valid CSV"),
]  # fmt: skip


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _readable(err: BaseException) -> str:
    """The message, after checking it is a single line with no chained low-level traceback."""
    message = str(err)
    assert "\n" not in message and "Traceback" not in message
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    return message


@pytest.mark.parametrize(
    ("name", "content", "reader", "line", "shown", "problem"),
    LINE_ERRORS,
    ids=[case[0] for case in LINE_ERRORS],
)
def test_line_errors_name_file_line_and_content(
    tmp_path, name, content, reader, line, shown, problem
):
    path = _write(tmp_path, name, content)
    with pytest.raises(InputFormatError) as info:
        reader(path)
    message = _readable(info.value)
    assert message.startswith(f"{path}, line {line}: {shown!r}: "), message
    assert problem in message and "; expected " in message
    assert (info.value.path, info.value.line) == (str(path), line)


def test_errors_late_in_a_large_file_are_not_truncated(tmp_path):
    # 20,000 good lines then a bad one: no partial graph, the error names the last line.
    body = "".join(f"{i} {i + 1}\n" for i in range(20_000)) + "20000 x 1.0\n"
    path = _write(tmp_path, "big.txt.gz", gzip.compress(body.encode()))
    with pytest.raises(InputFormatError, match=r"big.txt.gz, line 20001: '20000 x 1.0': has 3"):
        read_edgelist(path)
    ratings = "".join(f"{i}\t{i}\t3\t{i}\n" for i in range(20_000)) + "1\t2\t3\t4.5\n"
    path = _write(tmp_path, "big.data", ratings)
    with pytest.raises(InputFormatError, match=r"line 20001: .*timestamp '4.5' is not an integer"):
        read_interactions(path)


FILE_ERRORS = [
    ("empty.txt", b"", read_edgelist, "contains no edge lines"),
    ("comments-only.txt", b"# nothing\n%\n\n", read_edgelist, "contains no edge lines"),
    ("empty.data", b"\n\n", read_interactions, "contains no interaction lines"),
    ("empty.csv", b"", ctr, "is empty; expected a header row"),
    ("header-only.csv", b"y,c,x,s\n", ctr, "has no data rows"),
    ("truncated.txt.gz", gzip.compress(b"0 1\n" * 1000)[:-20], read_edgelist,
     "gzip data is corrupt or truncated"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "reader", "problem"), FILE_ERRORS, ids=[c[0] for c in FILE_ERRORS]
)
def test_whole_file_errors(tmp_path, name, content, reader, problem):
    path = _write(tmp_path, name, content)
    with pytest.raises(InputFormatError) as info:
        reader(path)
    message = _readable(info.value)
    assert message.startswith(f"{path}: ") and problem in message


@pytest.mark.parametrize(
    "reader",
    [read_edgelist, read_interactions, ctr],
    ids=["edgelist", "interactions", "ctr"],
)
def test_missing_file_names_the_path(tmp_path, reader):
    path = tmp_path / "no-such-dir" / "graph.txt"
    with pytest.raises(FileNotFoundError, match="no-such-dir/graph.txt"):
        reader(path)


OPTION_ERRORS = [
    (partial(read_edgelist, self_loops="remove"),
     "self_loops must be one of 'keep', 'drop', 'error'; got 'remove'"),
    (partial(read_edgelist, duplicates=False),
     "duplicates must be one of 'keep', 'drop', 'error'; got False"),
    (partial(read_edgelist, relabel="yes"),
     "relabel must be one of 'auto', 'never', 'always'; got 'yes'"),
    (partial(read_edgelist, header="n m"), "header must be one of 'auto', 'yes', 'no'; got 'n m'"),
    (partial(read_edgelist, delimiter="::"), "delimiter must be None (auto), ' ', '\\t' or one"),
    (partial(read_interactions, format="json"),
     "format must be one of 'auto', 'movielens', 'lightgcn', 'csv'; got 'json'"),
    (partial(read_interactions, sep=" "), "sep must be None (whitespace) or a non-blank string"),
    (partial(read_ctr_table, schema=SCHEMA, min_count=0), "min_count must be an integer >= 1"),
    (partial(read_ctr_table, schema=SCHEMA, header=False), "header=False needs the column names"),
    (partial(read_ctr_table, schema=SCHEMA, vocab={"c": {}}), "vocab has no entry 's'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "message"),
    OPTION_ERRORS,
    ids=["self_loops", "duplicates", "relabel", "header", "delimiter", "format", "sep",
         "min_count", "columns", "vocab"],
)  # fmt: skip
def test_unknown_option_values(tmp_path, call, message):
    path = _write(tmp_path, "ok.txt", "0 1\n")
    with pytest.raises(ValueError) as info:
        call(path)
    assert not isinstance(info.value, InputFormatError)
    assert message in str(info.value)


SCHEMA_ERRORS = [
    (dict(label=""), "label must be a column name"),
    (dict(label="y", categorical="c"), "categorical must be a list of column names"),
    (dict(label="y", categorical=["c"], numeric=["c"]),
     "column 'c' is declared as both categorical and numeric"),
    (dict(label="y", drop=["y"]), "column 'y' is declared as both label and drop"),
    (dict(label="y", sequence={"s": ""}), "sequence must map column names to strings"),
    (dict(label="y", numeric=["x"], sequence={"s": "^"}, shared_vocab={"s": "x"}),
     "shared_vocab['s'] = 'x' must be a categorical column"),
    (dict(label="y", categorical=["c"], shared_vocab={"z": "c"}),
     "shared_vocab key 'z' must be a categorical or sequence column"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    SCHEMA_ERRORS,
    ids=["label", "str-list", "two-roles", "label-dropped", "separator", "owner", "key"],
)
def test_schema_errors(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        CTRSchema(**kwargs)
