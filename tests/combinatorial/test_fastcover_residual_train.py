"""FastCover training on residuals (``TrainConfig.residual``) and the covered-flag input."""

from __future__ import annotations

import shlex

import numpy as np
import pytest
import torch

import combinatorial.gnn.train as train_module
from combinatorial import adjacency
from combinatorial.coverage import coverage, covered_mask
from combinatorial.gnn import FastCover
from combinatorial.gnn.inference import fastcover_seeds
from combinatorial.gnn.loss import cover_index
from combinatorial.gnn.train import (
    Graph,
    TrainConfig,
    monotone_init_,
    residual_targets,
    train_fastcover,
    validate,
)
from graphrec.cli import _build_parser
from graphrec.errors import ConfigError

TINY = {
    "graphs": ["fastcover/directed/train.txt"],
    "val_graphs": ["fastcover/undirected/val.txt"],
    "ks": [1, 4],
    "train_ks": [1, 4, 8],
    "max_epochs": 2,
    "progress": False,
}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    edges = np.random.default_rng(1).integers(0, 60, size=(200, 2))
    for name, rows in (("directed/train.txt", edges), ("undirected/val.txt", edges[:120])):
        path = root / "fastcover" / name
        path.parent.mkdir(parents=True)
        np.savetxt(path, rows, fmt="%d")
    return root


def _path_graph(n: int = 6) -> Graph:
    edge_index = torch.tensor([list(range(n - 1)), list(range(1, n))])
    return Graph("path", edge_index, n, adjacency(edge_index, n), 0.0)


def test_residual_targets_hand_case():
    g = _path_graph()  # 0 -> 1 -> ... -> 5
    g.greedy_order = torch.tensor([1, 4])  # K = 2: the prefix is always [1]; d = 1 covers 1, 2
    full = cover_index(g.adj, 1)
    weight, index = residual_targets(g, full, None, 1, np.random.default_rng(0))
    assert weight.tolist() == [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert index.t().tolist() == [c for c in full.t().tolist() if c[1] not in (1, 2)]
    sampled = cover_index(g.adj, 1, np.array([2, 3]))  # slot 0 = node 2 (covered), 1 = node 3
    _, index = residual_targets(g, sampled, np.array([2, 3]), 1, np.random.default_rng(0))
    assert index.t().tolist() == [[2, 1], [3, 1]]  # node 3 and its coverer 2


def _spy(monkeypatch) -> list[tuple[Graph, torch.Tensor, torch.Tensor | None]]:
    calls = []
    real = train_module._graph_loss

    def graph_loss(model, graph, index, num_targets, config, target_weight=None):
        calls.append((graph, index, target_weight))
        return real(model, graph, index, num_targets, config, target_weight)

    monkeypatch.setattr(train_module, "_graph_loss", graph_loss)
    return calls


def test_off_never_builds_a_residual(root, tmp_path, monkeypatch):
    calls = _spy(monkeypatch)

    def fail(*args):
        raise AssertionError("residual_targets called with residual = 0")

    monkeypatch.setattr(train_module, "residual_targets", fail)
    entry = train_fastcover(1, tmp_path, data_root=root, **TINY)
    assert calls and all(w is None for _, _, w in calls)
    assert "residual" not in entry["loss"] and "residual_input" not in entry["config"]
    assert "--residual" not in entry["command"]


def test_on_masks_covered_targets(root, tmp_path, monkeypatch):
    calls = _spy(monkeypatch)
    entry = train_fastcover(2, tmp_path, data_root=root, residual=1.0, **TINY)
    assert entry["loss"]["residual"]["probability"] == 1.0 and calls
    for g, index, weight in calls:
        order = g.greedy_order.numpy()
        prefixes = [covered_mask(g.adj, order[:j], 2) for j in range(1, len(order))]
        covered = weight.numpy() == 0
        assert covered.any() and any(np.array_equal(covered, c) for c in prefixes)
        assert not covered[index[1]].any()  # all targets here: slot = node, none covered


def test_residual_input_starts_as_the_model_without_it():
    g = _path_graph()
    weight = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    flagged = FastCover(features="degree", residual_input=True)
    monotone_init_(flagged, 3)
    plain = FastCover(**{k: v for k, v in flagged.config().items() if k != "residual_input"})
    state = flagged.state_dict()
    state["convs.0.lin.weight"] = state["convs.0.lin.weight"][:, :3]
    state["convs.0.att"] = torch.cat([state["convs.0.att"][:3], state["convs.0.att"][4:7]])
    plain.load_state_dict(state)
    assert flagged.config()["residual_input"] and "residual_input" not in plain.config()
    assert torch.equal(flagged(g.edge_index, 6, weight), plain(g.edge_index, 6, weight))
    with torch.no_grad():
        flagged.convs[0].lin.weight[:, 3] = 1.0  # now the flag column counts
    assert not torch.equal(flagged(g.edge_index, 6, weight), plain(g.edge_index, 6, weight))
    assert torch.equal(flagged(g.edge_index, 6), flagged(g.edge_index, 6, torch.ones(6)))


def test_config_checks_and_command_round_trip():
    with pytest.raises(ConfigError, match="residual"):
        TrainConfig(d=1, residual=1.5)
    with pytest.raises(ConfigError, match="residual_input"):
        TrainConfig(d=1, residual_input=True)
    command = TrainConfig(d=1, residual=0.5, residual_input=True).command("/tmp/out")
    assert "--residual 0.5 --residual-input" in command
    args = _build_parser().parse_args(["fastcover train", *shlex.split(command)[3:]])
    assert (args.residual, args.residual_input) == (0.5, True)


def test_validate_with_rounds_and_val_rounds_training(root, tmp_path):
    edge_index = torch.from_numpy(np.random.default_rng(2).integers(0, 60, size=(2, 150)))
    g = Graph("val", edge_index, 60, adjacency(edge_index, 60), 0.0)
    g.greedy_cover = {1: 5, 4: 20}  # any positive reference: the ratios are checked as such
    model = FastCover(features="degree")
    monotone_init_(model, 2)
    got = validate(model, [g], 2, rounds=2)
    want = [coverage(g.adj, fastcover_seeds(g.edge_index, 60, k, 2, model=model, rounds=2), 2) / c
            for k, c in g.greedy_cover.items()]  # fmt: skip
    assert got["mean"] == pytest.approx(np.mean(want))
    entry = train_fastcover(2, tmp_path, data_root=root, val_rounds=2, **TINY)
    assert entry["validation_rounds"] == 2 and "--val-rounds 2" in entry["command"]
