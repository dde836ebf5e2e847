"""``graphrec fastcover -k 1,8,32``: one read, one solve per k, per-k files and a plot."""

from __future__ import annotations

import json

import pytest

from graphrec.cli import main

KS = ["1", "4", "16"]


def run_json(capsys, *argv: str) -> dict:
    assert main(["fastcover", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("method", ["fastcover", "greedy"])
def test_sweep_equals_separate_runs(capsys, method):
    sweep = run_json(capsys, "-k", ",".join(KS), "-d", "1", "--method", method, "--compare")
    assert sweep["nodes"] == 4039 and sweep["d"] == 1 and sweep["method"] == method
    assert [r["k"] for r in sweep["runs"]] == [1, 4, 16]
    assert sweep["greedy"]["k"] == 16 and sweep["greedy"]["solve_s"] >= 0
    for k, run in zip(KS, sweep["runs"]):
        one = run_json(capsys, "-k", k, "-d", "1", "--method", method, "--compare")
        assert one["k"] == run["k"] and one["method"] == run["method"]
        assert one["seeds"] == run["seeds"] and one["covered"] == run["covered"]
        # greedy's coverage at k from its one run to k = 16 equals a greedy run at k
        assert one["greedy"]["covered"] == run["greedy"]["covered"]
        assert one["greedy"]["ratio"] == run["greedy"]["ratio"]
    # k = 1, d = 1: greedy takes the hub 107 (1,045 friends + itself)
    assert sweep["runs"][0]["greedy"]["covered"] == 1046


def test_sweep_table_out_files_and_plot(capsys, tmp_path):
    out, plot = tmp_path / "seeds.txt", tmp_path / "cov.png"
    argv = ["fastcover", "-k", "4,1", "-d", "1", "--quiet", "--compare"]
    assert main([*argv, "--out", str(out), "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines() if line.startswith("  fastcover")]
    assert [r[1] for r in rows] == ["4", "1"]  # one row per k, in the order given
    assert "one run to k=4" in text
    assert len((tmp_path / "seeds.k4.txt").read_text().split()) == 4
    assert len((tmp_path / "seeds.k1.txt").read_text().split()) == 1
    assert not out.exists()
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # nothing is overwritten without --force, and that is checked before any work
    assert main([*argv, "--plot", str(plot)]) == 2
    err = capsys.readouterr().err
    assert "--plot" in err and "--force" in err and err.count("\n") == 1
    assert main([*argv, "--plot", str(tmp_path / "cov.jpg")]) == 2
    assert ".png" in capsys.readouterr().err


def test_sweep_header_names_the_path_of_each_k(capsys):
    # ego-Facebook at d = 2: k = 1 takes the sampled largest ball, k = 3 and 10 the closure
    assert main(["fastcover", "-k", "1,3,10", "-d", "2", "--quiet"]) == 0
    head = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("method"))
    assert head == (
        "method    fastcover (d=2; k=1: sampled first pick; "
        "k=3,10: closure greedy (pruned pool not certified))"
    )


def test_reading_progress_on_stderr(capsys, tmp_path):
    graph = tmp_path / "g.txt"
    graph.write_text("0 1\n0 2\n2 3\n")
    assert main(["fastcover", str(graph), "-k", "1,2", "-d", "1", "--method", "greedy"]) == 0
    out, err = capsys.readouterr()
    assert "reading" in err and "budgets" in err  # the tqdm bars go to stderr only
    rows = [line.split() for line in out.splitlines() if line.startswith("  greedy")]
    assert [(r[1], r[2]) for r in rows] == [("1", "3"), ("2", "4")]


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("1,,8", "-k must be an integer, got ''"),
        ("1,x", "-k must be an integer, got 'x'"),
        ("8,0", "-k must be >= 1, got 0"),
        ("8,-2", "-k must be >= 1, got -2"),
        ("1,8,1", "-k lists 1 twice"),
    ],
)
def test_bad_k_lists_refused_in_one_line(capsys, bad, needle):
    with pytest.raises(SystemExit) as exc:
        main(["fastcover", f"-k={bad}"])
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(lines) == 1 and lines[0].startswith("graphrec fastcover: error: argument -k")
    assert needle in lines[0]
