"""Edge-list headers: count lines (SNAP / IM style), column-name rows, and the header option."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from graphrec.cli import main
from graphrec.errors import InputFormatError
from graphrec.io import read_edgelist


def hepth_style(tmp_path: Path, name: str = "ca-hepth.txt") -> tuple[Path, int, int]:
    """A count line 'n m' above m edges whose ids are sampled from range(100000)."""
    rng = random.Random(7)
    ids = rng.sample(range(100_000), 60)
    pairs: set[tuple[int, int]] = {(ids[i], ids[(i + 1) % 60]) for i in range(60)}
    while len(pairs) < 200:
        pairs.add(tuple(rng.sample(ids, 2)))
    lines = "".join(f"{u} {v}\n" for u, v in sorted(pairs, key=lambda p: rng.random()))
    path = tmp_path / name
    path.write_text(f"60 {len(pairs)}\n{lines}")
    return path, 60, len(pairs)


def test_count_line_with_large_noncontiguous_ids_via_data_info(tmp_path, capsys):
    path, n, m = hepth_style(tmp_path)
    assert main(["data", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"nodes    {n} " in out and f"edges    {m} directed" in out
    assert f"header   count line '{n} {m}' (line 1)" in out
    g = read_edgelist(path)
    assert (g.num_nodes, g.num_lines, g.header) == (n, m, f"count line '{n} {m}' (line 1)")
    assert g.remapped and g.node_ids.max() > n


def test_count_line_via_fastcover_json(tmp_path, capsys):
    path, n, m = hepth_style(tmp_path)
    argv = ["fastcover", str(path), "-k", "2", "-d", "1", "--method", "degree", "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["nodes"], res["edges"]) == (n, m)
    assert main([*argv, "--header", "no"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["nodes"], res["edges"]) == (n + 2, m + 1)


def test_header_no_reads_the_count_line_as_an_edge(tmp_path):
    path, n, m = hepth_style(tmp_path)
    g = read_edgelist(path, header="no")
    assert (g.num_nodes, g.num_lines, g.header) == (n + 2, m + 1, None)
    assert g.node_ids[g.data.edge_index[:, 0]].tolist() == [n, m]


@pytest.mark.parametrize(
    "text",
    [
        "\ufeffsource,target\n0,1\n1,2\n2,0\n",
        '\ufeff"source","target"\n"0","1"\n1,2\n"2",0\n',
        "source;target\n0;1\n1;2\n2;0\n",
    ],
    ids=["bom", "quoted", "semicolon"],
)
def test_csv_with_column_names(tmp_path, text):
    path = tmp_path / "g.csv"
    path.write_bytes(text.encode())
    g = read_edgelist(path, delimiter=";" if ";" in text else None)
    assert (g.num_nodes, g.num_lines) == (3, 3) and not g.remapped
    assert g.data.edge_index.tolist() == [[0, 1, 2], [1, 2, 0]]
    assert g.header is not None and g.header.startswith("column names 'source")
    assert "\ufeff" not in g.header and '"' not in g.header


def test_column_names_over_weights_and_string_ids(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("src,dst,weight\n5,9,0.5\n9,5,2\n")
    g = read_edgelist(path)
    assert g.num_lines == 2 and g.data.edge_weight.tolist() == [0.5, 2.0]
    names = tmp_path / "names.csv"
    names.write_text("source,target\nalice,bob\nbob,carol\n")
    g = read_edgelist(names)
    assert g.node_ids.tolist() == ["alice", "bob", "carol"]
    assert g.header == "column names 'source,target' (line 1)"
    # a string-id first line that is not a known column name stays an edge
    names.write_text("dave,erin\nalice,bob\n")
    assert read_edgelist(names).header is None


def test_header_yes_requires_a_header(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("0 1\n1 2\n2 0\n")
    with pytest.raises(InputFormatError) as info:
        read_edgelist(path, header="yes")
    message = str(info.value)
    assert message.startswith(f"{path}, line 1: '0 1': is not a valid count line; expected ")
    assert "(2)" in message and "\n" not in message
    path.write_text("1 2\n1 2\n")  # 1 node cannot hold the 2 distinct ids
    with pytest.raises(InputFormatError, match="line 1: '1 2': is not a valid count line"):
        read_edgelist(path, header=True)
    path.write_text("a b\nb c\n")
    assert read_edgelist(path, header="yes").header == "column names 'a,b' (line 1)"
    path.write_text("9 7 0.5\n1 2 0.5\n")
    with pytest.raises(InputFormatError, match="line 1: '9 7 0.5': is not a header"):
        read_edgelist(path, header="yes")


def test_cli_header_error_is_one_line(tmp_path, capsys):
    path = tmp_path / "plain.txt"
    path.write_text("0 1\n1 2\n")
    assert main(["data", "info", str(path), "--header", "yes"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plain.txt, line 1" in err and "count line" in err


def test_auto_does_not_take_ambiguous_first_lines(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("1 0\n")  # a lone 'n m' line is an edge under "auto"
    assert read_edgelist(path).num_lines == 1
    assert read_edgelist(path, header="yes").num_nodes == 1
    path.write_text("4 2\n0 1\n1 2 0.5\n")
    with pytest.raises(InputFormatError, match="line 3: '1 2 0.5': has 3 fields but line 1"):
        read_edgelist(path)


def test_delimiter_option_on_the_cli(tmp_path, capsys):
    path = tmp_path / "g.txt"
    path.write_text("a|b\nb|c\n")
    assert main(["data", "info", str(path), "--kind", "edges", "--delimiter", "|"]) == 0
    assert "nodes    3 " in capsys.readouterr().out
