"""Tests of graphrec.io: edge lists, conversions, interaction logs and CTR tables."""

from __future__ import annotations

import gzip
import time
from collections import Counter
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.data import Data

from graphrec.io import (
    CTRSchema,
    EdgeList,
    Interactions,
    as_edgelist,
    from_dgl,
    from_networkx,
    from_scipy,
    read_ctr_table,
    read_edgelist,
    read_interactions,
    to_dgl,
    to_networkx,
    to_scipy,
)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def edges(g: EdgeList) -> list[tuple[int, int]]:
    return [tuple(e) for e in g.data.edge_index.t().tolist()]


# ----------------------------------------------------------------------------- edge lists


def test_comments_blank_lines_crlf_and_tabs(tmp_path):
    text = (
        "# a comment\r\n% another\r\n\r\n  # indented comment\r\n0 1\r\n1\t2\r\n   2  0  \r\n\r\n"
    )
    g = read_edgelist(write(tmp_path, "g.txt", text))
    assert edges(g) == [(0, 1), (1, 2), (2, 0)]
    assert (g.num_nodes, g.num_edges, g.num_lines, g.directed) == (3, 3, 3, True)
    assert g.node_ids.tolist() == [0, 1, 2] and not g.remapped
    assert g.data.edge_index.dtype == torch.int64 and "edge_weight" not in g.data
    assert g.path == str(tmp_path / "g.txt")


def test_gzip_is_transparent(tmp_path):
    text = "0 1\n1 2\n2 3\n"
    plain = read_edgelist(write(tmp_path, "g.txt", text))
    packed = read_edgelist(write(tmp_path, "g.txt.gz", text))
    assert edges(plain) == edges(packed)


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [("0,1\n1,2\n", None), ("0 , 1\n1,2\n", None), ("0;1\n1;2\n", ";"), ("0\t1\n1 2\n", "\t")],
    ids=["comma", "comma-spaces", "semicolon", "tab"],
)
def test_delimiters(tmp_path, text, delimiter):
    g = read_edgelist(write(tmp_path, "g.csv", text), delimiter=delimiter)
    assert edges(g) == [(0, 1), (1, 2)]


def test_weight_column(tmp_path):
    g = read_edgelist(write(tmp_path, "w.txt", "0 1 0.5\n1 2 2\n2 0 1e-3\n"))
    assert g.data.edge_weight.dtype == torch.float32
    assert g.data.edge_weight.tolist() == pytest.approx([0.5, 2.0, 1e-3])


def test_count_line_is_detected_by_rule(tmp_path):
    # "n m" followed by exactly m lines whose ids are <= n: a header; n sets num_nodes.
    g = read_edgelist(write(tmp_path, "h.txt", "5 2\n0 1\n1 2\n"))
    assert (g.num_nodes, g.num_lines, edges(g)) == (5, 2, [(0, 1), (1, 2)])
    assert "isolated 2 node(s)" in g.summary()
    # the count does not match the number of lines: an edge
    g = read_edgelist(write(tmp_path, "e.txt", "5 3\n0 1\n1 2\n"))
    assert g.num_lines == 3 and g.node_ids[g.data.edge_index[:, 0]].tolist() == [5, 3]
    # the count matches but ids neither number n nor lie below n: an edge
    g = read_edgelist(write(tmp_path, "f.txt", "3 1\n7 8\n"))
    assert g.num_lines == 2 and g.node_ids.tolist() == [1, 3, 7, 8] and g.header is None
    # header="no" (or False) overrides the rule
    for no in ("no", False):
        g = read_edgelist(write(tmp_path, "h2.txt", "3 2\n0 1\n1 2\n"), header=no)
        assert g.num_lines == 3 and g.num_nodes == 4 and g.header is None


def test_matrix_market_size_line(tmp_path):
    text = "%%MatrixMarket matrix coordinate real general\n% comment\n3 3 2\n1 2 0.5\n3 1 1.5\n"
    g = read_edgelist(write(tmp_path, "m.mtx", text))
    assert g.num_lines == 2 and g.data.edge_weight.tolist() == [0.5, 1.5]
    assert g.node_ids.tolist() == [1, 2, 3] and edges(g) == [(0, 1), (2, 0)]


