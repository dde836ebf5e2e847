"""graphrec.io.atomic: outputs checked before work, replaced in one step."""

import os

import pytest

from graphrec.errors import GraphrecError
from graphrec.io.atomic import atomic_open, atomic_write_text, check_output


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    out = tmp_path / "seeds.txt"
    atomic_write_text(out, "old\n")
    with pytest.raises(RuntimeError), atomic_open(out, "w") as f:
        f.write("half of the new content")
        raise RuntimeError("killed mid-write")
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seeds.txt"]
    atomic_write_text(out, "new\n")
    assert out.read_text() == "new\n"


def test_new_files_get_the_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_check_output_refuses_before_any_work(tmp_path):
    (tmp_path / "exists.txt").write_text("keep")
    with pytest.raises(GraphrecError, match="--out .* is a folder"):
        check_output(tmp_path)
    with pytest.raises(GraphrecError, match="exists; pass --force"):
        check_output(tmp_path / "exists.txt")
    with pytest.raises(GraphrecError, match="does not exist"):
        check_output(tmp_path / "missing" / "x.txt", option="--checkpoint")
    assert check_output(tmp_path / "exists.txt", force=True) == tmp_path / "exists.txt"
    assert (tmp_path / "exists.txt").read_text() == "keep"
