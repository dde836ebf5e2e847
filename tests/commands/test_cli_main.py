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


def test_internal_bug_keeps_its_traceback(monkeypatch):
    """Only the package's own errors (and OS errors) become one-line user errors: a plain
    ``ValueError`` from a bug propagates with its traceback."""
    import graphrec.commands.data as data_cmd

    def broken(args):
        raise ValueError("internal invariant violated")

    monkeypatch.setattr(data_cmd, "info_command", broken)
    with pytest.raises(ValueError, match="internal invariant"):
        main(["data", "info", "whatever.txt"])


def test_config_error_is_one_line(monkeypatch, capsys):
    import graphrec.commands.data as data_cmd
    from graphrec.errors import ConfigError

    assert issubclass(ConfigError, GraphrecError) and issubclass(ConfigError, ValueError)

    def refuse(args):
        raise ConfigError("--thing must be >= 1, got 0")

    monkeypatch.setattr(data_cmd, "info_command", refuse)
    assert main(["data", "info", "whatever.txt"]) == 2
    assert capsys.readouterr().err == "graphrec: error: --thing must be >= 1, got 0\n"


def test_options_are_never_abbreviated(capsys):
    """``--d 9`` once meant ``--delimiter 9`` (ignored for a generated graph): now refused."""
    with pytest.raises(SystemExit) as exc:
        main(["fastcover", "--powerlaw", "50", "-k", "2", "--d", "9"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --d" in capsys.readouterr().err
