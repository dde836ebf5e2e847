"""A LightGCN-format folder (``train.txt`` / ``test.txt``) as a CF dataset, and the LightGCN
paper's evaluation protocol (``protocol="paper"``, ``--protocol paper``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from graphrec.cli import main
from graphrec.errors import ConfigError, DatasetNotFoundError, GraphrecError, InputFormatError
from graphrec.models.cf import CFConfig, CFTrainer
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


@pytest.fixture
def random_folder(tmp_path):
    """40 users x 30 items, two taste groups, 8 training and 2 test items per user."""
    rng = np.random.default_rng(0)
    train, test = {}, {}
    for u in range(40):
        group = u % 2
        items = rng.choice(np.arange(group * 15, group * 15 + 15), size=10, replace=False)
        train[u], test[u] = items[:8].tolist(), items[8:].tolist()
    write(tmp_path, "train.txt", train)
    write(tmp_path, "test.txt", test)
    return tmp_path


def train(graph, protocol: str) -> CFTrainer:
    config = CFConfig(backbone="mf", epochs=6, batch_size=64, lr=0.05, patience=0,
                      protocol=protocol, seed=1)  # fmt: skip
    return CFTrainer(graph, config).fit()


def test_paper_protocol_reports_best_test_evaluation(random_folder):
    graph = load_cf_graph(random_folder, valid_fraction=0.2)
    paper, plain = train(graph, "paper"), train(graph, "validation")
    # the same training, validation and selected weights: test evaluations change nothing
    assert [r["valid"] for r in paper.history] == [r["valid"] for r in plain.history]
    assert paper.best_epoch == plain.best_epoch
    for name, value in plain.model.state_dict().items():
        assert torch.equal(paper.model.state_dict()[name], value)
    assert plain.best_test() is None and all("test" not in r for r in plain.history)
    epoch, metrics = paper.best_test()
    recalls = [r["test"]["recall@20"] for r in paper.history]
    assert len(recalls) == 6 and metrics["recall@20"] == max(recalls)
    assert epoch == 1 + recalls.index(max(recalls))
    assert metrics == paper.history[epoch - 1]["test"]
    assert metrics["recall@20"] >= paper.evaluate("test")["recall@20"]


def test_protocol_checked():
    with pytest.raises(ConfigError, match="protocol"):
        CFConfig(protocol="test")


def test_cli_protocol_paper(capsys, random_folder, tmp_path):
    out = tmp_path / "mf.pt"
    code = main(["cf", "train", "--dataset", str(random_folder), "--backbone", "mf",
                 "--epochs", "3", "--batch-size", "64", "--protocol", "paper", "--out", str(out),
                 "--json", "--quiet"])  # fmt: skip
    stdout, _ = capsys.readouterr()
    assert code == 0
    result = json.loads(stdout)
    paper = result["paper_protocol"]
    assert 1 <= paper["best_test_epoch"] <= 3 and set(paper["test"]) == set(result["test"])
    assert paper["test"]["recall@20"] >= result["test"]["recall@20"]
    assert torch.load(out, weights_only=True)["paper_protocol"] == paper
    code = main(["cf", "train", "--dataset", str(random_folder), "--method", "gf-cf",
                 "--protocol", "paper", "--out", str(out), "--force", "--quiet"])  # fmt: skip
    _, stderr = capsys.readouterr()
    assert code != 0 and "--protocol" in stderr