def test_string_ids_in_order_of_first_appearance(tmp_path):
    g = read_edgelist(write(tmp_path, "s.txt", "bob alice\nalice carol\ndave bob\n"))
    assert g.node_ids.tolist() == ["bob", "alice", "carol", "dave"]
    assert g.node_ids.dtype == object and g.remapped
    assert edges(g) == [(0, 1), (1, 2), (3, 0)]
    assert g.index_of(["carol", "bob"]).tolist() == [2, 0]
    assert g.index_of("dave").item() == 3
    with pytest.raises(KeyError, match="node id 'eve' does not occur in .*s.txt"):
        g.index_of(["alice", "eve"])


def test_mixed_ids_are_strings_with_relabel_always(tmp_path):
    g = read_edgelist(write(tmp_path, "mixed.txt", "10 x\n2 10\n"), relabel="always")
    assert g.node_ids.tolist() == ["10", "x", "2"] and edges(g) == [(0, 1), (2, 0)]


def test_integer_ids_with_gaps_are_remapped_in_sorted_order(tmp_path):
    path = write(tmp_path, "gaps.txt", "10 30\n30 20\n-5 10\n")
    g = read_edgelist(path)
    assert g.node_ids.tolist() == [-5, 10, 20, 30] and g.remapped
    assert edges(g) == [(1, 3), (3, 2), (0, 1)]
    assert g.index_of(np.array([30, -5])).tolist() == [3, 0]
    with pytest.raises(KeyError, match="node id 11"):
        g.index_of([11])


def test_relabel_never_and_always(tmp_path):
    path = write(tmp_path, "gaps.txt", "1 4\n4 2\n")
    never = read_edgelist(path, relabel="never")
    assert (never.num_nodes, edges(never)) == (5, [(1, 4), (4, 2)])
    assert never.index_of([4]).tolist() == [4]
    always = read_edgelist(write(tmp_path, "c.txt", "2 1\n1 0\n0 2\n"), relabel="always")
    assert always.node_ids.tolist() == [0, 1, 2] and edges(always) == [(2, 1), (1, 0), (0, 2)]


SELF_DUP = "0 1\n1 1\n0 1\n1 0\n2 2\n1 2\n"


def test_self_loops_and_duplicates_are_counted(tmp_path):
    path = write(tmp_path, "sd.txt", SELF_DUP)
    g = read_edgelist(path)
    assert (g.num_self_loops, g.num_duplicates, g.num_edges) == (2, 1, 6)
    u = read_edgelist(path, undirected=True)
    assert (u.num_self_loops, u.num_duplicates) == (2, 2)  # "1 0" repeats {0, 1} too
    ordered = write(tmp_path, "sorted.txt", "0 1\n0 1\n0 2\n1 0\n1 1\n1 1\n1 1\n")
    g = read_edgelist(ordered)  # lines sorted by (source, target): the count skips a sort
    assert (g.num_self_loops, g.num_duplicates, g.data.edge_index.dtype) == (3, 3, torch.int64)


@pytest.mark.parametrize(
    ("self_loops", "duplicates", "expected"),
    [
        ("keep", "keep", [(0, 1), (1, 1), (0, 1), (1, 0), (2, 2), (1, 2)]),
        ("drop", "keep", [(0, 1), (0, 1), (1, 0), (1, 2)]),
        ("keep", "drop", [(0, 1), (1, 1), (1, 0), (2, 2), (1, 2)]),
        ("drop", "drop", [(0, 1), (1, 0), (1, 2)]),
    ],
)
def test_self_loop_and_duplicate_policies(tmp_path, self_loops, duplicates, expected):
    g = read_edgelist(
        write(tmp_path, "sd.txt", SELF_DUP), self_loops=self_loops, duplicates=duplicates
    )
    assert edges(g) == expected
    assert (g.num_self_loops, g.num_duplicates, g.num_lines) == (2, 1, 6)


