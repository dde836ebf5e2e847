"""Tests of graphrec.datasets: real-data counts, missing-file errors, synthetic generators."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graphrec.datasets import (
    TAOBAO_SCHEMA,
    ego_facebook,
    erdos_renyi_digraph,
    fastcover_graph,
    list_fastcover_graphs,
    load_amazon_electronics_users,
    load_gowalla,
    load_movielens100k,
    load_taobao_tiny,
    powerlaw_digraph,
    snap_graph,
)
from graphrec.errors import DatasetNotFoundError, InputFormatError

# ----------------------------------------------------------------------------- missing files


@pytest.mark.parametrize(
    ("load", "missing"),
    [
        (load_movielens100k, ["u.data or u.data.gz", "u.item or u.item.gz", "u.user or u.user.gz"]),
        (load_gowalla, ["s_adj_mat.npz", "test.txt or test.txt.gz"]),
        (load_amazon_electronics_users, ["users.tsv or users.tsv.gz"]),
        (
            load_taobao_tiny,
            ["train_sample.csv or train_sample.csv.gz", "test_sample.csv or test_sample.csv.gz"],
        ),
    ],
)
def test_missing_files_are_listed(tmp_path, load, missing):
    with pytest.raises(DatasetNotFoundError) as info:
        load(tmp_path)
    assert info.value.missing == missing
    message = str(info.value)
    for name in missing:
        assert f"  - {tmp_path / name}" in message
    assert "never downloads" in message


def test_missing_files_only_lists_absent_ones(tmp_path):
    (tmp_path / "u.data.gz").write_bytes(b"")
    (tmp_path / "u.user").write_text("")
    with pytest.raises(DatasetNotFoundError) as info:
        load_movielens100k(tmp_path, fold=3)
    assert info.value.missing == [
        "u.item or u.item.gz",
        "u3.base or u3.base.gz",
        "u3.test or u3.test.gz",
    ]
    assert "grouplens.org" in str(info.value)


# ----------------------------------------------------------------------------- MovieLens


@pytest.fixture(scope="module")
def movielens(shared_data):
    return load_movielens100k(shared_data / "movielens/ml-100k", fold=1)


def test_movielens100k_counts(movielens):
    ml = movielens
    assert (ml.num_users, ml.num_items, ml.num_ratings) == (943, 1682, 100_000)
    counts = np.bincount(ml.ratings.rating.astype(int), minlength=6)[1:]
    assert counts.tolist() == [6110, 11370, 27145, 34174, 21201]
    assert ml.ratings.user.min() == 0 and ml.ratings.user.max() == 942
    assert ml.ratings.timestamp.dtype == np.int64
    assert ml.ratings.user_ids[0] == 1 and ml.ratings.item_ids[-1] == 1682


def test_movielens100k_side_information(movielens):
    ml = movielens
    assert ml.item_genres.shape == (1682, 19) and ml.item_genres.dtype == np.uint8
    toy_story = [ml.genres[j] for j in np.flatnonzero(ml.item_genres[0])]
    assert ml.item_titles[0] == "Toy Story (1995)"
    assert toy_story == ["Animation", "Children's", "Comedy"]
    assert ml.release_year[0] == 1995
    assert np.flatnonzero(ml.release_year < 0).tolist() == [266]  # id 267, "unknown"
    assert ml.release_year[ml.release_year >= 0].min() == 1922
    assert any("é" in t for t in ml.item_titles)  # latin-1 decoded
    assert (ml.user_age[0], ml.user_gender[0], ml.user_zip[0]) == (24, 0, "85711")
    assert ml.occupations[ml.user_occupation[0]] == "technician"
    assert len(ml.occupations) == 21 and int(ml.user_gender.sum()) == 273
    assert "943" in ml.summary() and "fold 1" in ml.summary()


def test_movielens100k_fold_partitions_ratings(movielens):
    ml = movielens
    assert (ml.train.num_interactions, ml.test.num_interactions) == (80_000, 20_000)
    assert (ml.train.num_users, ml.train.num_items) == (943, 1682)

    def keys(log):
        return np.sort(log.user.astype(np.int64) * 10_000 + log.item)

    both = np.sort(np.concatenate([keys(ml.train), keys(ml.test)]))
    assert np.array_equal(both, keys(ml.ratings))


def test_movielens100k_plain_files_and_errors(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t5\t881250949\n2\t1\t3\t881250950\n")
    genres = "|".join(["0"] * 18 + ["1"])
    (tmp_path / "u.item").write_bytes(
        f"1|Café (1994)|01-Jan-1994||http://x|{genres}\n2|unknown||||{genres}\n".encode("latin-1")
    )
    (tmp_path / "u.user").write_text("1|30|F|writer|12345\n2|40|M|other|T8H1N\n")
    ml = load_movielens100k(tmp_path)
    assert ml.item_titles == ["Café (1994)", "unknown"]
    assert ml.release_year.tolist() == [1994, -1]
    assert ml.ratings.user.tolist() == [0, 1] and ml.ratings.item.tolist() == [1, 0]
    assert ml.train is None and ml.test is None
    with pytest.raises(ValueError, match="fold must be 1..5"):
        load_movielens100k(tmp_path, fold=6)
    (tmp_path / "u.data").write_text("1\t3\t5\t881250949\n")
    with pytest.raises(InputFormatError, match=r"item ids span 3..3; expected item ids 1..2"):
        load_movielens100k(tmp_path)
    (tmp_path / "u.user").write_text("1|30|F|writer\n")
    with pytest.raises(InputFormatError, match=r"u.user, line 1: .*has 4 '\|'-separated fields"):
        load_movielens100k(tmp_path)


# ----------------------------------------------------------------------------- Gowalla


def test_gowalla_lightgcn_counts(shared_data):
    g = load_gowalla(shared_data / "lightgcn/gowalla")
    assert (g.num_users, g.num_items) == (29_858, 40_981)
    assert (g.num_train, g.num_test) == (810_128, 217_242)
    assert g.overlap == 0
    assert isinstance(g.train, sp.csr_array) and set(np.unique(g.train.data)) == {1.0}
    assert np.diff(g.test.indptr).min() >= 1  # every user has test items
    data = g.to_bipartite_data()
    assert data.num_nodes == 29_858 + 40_981 and data.edge_index.shape == (2, 2 * 810_128)
    assert "1,027,370" in g.summary()


def test_gowalla_rejects_non_bipartite_adjacency(tmp_path):
    adj = sp.csr_matrix(np.ones((5, 5), dtype=np.float32))
    sp.save_npz(tmp_path / "s_adj_mat.npz", adj)
    (tmp_path / "test.txt").write_text("0 1\n1 0\n")
    with pytest.raises(InputFormatError, match="user-user or item-item entries"):
        load_gowalla(tmp_path)
    adj = sp.csr_matrix((np.ones(2, np.float32), ([0, 2], [2, 0])), shape=(5, 5))
    sp.save_npz(tmp_path / "s_adj_mat.npz", adj)
    (tmp_path / "test.txt").write_text("0 0\n1 0 2\n")
    g = load_gowalla(tmp_path)
    assert (g.num_users, g.num_items, g.num_train, g.num_test, g.overlap) == (2, 3, 1, 3, 1)


# ----------------------------------------------------------------------------- Amazon


@pytest.fixture(scope="module")
def amazon(shared_data):
    return load_amazon_electronics_users(shared_data / "amazon_electronics_users")


def test_amazon_electronics_counts(amazon):
    a = amazon
    assert (a.num_rows, a.num_users, a.num_items) == (99_710, 1_859, 29_148)
    assert round(float(a.labels.mean()), 3) == 0.555
    assert a.item_vocab[a.item[:3] - 1].tolist() == [1052, 1827, 31180]  # first lines
    assert a.vocab_size == a.item_vocab.size + 1 and a.history.min() >= 1
    assert np.all(np.diff(a.user) >= 0)
    rows = a.user_rows(0)
    assert a.user_ids[0] == 1 and (a.user[rows] == 0).all()
    per_user = np.diff(a.user_offsets)
    assert np.median(per_user) == 45


def test_amazon_history_grows_within_each_user(amazon):
    a = amazon
    length = np.diff(a.history_offsets)
    same_user = a.user[1:] == a.user[:-1]
    assert (length[1:][same_user] >= length[:-1][same_user]).all()
    history, lengths = a.padded_history(np.arange(5))
    assert lengths.tolist() == [0, 1, 1, 2, 3]
    raw = a.item_vocab[history[4, :3].numpy() - 1]
    assert raw.tolist() == [1052, 31180, 1161] and history.dtype == torch.int64
    short, short_len = a.padded_history(np.array([4, 0]), max_len=2)
    assert short.tolist() == [[history[4, 1].item(), history[4, 2].item()], [0, 0]]
    assert short_len.tolist() == [2, 0]


def test_amazon_holdout_by_position(amazon):
    a = amazon
    per_user = np.diff(a.user_offsets)
    train, test = a.holdout(test_fraction=0.2)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(a.num_rows))
    n_test = np.bincount(a.user[test], minlength=a.num_users)
    expected = np.minimum(np.ceil(0.2 * per_user), per_user - 1)
    assert np.array_equal(n_test, expected)
    last_train = np.zeros(a.num_users, dtype=np.int64)
    np.maximum.at(last_train, a.user[train], train)
    first_test = np.full(a.num_users, a.num_rows)
    np.minimum.at(first_test, a.user[test], test)
    assert (last_train < first_test).all()  # test rows are each user's last ones
    train1, test1 = a.holdout(last_n=1)
    assert test1.size == (per_user > 1).sum()
    with pytest.raises(ValueError, match="exactly one"):
        a.holdout(test_fraction=0.1, last_n=1)


def test_amazon_malformed_line(tmp_path):
    with gzip.open(tmp_path / "users.tsv.gz", "wt") as fh:
        fh.write("1\t1\t5\t0\n0\t1\t7\n")
    with pytest.raises(InputFormatError, match=r"line 2: .*has 3 tab-separated fields"):
        load_amazon_electronics_users(tmp_path)
    with gzip.open(tmp_path / "users.tsv.gz", "wt") as fh:
        fh.write("1\t1\t5\t4,x\n")
    with pytest.raises(InputFormatError, match=r"line 1: .*non-integer field"):
        load_amazon_electronics_users(tmp_path)


# ----------------------------------------------------------------------------- Taobao


def test_taobao_tiny(shared_data):
    root = shared_data / "ctr/fuxictr_tiny_taobao"
    t = load_taobao_tiny(root)
    header = (root / "train_sample.csv").read_text().splitlines()[0].split(",")
    assert sorted(TAOBAO_SCHEMA.columns) == sorted(header)
    assert (t.train.num_rows, t.test.num_rows) == (100, 100)
    assert float(t.train.labels.sum()) == 4 and float(t.test.labels.sum()) == 4
    assert t.test.vocab is t.train.vocab
    assert t.train.vocab_size("click_sequence") == t.train.vocab_size("adgroup_id")
    assert t.train.sequence["click_sequence"].max() < t.train.vocab_size("adgroup_id")
    assert t.train.numeric["price"][0] == pytest.approx(3.9)
    assert "test uses the train vocabulary" in t.summary()


# ----------------------------------------------------------------------------- graphs


def test_fastcover_graphs(shared_data):
    root = shared_data / "fastcover"
    names = list_fastcover_graphs(root)
    assert len(names["directed"]) == 10 and len(names["undirected"]) == 23
    douban = fastcover_graph(root, "soc-douban")
    assert douban.directed and (douban.num_nodes, douban.num_edges) == (154_908, 327_162)
    enron = fastcover_graph(root, "Enron")  # both directions stored in the file
    assert not enron.directed
    assert (enron.num_nodes, enron.num_edges, enron.num_duplicates) == (36_692, 367_662, 183_831)
    advogato = fastcover_graph(root, "directed/soc-advogato", self_loops="drop")
    assert advogato.num_self_loops == 3995 and advogato.num_edges == 51_332 - 3995


def test_fastcover_missing_graph_lists_candidates(shared_data, tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        fastcover_graph(shared_data / "fastcover", "no-such-graph")
    assert info.value.missing[:2] == ["no-such-graph.txt", "no-such-graph.txt.gz"]
    assert "undirected/no-such-graph.txt.gz" in info.value.missing
    assert "soc-douban" in str(info.value)
    with pytest.raises(DatasetNotFoundError, match="No FastCover graphs"):
        fastcover_graph(tmp_path, "x")


def test_ego_facebook_embedded_and_snap_copy_agree(shared_data):
    g = ego_facebook()
    assert not g.directed and (g.num_nodes, g.num_edges) == (4039, 2 * 88_234)
    assert ego_facebook(undirected=False).num_edges == 88_234
    snap = snap_graph(shared_data / "snap", "facebook_combined", undirected=True)
    assert torch.equal(snap.data.edge_index, g.data.edge_index)
    with pytest.raises(DatasetNotFoundError, match="facebook_combined.txt.gz"):
        snap_graph(shared_data, "facebook_combined")


# ----------------------------------------------------------------------------- synthetic


def _check_simple(data, n):
    row, col = data.edge_index.numpy()
    keys = row * n + col
    assert data.num_nodes == n and data.edge_index.dtype == torch.int64
    assert (row != col).all() and (np.diff(keys) > 0).all()  # no loops, sorted, distinct
    return row, col


def test_powerlaw_digraph_determinism_and_degrees():
    n, avg = 100_000, 10.0
    a = powerlaw_digraph(n, avg, exponent=2.5, seed=7)
    assert torch.equal(a.edge_index, powerlaw_digraph(n, avg, exponent=2.5, seed=7).edge_index)
    assert not torch.equal(a.edge_index, powerlaw_digraph(n, avg, seed=8).edge_index)
    row, col = _check_simple(a, n)
    assert row.size == n * avg
    for ends in (row, col):
        degree = np.sort(np.bincount(ends, minlength=n))[::-1]
        assert degree[0] > 50 * avg  # heavy tail
        rank = np.arange(1, degree.size + 1)
        top = slice(10, 5000)  # rank-degree slope -1 / (gamma - 1) = -2/3
        slope = np.polyfit(np.log(rank[top]), np.log(degree[top]), 1)[0]
        assert slope == pytest.approx(-2 / 3, abs=0.08)
    steeper = powerlaw_digraph(n, avg, exponent=3.5, seed=7)
    assert np.bincount(steeper.edge_index[0]).max() < np.bincount(row).max()


def test_powerlaw_digraph_dense_and_errors():
    data = powerlaw_digraph(40, 19.5, seed=0)  # half of all ordered pairs
    assert _check_simple(data, 40)[0].size == 780
    with pytest.raises(ValueError, match="exponent must be > 2"):
        powerlaw_digraph(10, 2, exponent=2.0)
    with pytest.raises(ValueError, match="avg_degree must be in"):
        powerlaw_digraph(10, 5)


def test_erdos_renyi_digraph_statistics():
    n, p = 20_000, 5e-4
    g = erdos_renyi_digraph(n, p, seed=3)
    assert torch.equal(g.edge_index, erdos_renyi_digraph(n, p, seed=3).edge_index)
    row, col = _check_simple(g, n)
    expected = p * n * (n - 1)
    assert abs(row.size - expected) < 4 * np.sqrt(expected)
    out_degree = np.bincount(row, minlength=n)
    assert out_degree.var() == pytest.approx(p * (n - 1), rel=0.1)  # binomial variance
    assert np.bincount(col, minlength=n).mean() == pytest.approx(p * (n - 1), rel=0.02)
    same = erdos_renyi_digraph(n, avg_degree=p * (n - 1), seed=3)
    assert torch.equal(same.edge_index, g.edge_index)


def test_erdos_renyi_digraph_extremes_and_errors():
    assert erdos_renyi_digraph(30, 1.0, seed=0).edge_index.shape == (2, 30 * 29)
    assert erdos_renyi_digraph(30, 0.0, seed=0).edge_index.shape == (2, 0)
    with pytest.raises(ValueError, match="exactly one of p and avg_degree"):
        erdos_renyi_digraph(10)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        erdos_renyi_digraph(10, avg_degree=20)
    with pytest.raises(ValueError, match="n must be at least 2"):
        erdos_renyi_digraph(1, 0.5)


def test_ego_facebook_from_a_clone_s_parent_folder(tmp_path):
    """A script beside a clone folder named ``graphrec`` still finds the embedded data."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "graphrec").symlink_to(repo)
    script = tmp_path / "script.py"
    script.write_text(
        "from graphrec.datasets import ego_facebook\nprint(ego_facebook().num_nodes)\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["4039"]
