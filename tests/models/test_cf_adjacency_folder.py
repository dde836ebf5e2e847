"""A LightGCN-format folder in the adjacency form (``s_adj_mat.npz`` + ``test.txt``, no
``train.txt``) as a CF dataset: the same graph as the text form."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from graphrec.cli import main
from graphrec.errors import DatasetNotFoundError
from graphrec.models.cf.data import load_cf_graph

TRAIN = {0: [0, 1, 2, 3], 1: [1, 2, 4], 2: [0, 3, 5, 6], 3: [2, 4, 6]}
TEST = {0: [4], 1: [0, 7], 2: [1], 3: [5]}
USERS, ITEMS = 4, 8  # item 7 occurs in test only


def write_lists(path, lists: dict[int, list[int]]) -> None:
    path.write_text("".join(" ".join(map(str, [u, *items])) + "\n" for u, items in lists.items()))


def write_adjacency(path, lists: dict[int, list[int]]) -> None:
    """LightGCN's s_adj_mat.npz: the symmetric-normalised (U + I) x (U + I) adjacency."""
    rows = [u for u, items in lists.items() for _ in items]
    cols = [i for items in lists.values() for i in items]
    r = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(USERS, ITEMS))
    adj = sp.bmat([[None, r], [r.T, None]]).tocsr()
    deg = np.asarray(adj.sum(1)).ravel()
    scale = sp.diags(np.where(deg > 0, deg, 1.0) ** -0.5)
    sp.save_npz(path, (scale @ adj @ scale).tocsr())


@pytest.fixture
def folders(tmp_path):
    text, adjacency = tmp_path / "text", tmp_path / "adjacency"
    for folder in (text, adjacency):
        folder.mkdir()
        write_lists(folder / "test.txt", TEST)
    write_lists(text / "train.txt", TRAIN)
    write_adjacency(adjacency / "s_adj_mat.npz", TRAIN)
    return text, adjacency


def test_adjacency_form_gives_the_text_forms_graph(folders):
    text, adjacency = (load_cf_graph(f, valid_fraction=0.3, seed=2) for f in folders)
    assert (adjacency.num_users, adjacency.num_items) == (USERS, ITEMS)
    for split in ("train", "valid", "test"):
        a, b = getattr(text, split), getattr(adjacency, split)
        assert a.shape == b.shape
        np.testing.assert_array_equal(a.toarray(), b.toarray())
    assert text.valid.nnz > 0
    expected = np.zeros((USERS, ITEMS), np.float32)
    for user, items in TRAIN.items():
        expected[user, items] = 1.0
    np.testing.assert_array_equal((adjacency.train + adjacency.valid).toarray(), expected)


def test_incomplete_folder_names_both_forms(tmp_path):
    write_lists(tmp_path / "test.txt", TEST)
    with pytest.raises(DatasetNotFoundError) as err:
        load_cf_graph(tmp_path)
    message = str(err.value)
    assert "train.txt" in message and "s_adj_mat.npz and test.txt" in message
    (tmp_path / "test.txt").unlink()
    write_adjacency(tmp_path / "s_adj_mat.npz", TRAIN)
    with pytest.raises(DatasetNotFoundError, match="test.txt"):
        load_cf_graph(tmp_path)


def test_cli_trains_on_an_adjacency_folder(capsys, folders, tmp_path):
    out = tmp_path / "m.pt"
    code = main(["cf", "train", "--dataset", str(folders[1]), "--method", "gf-cf", "--k", "2",
                 "--valid-fraction", "0", "--out", str(out), "--json", "--quiet"])  # fmt: skip
    stdout, _ = capsys.readouterr()
    assert code == 0 and json.loads(stdout)["method"] == "gf-cf"