def test_undirected_symmetrisation(tmp_path):
    # "1 0" mirrors "0 1" (not doubled), "0 1" listed twice is a parallel edge, loops once
    g = read_edgelist(write(tmp_path, "u.txt", "0 1\n1 0\n0 1\n1 2\n2 2\n"), undirected=True)
    assert not g.directed
    assert Counter(edges(g)) == Counter({(0, 1): 2, (1, 0): 2, (1, 2): 1, (2, 1): 1, (2, 2): 1})
    assert edges(g) == sorted(edges(g))
    dropped = read_edgelist(
        write(tmp_path, "u.txt", "0 1\n1 0\n0 1\n1 2\n"), undirected=True, duplicates="drop"
    )
    assert edges(dropped) == [(0, 1), (1, 0), (1, 2), (2, 1)]
    assert "undirected" in g.summary()


def test_undirected_keeps_weights(tmp_path):
    g = read_edgelist(write(tmp_path, "w.txt", "0 1 0.5\n2 1 3\n"), undirected=True)
    weights = dict(zip(edges(g), g.data.edge_weight.tolist()))
    assert weights == {(0, 1): 0.5, (1, 0): 0.5, (1, 2): 3.0, (2, 1): 3.0}


def test_summary_and_repr(tmp_path):
    g = read_edgelist(write(tmp_path, "g.txt", "a b\nb c\nc c\n"))
    text = g.summary()
    for fragment in ("g.txt", "nodes    3", "3 directed", "1 self-loops", "out-degree", "remapped"):
        assert fragment in text
    assert repr(g).startswith("EdgeList(num_nodes=3, num_edges=3, directed=True")


def test_from_edges():
    g = EdgeList.from_edges([0, 2], [2, 0], node_ids=np.array([5, 6, 7]), undirected=True)
    assert g.num_nodes == 3 and edges(g) == [(0, 2), (2, 0)] and g.num_duplicates == 1
    with pytest.raises(ValueError, match=r"indices in \[0, 3\)"):
        EdgeList.from_edges([0], [3], node_ids=np.arange(3))


# ----------------------------------------------------------------------------- real edge lists


def test_soc_douban_counts_and_speed(shared_data):
    path = shared_data / "fastcover/directed/soc-douban.txt.gz"
    read_edgelist(path)  # warm up
    t0 = time.perf_counter()
    g = read_edgelist(path)
    elapsed = time.perf_counter() - t0
    assert (g.num_nodes, g.num_edges) == (154_908, 327_162)
    assert not g.remapped and g.num_self_loops == 0 and g.num_duplicates == 0
    assert elapsed < 2.0, f"read_edgelist took {elapsed:.2f} s (target: well under 1 s)"


def test_soc_wiki_elec_self_loops_and_duplicates(shared_data):
    path = shared_data / "fastcover/directed/soc-wiki-elec.txt.gz"
    g = read_edgelist(path)
    assert (g.num_nodes, g.num_lines) == (7_118, 107_071)
    assert (g.num_self_loops, g.num_duplicates) == (58, 3_333)
    expected = np.loadtxt(gzip.open(path, "rt"), dtype=np.int64).T
    assert np.array_equal(g.data.edge_index.numpy(), expected)
    u = read_edgelist(path, undirected=True, self_loops="drop", duplicates="drop")
    assert u.num_edges == 2 * (100_811 - 58)  # README: 100,811 unordered pairs, 58 loops


def test_ego_facebook(shared_data):
    path = shared_data / "snap/facebook_combined.txt.gz"
    g = read_edgelist(path)
    assert (g.num_nodes, g.num_edges) == (4_039, 88_234)
    u = read_edgelist(path, undirected=True)
    assert u.num_edges == 2 * 88_234 and u.data.is_undirected()


# ----------------------------------------------------------------------------- conversions


@pytest.fixture
def weighted(tmp_path) -> EdgeList:
    return read_edgelist(write(tmp_path, "w.txt", "b a 1.5\na c 2\nc c 0.5\nd b 1\n"))


