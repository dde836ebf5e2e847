"""A LightGCN-format folder (``train.txt`` / ``test.txt``) as a CF dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graphrec.cli import main
from graphrec.errors import DatasetNotFoundError, GraphrecError, InputFormatError
from graphrec.models.cf.data import load_cf_graph

TRAIN = {0: [0, 1, 2, 3], 1: [1, 2, 4], 2: [0, 3, 5, 6], 3: [2, 4, 6]}
TEST = {0: [4], 1: [0, 7], 2: [1], 3: [5]}


def write(folder, name: str, lists: dict[int, list[int]]) -> None:
    lines = (" ".join(map(str, [u, *items])) for u, items in lists.items())
    (folder / name).write_text("\n".join(lines) + "\n")


@pytest.fixture
def folder(tmp_path):
    write(tmp_path, "train.txt", TRAIN)
    write(tmp_path, "test.txt", TEST)
    return tmp_path


def dense(lists: dict[int, list[int]], shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=np.float32)
    for user, items in lists.items():
        out[user, items] = 1.0
    return out


def test_folder_ids_index_one_space(folder):
    graph = load_cf_graph(folder, valid_fraction=0.0)
    # item 7 occurs only in test: the id space is the union of both files
    assert (graph.num_users, graph.num_items) == (4, 8)
    np.testing.assert_array_equal(graph.train.toarray(), dense(TRAIN, (4, 8)))
    np.testing.assert_array_equal(graph.test.toarray(), dense(TEST, (4, 8)))
    assert graph.valid.nnz == 0


def test_folder_validation_carved_from_train(folder):
    graph = load_cf_graph(str(folder), valid_fraction=0.5, seed=3)
    both = (graph.train + graph.valid).toarray()
    np.testing.assert_array_equal(both, dense(TRAIN, (4, 8)))
    assert graph.valid.nnz > 0 and graph.train.multiply(graph.valid).nnz == 0
    np.testing.assert_array_equal(graph.test.toarray(), dense(TEST, (4, 8)))


def test_malformed_line_names_file_and_line(folder):
    (folder / "test.txt").write_text("0 4\n1 x 7\n")
    with pytest.raises(InputFormatError) as err:
        load_cf_graph(folder)
    message = str(err.value)
    assert "test.txt" in message and "line 2" in message


def test_missing_file_named(tmp_path):
    write(tmp_path, "train.txt", TRAIN)
    with pytest.raises(DatasetNotFoundError, match="test.txt"):
        load_cf_graph(tmp_path)


def test_folder_refuses_test_and_min_rating(folder):
    with pytest.raises(GraphrecError, match="LightGCN-format folder"):
        load_cf_graph(folder, min_rating=4)
    with pytest.raises(GraphrecError, match="LightGCN-format folder"):
        load_cf_graph(folder, test=folder / "test.txt")


def test_cli_trains_a_filter_on_a_folder(capsys, folder, tmp_path):
    out = tmp_path / "m.pt"
    code = main(["cf", "train", "--dataset", str(folder), "--method", "gf-cf", "--k", "2",
                 "--valid-fraction", "0", "--out", str(out), "--json", "--quiet"])  # fmt: skip
    stdout, _ = capsys.readouterr()
    assert code == 0 and json.loads(stdout)["method"] == "gf-cf"
    code = main(["cf", "train", "--dataset", str(folder), "--method", "gf-cf", "--test",
                 str(folder / "test.txt"), "--out", str(out), "--force", "--quiet"])  # fmt: skip
    _, stderr = capsys.readouterr()
    assert code != 0 and "--test" in stderr
