"""The ``graphrec`` console script: help, version, data info, fastcover and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from graphrec import __version__
from graphrec.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_console_script_help_lists_subcommands():
    proc = subprocess.run(
        [sys.executable, "-m", "graphrec.cli", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "data" in proc.stdout and "fastcover" in proc.stdout


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"graphrec {__version__}"


def test_data_info_edge_list(capsys, shared_data):
    code, out, _ = run(capsys, "data", "info", str(shared_data / "snap/facebook_combined.txt.gz"))
    assert code == 0
    assert "4039" in out.replace(",", "") and "88234" in out.replace(",", "")


def test_data_info_ratings_and_table(capsys, shared_data):
    code, out, _ = run(capsys, "data", "info", str(shared_data / "movielens/ml-100k/u.data.gz"))
    assert code == 0 and "943" in out and "1682" in out.replace(",", "")
    csv = shared_data / "ctr/fuxictr_tiny_taobao/train_sample.csv"
    code, out, _ = run(capsys, "data", "info", str(csv))
    assert code == 0 and "clk" in out and "click_sequence" in out


def test_data_info_sparse_npz(capsys, shared_data):
    code, out, _ = run(capsys, "data", "info", str(shared_data / "lightgcn/gowalla/s_adj_mat.npz"))
    assert code == 0 and "sparse matrix" in out and "symmetric=True" in out


def test_data_info_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "data", "info", str(tmp_path / "nope.txt"))
    assert code == 2
    assert "nope.txt" in err and "no such file" in err
    assert "Traceback" not in err


def test_data_info_malformed_names_line(capsys, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("0 1\n1 2\n2 x\n")
    code, _, err = run(capsys, "data", "info", str(bad))
    assert code == 2
    assert "bad.txt" in err and "line 3" in err and "2 x" in err


def test_fastcover_embedded_json(capsys):
    code, out, _ = run(capsys, "fastcover", "-k", "5", "-d", "1", "--method", "greedy", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["nodes"] == 4039 and res["k"] == 5 and len(res["seeds"]) == 5
    assert 0 < res["covered"] <= 4039
    assert res["coverage"] == pytest.approx(res["covered"] / 4039)
    # With k=1 and d=1 greedy picks the maximum closed-degree node: 1045 covered (hub 107).
    code, out, _ = run(capsys, "fastcover", "-k", "1", "-d", "1", "--method", "greedy", "--json")
    res = json.loads(out)
    assert res["seeds"] == [107] and res["covered"] == 1046


def test_fastcover_human_output_and_out_file(capsys, tmp_path):
    out_file = tmp_path / "seeds.txt"
    code, out, _ = run(capsys, "fastcover", "-k", "3", "-d", "2", "--out", str(out_file))
    assert code == 0
    assert "coverage" in out and "seeds" in out and "load" in out and "solve" in out
    seeds = out_file.read_text().split()
    assert len(seeds) == 3
    # never overwritten without --force
    code, _, err = run(capsys, "fastcover", "-k", "3", "--out", str(out_file))
    assert code == 2 and "--force" in err
    code, _, _ = run(capsys, "fastcover", "-k", "3", "--out", str(out_file), "--force")
    assert code == 0


def test_fastcover_out_uses_file_ids(capsys, tmp_path):
    graph = tmp_path / "names.txt"
    graph.write_text("alice bob\nalice carol\nalice dave\nbob carol\n")
    out_file = tmp_path / "seeds.txt"
    code, _, _ = run(
        capsys, "fastcover", str(graph), "-k", "1", "-d", "1", "--method", "greedy",
        "--out", str(out_file),
    )
    assert code == 0
    assert out_file.read_text() == "alice\n"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["fastcover", "-k", "0"], "-k must be >= 1"),
        (["fastcover", "-d", "0"], "-d must be >= 1"),
        (["fastcover", "-k", "ten"], "-k must be an integer"),
        (["fastcover", "--method", "magic"], "invalid choice"),
    ],
)
def test_fastcover_bad_arguments(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_fastcover_unreadable_and_empty_graph(capsys, tmp_path):
    code, _, err = run(capsys, "fastcover", str(tmp_path / "missing.txt"))
    assert code == 2 and "missing.txt" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n")
    code, _, err = run(capsys, "fastcover", str(empty))
    assert code == 2 and "empty.txt" in err


def test_fastcover_powerlaw_compare_side_by_side(capsys):
    """--powerlaw generates the graph (seeded); --compare prints both methods in one table."""
    argv = ["fastcover", "--powerlaw", "3000", "-k", "5", "-d", "3", "--compare", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3,000 nodes, 30,000 directed edges" in out
    table = [line.split() for line in out.splitlines() if line.startswith("  ")]
    rows = [r for r in table if r[0] == "fastcover" and r[1][0].isdigit()]
    greedy_rows = [r for r in table if r[0] == "greedy" and r[1][0].isdigit()]
    assert len(rows) == 1 and len(greedy_rows) == 1
    assert int(rows[0][1].replace(",", "")) <= int(greedy_rows[0][1].replace(",", ""))
    assert main([*argv, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seeds"] == first["seeds"]


def test_fastcover_out_and_options_checked_before_work(tmp_path, capsys):
    folder = tmp_path / "seeds"
    folder.mkdir()
    for argv, needle in (
        (["--out", str(folder)], "is a folder"),
        (["--out", str(tmp_path / "no" / "s.txt")], "does not exist"),
        (["--method", "greedy", "--rounds", "3"], "--method fastcover only"),
        (["--powerlaw", "100", str(tmp_path / "g.txt")], "not both"),
    ):
        assert main(["fastcover", "-k", "2", "--quiet", *argv]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    for bad in ("inf", "nan", "-1", "0"):
        with pytest.raises(SystemExit):
            main(["fastcover", "--max-memory", bad])
        assert "--max-memory" in capsys.readouterr().err


def test_fastcover_ilp_size_guard_names_the_cli_option(capsys):
    assert main(["fastcover", "--powerlaw", "6000", "-k", "2", "-d", "1", "--method", "ilp"]) == 2
    err = capsys.readouterr().err
    assert "--ilp-any-size" in err and err.count("\n") == 1