def test_networkx_round_trip_directed(weighted):
    G = to_networkx(weighted)
    assert type(G) is nx.DiGraph and list(G.nodes) == ["b", "a", "c", "d"]
    assert G["b"]["a"]["weight"] == 1.5 and G.number_of_edges() == 4
    back = from_networkx(G)
    assert edges(back) == edges(weighted) and back.node_ids.tolist() == ["b", "a", "c", "d"]
    assert torch.equal(back.data.edge_weight, weighted.data.edge_weight)
    assert back.num_self_loops == 1


def test_networkx_round_trip_undirected_and_multi():
    G = nx.karate_club_graph()
    g = from_networkx(G)
    assert not g.directed and g.num_edges == 2 * G.number_of_edges()
    assert g.data.edge_weight is not None  # karate has weights on every edge
    H = to_networkx(g)
    assert type(H) is nx.Graph and list(H.nodes) == list(G.nodes)
    assert {frozenset(e): w for *e, w in H.edges(data="weight")} == {
        frozenset(e): w for *e, w in G.edges(data="weight")
    }
    M = nx.MultiDiGraph([(1, 2), (1, 2), (2, 3)])
    m = from_networkx(M)
    assert m.num_duplicates == 1 and m.node_ids.tolist() == [1, 2, 3]
    assert sorted(to_networkx(m).edges()) == sorted(M.edges())
    assert type(to_networkx(m)) is nx.MultiDiGraph


