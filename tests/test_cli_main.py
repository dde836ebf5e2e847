"""The ``graphrec`` entry point: broken pipes, OS errors, --debug."""

import os
import subprocess
import sys

import pytest

from graphrec.cli import _one_line, main
from graphrec.errors import GraphrecError


def test_closed_stdout_is_quiet(shared_data):
    """Output to a pipe whose reader is gone (``graphrec ... | head``): no traceback."""
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run(
        [sys.executable, "-m", "graphrec.cli", "data", "info",
         str(shared_data / "movielens" / "ml-100k" / "u.data.gz")],
        stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
    )  # fmt: skip
    os.close(write)
    assert proc.returncode == 141
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_errors_are_one_line_and_debug_shows_them(tmp_path, capsys):
    out = tmp_path / "seeds.txt"
    out.mkdir()  # --out under a folder that does not exist: refused before the solve
    assert main(["fastcover", "-k", "2", "--out", str(out / "x" / "y.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphrec: error: ") and err.count("\n") == 1
    with pytest.raises(GraphrecError, match="does not exist"):
        main(["--debug", "fastcover", "-k", "2", "--out", str(out / "x" / "y.txt")])


def test_os_error_message_is_path_and_reason():
    exc = IsADirectoryError(21, "Is a directory", "/data/graph.txt")
    assert _one_line(exc) == "/data/graph.txt: Is a directory"
    assert _one_line(MemoryError()) == "MemoryError"
