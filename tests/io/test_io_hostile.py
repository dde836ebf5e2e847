"""Hostile inputs: bounded memory, refused non-regular files, value checks, exact line numbers."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import graphrec.io._text as text
from graphrec.cli import main
from graphrec.errors import InputFormatError
from graphrec.io import CTRSchema, read_ctr_table, read_edgelist, read_interactions


def one_line(err: BaseException) -> str:
    message = str(err)
    assert "\n" not in message and err.__cause__ is None
    return message


def bomb(path: Path, members: int, lines_per_member: int = 2**22) -> Path:
    """``members`` gzip members of ``lines_per_member`` lines '1 2' (16 MiB each, ~16 KB)."""
    member = gzip.compress(b"1 2\n" * lines_per_member, compresslevel=9)
    with open(path, "wb") as fh:
        for _ in range(members):
            fh.write(member)
    return path


# ----------------------------------------------------------------------------- size guards


def test_gzip_bomb_hits_the_ratio_guard(tmp_path):
    path = bomb(tmp_path / "bomb.txt.gz", members=2)  # 32 MiB from ~33 KB
    assert path.stat().st_size < 100_000
    with pytest.raises(InputFormatError) as info:
        read_edgelist(path)
    message = one_line(info.value)
    assert message.startswith(f"{path}: gzip data decompresses to more than 100 times its size")
    assert "gzip bomb" in message


def test_max_input_bytes_caps_decompressed_and_plain_input(tmp_path):
    path = bomb(tmp_path / "small.txt.gz", members=1, lines_per_member=10_000)  # 40 KB
    with pytest.raises(InputFormatError, match="decompresses to more than max_input_bytes"):
        read_edgelist(path, max_input_bytes=30_000)
    assert read_edgelist(path, max_input_bytes=40_000).num_lines == 10_000
    plain = tmp_path / "plain.txt"
    plain.write_text("0 1\n" * 1000)
    with pytest.raises(InputFormatError, match="has 4,000 bytes, more than max_input_bytes"):
        read_edgelist(plain, max_input_bytes=3999)
    with pytest.raises(InputFormatError, match="more than max_input_bytes = 100 bytes"):
        read_interactions(plain, max_input_bytes=100)
    with pytest.raises(ValueError, match="max_input_bytes must be an integer >= 1"):
        read_edgelist(plain, max_input_bytes=0)


def test_cli_max_input_bytes(tmp_path, capsys):
    plain = tmp_path / "plain.txt"
    plain.write_text("0 1\n" * 1000)
    assert main(["data", "info", str(plain), "--max-input-bytes", "1K"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more than max_input_bytes = 1,024 bytes" in err
    argv = ["fastcover", str(plain), "-k", "1", "--method", "degree", "--json"]
    assert main([*argv, "--max-input-bytes", "100"]) == 2
    assert "max_input_bytes" in capsys.readouterr().err
    assert main([*argv, "--max-input-bytes", "1M"]) == 0
    assert json.loads(capsys.readouterr().out)["nodes"] == 2
    with pytest.raises(SystemExit):
        main([*argv, "--max-input-bytes", "lots"])
    assert "--max-input-bytes must be a size" in capsys.readouterr().err


_RLIMIT_READ = """
import resource, sys
from graphrec.errors import GraphrecError
from graphrec.io import read_edgelist
resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
try:
    read_edgelist(sys.argv[1])
except GraphrecError as exc:
    print("clean:", exc)