def test_scipy_round_trip(tmp_path):
    g = read_edgelist(write(tmp_path, "m.txt", "0 1\n0 1\n1 2\n3 3\n"))
    A = to_scipy(g)
    assert isinstance(A, sp.csr_array) and A.shape == (4, 4)
    assert A.toarray().tolist() == [[0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    back = from_scipy(A)
    assert Counter(edges(back)) == Counter(edges(g)) and back.num_nodes == 4
    assert (to_scipy(back) != A).nnz == 0
    u = to_scipy(read_edgelist(write(tmp_path, "u.txt", "0 1\n1 2\n"), undirected=True))
    assert (u != u.T).nnz == 0 and u.sum() == 4


def test_from_scipy_float_entries_are_weights():
    A = sp.csr_matrix(np.array([[0, 0.5], [1.0, 0]]))
    g = from_scipy(A)
    assert edges(g) == [(0, 1), (1, 0)] and g.data.edge_weight.tolist() == [0.5, 1.0]
    assert "edge_weight" not in from_scipy(sp.csr_array(np.eye(2))).data
    with pytest.raises(ValueError, match="square"):
        from_scipy(sp.csr_array(np.ones((2, 3))))


def test_dgl_round_trip(weighted):
    pytest.importorskip("dgl")
    G = to_dgl(weighted)
    assert G.num_nodes() == 4 and G.num_edges() == 4
    assert torch.equal(G.edata["weight"], weighted.data.edge_weight)
    back = from_dgl(G)
    assert edges(back) == edges(weighted)
    assert torch.equal(back.data.edge_weight, weighted.data.edge_weight)
    assert as_edgelist(G).num_edges == 4


def test_as_edgelist_dispatch(tmp_path, weighted):
    path = write(tmp_path, "g.txt", "0 1\n1 2\n")
    assert edges(as_edgelist(path)) == edges(as_edgelist(str(path))) == [(0, 1), (1, 2)]
    assert as_edgelist(weighted) is weighted
    sym = as_edgelist(weighted, undirected=True)
    assert not sym.directed and sym.num_edges == 7 and sym.node_ids is weighted.node_ids
    data = Data(edge_index=torch.tensor([[0, 1], [1, 2]]), num_nodes=4)
    assert as_edgelist(data).num_nodes == 4 and as_edgelist(data, undirected=True).num_edges == 4
    assert as_edgelist(nx.path_graph(3)).num_edges == 4
    assert as_edgelist(sp.csr_array(np.eye(3, k=1))).num_edges == 2
    assert type(to_networkx(data)) is nx.DiGraph and to_networkx(data).number_of_nodes() == 4
    with pytest.raises(TypeError, match="expected a path, graphrec.io.EdgeList, .*got list"):
        as_edgelist([(0, 1)])


# ----------------------------------------------------------------------------- interactions


MOVIELENS = "3\t10\t4\t100\n1\t20\t3.5\t101\n3\t20\t1\t102\n"


def test_movielens_format(tmp_path):
    log = read_interactions(write(tmp_path, "u.data", MOVIELENS))
    assert log.format == "movielens"
    assert log.user_ids.tolist() == [1, 3] and log.item_ids.tolist() == [10, 20]
    assert log.user.tolist() == [1, 0, 1] and log.item.tolist() == [0, 1, 1]
    assert log.rating.dtype == np.float32 and log.rating.tolist() == [4.0, 3.5, 1.0]
    assert log.timestamp.dtype == np.int64 and log.timestamp.tolist() == [100, 101, 102]
    assert log.to_csr().toarray().tolist() == [[0, 1], [1, 1]]
    data = log.to_bipartite_data()
    assert data.num_nodes == 4 and data.num_users == 2 and data.num_items == 2
    assert data.edge_index.shape == (2, 6) and data.is_undirected()
    assert "ratings       1 .. 4" in log.summary()


def test_movielens_double_colon_and_explicit_format(tmp_path):
    log = read_interactions(write(tmp_path, "ratings.dat", "1::5::3::9\n2::5::4::8\n"))
    assert log.format == "movielens" and log.num_interactions == 2
    log = read_interactions(write(tmp_path, "r.txt", "1 5 3\n2 6 4\n"), format="movielens")
    assert log.timestamp is None and log.rating.tolist() == [3, 4]


def test_lightgcn_format_with_empty_user(tmp_path):
    path = write(tmp_path, "train.txt", "0 5 7 9\n1\n2 7\n")
    log = read_interactions(path)
    assert log.format == "lightgcn" and log.rating is None and log.timestamp is None
    assert log.num_users == 3 and log.num_items == 3 and log.num_interactions == 4
    assert log.user.tolist() == [0, 0, 0, 2] and log.item_ids.tolist() == [5, 7, 9]
    kept = read_interactions(path, keep_ids=True)
    assert kept.num_items == 10 and kept.item.tolist() == [5, 7, 9, 7]


def test_csv_format_with_aliases_and_string_ids(tmp_path):
    text = "userId,movieId,rating,extra,timestamp\nann,m2,5,x,10\nbo,m1,4,y,11\nann,m1,3,z,12\n"
    log = read_interactions(write(tmp_path, "r.csv", text))
    assert log.format == "csv"
    assert log.user_ids.tolist() == ["ann", "bo"] and log.item_ids.tolist() == ["m2", "m1"]
    assert log.user.tolist() == [0, 1, 0] and log.item.tolist() == [0, 1, 1]
    assert log.timestamp.tolist() == [10, 11, 12]
    tsv = read_interactions(write(tmp_path, "r.tsv", "user\titem\n1\t2\n"), format="csv")
    assert tsv.rating is None and tsv.num_interactions == 1
    assert isinstance(tsv, Interactions) and "1 distinct pairs" in tsv.summary()


def test_movielens_100k(shared_data):
    log = read_interactions(shared_data / "movielens/ml-100k/u.data.gz")
    assert (log.num_users, log.num_items, log.num_interactions) == (943, 1682, 100_000)
    assert log.user_ids.tolist() == list(range(1, 944))  # index = id - 1
    counts = np.bincount(log.rating.astype(int), minlength=6)[1:]
    assert counts.tolist() == [6110, 11370, 27145, 34174, 21201]


def test_gowalla_test_split(shared_data):
    path = shared_data / "lightgcn/gowalla/test.txt.gz"
    log = read_interactions(path)
    assert log.format == "lightgcn"
    assert (log.num_users, log.num_interactions) == (29_858, 217_242)
    kept = read_interactions(path, keep_ids=True)
    assert kept.num_users == 29_858 and kept.num_items <= 40_981
    assert np.array_equal(kept.item_ids[kept.item], log.item_ids[log.item])


# ----------------------------------------------------------------------------- CTR tables


TAOBAO = CTRSchema(
    label="clk",
    categorical=[
        "userid",
        "adgroup_id",
        "pid",
        "cate_id",
        "campaign_id",
        "customer",
        "brand",
        "cms_segid",
        "cms_group_id",
        "final_gender_code",
        "age_level",
        "pvalue_level",
        "shopping_level",
        "occupation",
        "new_user_class_level",
    ],  # fmt: skip
    numeric=["price"],
    sequence={"click_sequence": "^"},
    shared_vocab={"click_sequence": "adgroup_id"},
    drop=["time_stamp"],
)


def test_taobao_train_and_test_share_the_vocabulary(shared_data):
    root = shared_data / "ctr/fuxictr_tiny_taobao"
    train = read_ctr_table(root / "train_sample.csv", TAOBAO)
    test = read_ctr_table(root / "test_sample.csv", TAOBAO, vocab=train.vocab)
    assert train.num_rows == test.num_rows == 100
    assert set(np.unique(train.labels)) <= {0.0, 1.0} and train.labels.dtype == np.float32
    assert "click_sequence" not in train.vocab  # it uses adgroup_id's codes
    assert train.vocab_size("click_sequence") == train.vocab_size("adgroup_id")
    seq, lengths = train.sequence["click_sequence"], train.sequence_lengths["click_sequence"]
    assert (
        seq.shape == (100, lengths.max())
        and (seq[np.arange(seq.shape[1]) >= lengths[:, None]] == 0).all()
    )
    first = next(i for i in range(100) if lengths[i])
    raw = (root / "train_sample.csv").read_text().splitlines()[first + 1].split(",")[-1]
    assert seq[first, : lengths[first]].tolist() == [
        train.vocab["adgroup_id"][e] for e in raw.split("^")
    ]
    assert test.vocab is train.vocab
    assert (test.categorical["adgroup_id"] == 0).sum() > 0  # unseen ad groups are OOV
    assert train.categorical["pvalue_level"].min() == 0  # empty = missing
    assert train.numeric["price"].dtype == np.float32
    assert "click_sequence" in train.summary()


def test_criteo_sample(shared_data):
    schema = CTRSchema(
        "label",
        numeric=[f"I{i}" for i in range(1, 14)],
        categorical=[f"C{i}" for i in range(1, 27)],
    )
    table = read_ctr_table(shared_data / "ctr/deepctr_samples/criteo_sample.txt", schema)
    assert table.num_rows == 200 and len(table.categorical) == 26
    assert np.isnan(table.numeric["I1"][0]) and table.numeric["I3"][0] == 260.0
    assert table.categorical["C1"][0] == 1 and table.categorical["C1"].dtype == np.int64
    assert 0 < table.labels.mean() < 1


def test_ctr_min_count_oov_and_headerless(tmp_path):
    schema = CTRSchema("y", categorical=["c"], numeric=["x"], sequence={"s": "|"})
    text = "1\ta\t0.5\tp|q\n0\tb\t\t\n0\ta\t2\tq\n"
    path = write(tmp_path, "t.tsv", text)
    table = read_ctr_table(path, schema, sep="\t", header=False, columns=["y", "c", "x", "s"])
    assert table.categorical["c"].tolist() == [1, 2, 1]
    assert table.sequence["s"].tolist() == [[1, 2], [0, 0], [2, 0]]
    assert table.sequence_lengths["s"].tolist() == [2, 0, 1]
    assert np.isnan(table.numeric["x"][1]) and table.labels.tolist() == [1, 0, 0]
    rare = read_ctr_table(
        path, schema, sep="\t", header=False, columns=["y", "c", "x", "s"], min_count=2
    )
    assert rare.categorical["c"].tolist() == [1, 0, 1] and rare.vocab["s"] == {"q": 1}
    assert rare.vocab_size("c") == 2