"""


def test_gzip_bomb_under_a_2_gib_address_space_limit(tmp_path):
    # 4 GiB of '1 2' lines (10^9 edges: 16 GB as arrays) in ~4 MB of gzip
    path = bomb(tmp_path / "bomb4g.txt.gz", members=256)
    proc = subprocess.run(
        [sys.executable, "-c", _RLIMIT_READ, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"clean: {path}: gzip data decompresses to more than 100")


def test_long_lines_are_refused_early(tmp_path):
    path = tmp_path / "one-line.txt"
    path.write_bytes(b"0 1\n" + b"7 " * (text.MAX_LINE_BYTES // 2 + 10))
    with pytest.raises(InputFormatError) as info:
        read_edgelist(path)
    message = one_line(info.value)
    assert message.startswith(f"{path}, line 2: '7 7 7") and "is longer than 1,048,576" in message


# ----------------------------------------------------------------------------- not a regular file


def _refused(path: Path, problem: str) -> None:
    with pytest.raises(InputFormatError) as info:
        read_edgelist(path)
    message = one_line(info.value)
    assert message == f"{path}: {problem}; expected a readable regular file", message


def test_directory_symlink_loop_and_device(tmp_path):
    _refused(tmp_path, "is a directory")
    loop = tmp_path / "loop"
    os.symlink(tmp_path / "other", loop)
    os.symlink(loop, tmp_path / "other")
    _refused(loop, "is a symbolic link loop")
    if os.path.exists("/dev/zero"):
        _refused(
            Path("/dev/zero"), "is a character device (such as /dev/zero), which may never end"
        )


@pytest.mark.parametrize(
    "reader",
    [read_interactions, partial(read_ctr_table, schema=CTRSchema("y", categorical=["c"]))],
    ids=["interactions", "ctr"],
)
def test_every_text_reader_is_guarded(tmp_path, reader):
    with pytest.raises(InputFormatError, match="is a directory; expected a readable regular"):
        reader(tmp_path)
    path = bomb(tmp_path / "bomb.csv.gz", members=2)
    with pytest.raises(InputFormatError, match="gzip bomb"):
        reader(path)


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_edgelist(fifo)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():  # unblock the reader before failing
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert isinstance(outcome[0], InputFormatError)
    assert "is a named pipe (FIFO)" in one_line(outcome[0])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_permission_denied(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("0 1\n")
    path.chmod(0)
    _refused(path, "permission denied")


def test_cli_refuses_a_device_in_one_line(capsys):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    assert main(["data", "info", "/dev/zero"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/dev/zero: is a character device" in err


# ----------------------------------------------------------------------------- values


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_negative_and_out_of_int64_ids_are_labels_noted_in_the_summary(tmp_path):
    g = read_edgelist(write(tmp_path, "neg.txt", "-3 1\n1 -7\n"))
    assert g.node_ids.tolist() == [-7, -3, 1]
    assert g.notes == ["2 negative integer id(s), e.g. -7: labels"]
    assert "note     2 negative integer id(s)" in g.summary()
    huge = read_edgelist(write(tmp_path, "huge.txt", "1 99999999999999999999\n2 1\n"))
    assert huge.node_ids.tolist() == ["1", "99999999999999999999", "2"]
    assert huge.notes == ["1 integer id(s) outside int64: every id read as a string"]
    with pytest.raises(InputFormatError, match="line 1: .*node id '99999999999999999999' does"):
        read_edgelist(tmp_path / "huge.txt", relabel="never")
    edge = read_edgelist(write(tmp_path, "edge.txt", "-9223372036854775808 9223372036854775807\n"))
    assert edge.node_ids.tolist() == [-(2**63), 2**63 - 1]


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ("0 1 1.5\n1 2 1e39\n", 2, "weight '1e39' overflows float32"),
        ("0 1 1.5\n1 2 -4e38\n", 2, "weight '-4e38' overflows float32"),
        ("0 1 1_000\n", 1, "weight '1_000' is not a finite number"),
        ("0 1 2\n1 2 inf\n", 2, "weight 'inf' is not a finite number"),
        ("0 1\n1_000 2\n", 2, "node id '1_000' is not an integer but line 1 has integer ids"),
        ("0 1\n+5 2\n", 2, "node id '+5' is not an integer but line 1 has integer ids"),
        ("1,2,\n3,4\n", 1, "field 3 is empty"),
        ("0,1\n1,2,\n", 2, "field 3 is empty"),
        ('0,1\n"1,2",3\n', 2, "has a double quote inside"),
        (b"0 1\n1 2\n2 caf\xe9\n", 3, "byte 0xe9 at column 6 is not valid UTF-8"),
    ],
    ids=["weight-1e39", "weight-neg", "weight-underscore", "weight-inf", "underscore-id",
         "plus-id", "trailing-comma-first", "trailing-comma", "quoted-separator", "latin1"],
)  # fmt: skip
def test_value_errors_name_file_and_line(tmp_path, content, line, problem):
    path = write(tmp_path, "bad.csv", content)
    with pytest.raises(InputFormatError) as info:
        read_edgelist(path)
    message = one_line(info.value)
    assert message.startswith(f"{path}, line {line}: ") and problem in message, message


def test_underscore_ids_are_strings_never_numbers(tmp_path):
    g = read_edgelist(write(tmp_path, "u.txt", "1_000 2_000\n"))
    assert g.node_ids.tolist() == ["1_000", "2_000"]
    g = read_edgelist(write(tmp_path, "m.txt", "1_000 7\n"), relabel="always")
    assert g.node_ids.tolist() == ["1_000", "7"]


def test_quotes_and_bom_never_reach_ids_or_names(tmp_path):
    content = '\ufeff"source","target","weight"\n"a b?",x,1\n"x","a b?",2.5\n'
    for name in ("q.csv", "q.csv.gz"):
        data = content.replace(" ", "")
        raw = data.encode()
        path = write(tmp_path, name, gzip.compress(raw) if name.endswith(".gz") else raw)
        g = read_edgelist(path)
        assert g.node_ids.tolist() == ["ab?", "x"]
        assert g.header == "column names 'source,target,weight' (line 1)"
        assert g.data.edge_weight.tolist() == [1.0, 2.5]


# ----------------------------------------------------------------------------- chunks


def test_chunk_boundaries_keep_exact_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "CHUNK_BYTES", 64)
    lines = [f"{i} {i + 1}" for i in range(200)]
    lines[50:50] = ["# a comment", "", "% another"]
    lines.append("3 4")  # repeats line 7 (edge 3 4; the comments sit after it)
    path = write(tmp_path, "g.txt", "\n".join(lines) + "\n")
    g = read_edgelist(path)
    assert g.num_lines == 201 and g.num_duplicates == 1 and not g.remapped
    with pytest.raises(InputFormatError) as info:
        read_edgelist(path, duplicates="error")
    assert one_line(info.value) == (
        f"{path}, line 204: '3 4': repeats the edge of line 4; "
        "expected no duplicate lines with duplicates='error'"
    )
    path.write_text("\n".join(lines[:-1]) + "\n7 x\n")
    with pytest.raises(InputFormatError, match=r"line 204: '7 x': node id 'x' is not an integer"):
        read_edgelist(path)
    g = read_edgelist(write(tmp_path, "s.txt", "".join(f"n{i} n{i + 1}\n" for i in range(100))))
    assert g.num_nodes == 101 and g.node_ids[:3].tolist() == ["n0", "n1", "n2"]


def test_streamed_result_matches_a_plain_parse(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "CHUNK_BYTES", 1000)
    rng = np.random.default_rng(3)
    ids = rng.integers(-(10**12), 10**12, size=(5000, 2))
    weights = rng.random(5000)
    body = "".join(f"{u}\t{v} {w!r}\r\n" for (u, v), w in zip(ids.tolist(), weights.tolist()))
    g = read_edgelist(write(tmp_path, "w.txt.gz", gzip.compress(body.encode())))
    assert g.node_ids[g.data.edge_index.numpy()].T.tolist() == ids.tolist()
    assert np.allclose(g.data.edge_weight.numpy(), weights.astype(np.float32))
