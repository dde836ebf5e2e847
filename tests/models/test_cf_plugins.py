"""A CF loss and a CF backbone added through the registry train with CFTrainer and the CLI.

The loss is the example of ``docs/architecture.md`` ("A CF loss"); the backbone is defined here.
Both are registered for one test and unregistered afterwards.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from graphrec.cli import main
from graphrec.errors import ConfigError
from graphrec.graphs import build_bipartite
from graphrec.models.cf import CFBackbone, CFConfig, CFTrainer
from graphrec.registry import CF_BACKBONES, CF_LOSSES

torch.set_num_threads(1)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


class TwinMF(CFBackbone):
    """Users and items share one table of ``max(U, I)`` rows (a toy backbone)."""

    def __init__(self, num_users: int, num_items: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_users, self.num_items, self.embedding_dim = num_users, num_items, embedding_dim
        self.table = nn.Embedding(max(num_users, num_items), embedding_dim)
        self.reset_parameters()

    @classmethod
    def from_config(cls, graph, config) -> TwinMF:
        return cls(graph.num_users, graph.num_items, config.embedding_dim)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.table.weight, std=0.1)

    def ego_embeddings(self):
        return self.table.weight[: self.num_users], self.table.weight[: self.num_items]

    def forward(self):
        return self.ego_embeddings()


@pytest.fixture
def plugins():
    """Register the docs' ``pointwise`` loss and ``twin`` (TwinMF); unregister them after."""
    text = DOCS.read_text()
    section = text[text.index("## Where to add a model / strategy / solver") :]
    code = re.search(r"```python\n(.*?)```", section[section.index("A CF loss") :], re.S)
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(code.group(1), f"{DOCS}: A CF loss", "exec", dont_inherit=True), namespace)
    CF_BACKBONES.register("twin", TwinMF)
    yield namespace["Pointwise"]
    CF_LOSSES.unregister("pointwise")
    CF_BACKBONES.unregister("twin")
    assert CF_LOSSES.names() == ["bpr", "infonce", "hdccf"]
    assert CF_BACKBONES.names() == ["mf", "lightgcn"]


@pytest.fixture
def graph():
    """40 users x 30 items in two taste groups (8 items each: 7 train, 1 test), 20% of each
    user's training items for validation."""
    rng = np.random.default_rng(0)
    train, test = np.zeros((2, 40, 30), dtype=np.float32)
    for u in range(40):
        group = u % 2
        items = rng.choice(np.arange(group * 15, group * 15 + 15), 8, replace=False)
        train[u, items[1:]], test[u, items[0]] = 1, 1
    return build_bipartite(sp.csr_array(train), sp.csr_array(test), valid_fraction=0.2, seed=0)


def test_plugins_train_through_cftrainer(plugins, graph):
    cfg = CFConfig(backbone="twin", loss="pointwise", embedding_dim=8, batch_size=64, lr=0.05,
                   reg=0.0, temperature=0.5, epochs=5, patience=0, seed=0)  # fmt: skip
    trainer = CFTrainer(graph, cfg)
    assert isinstance(trainer.model, TwinMF) and isinstance(trainer.objective, plugins)
    # The sampler provides what the loss asks for: one explicit negative, no known mask.
    assert trainer.sampler.num_negatives == cfg.negatives == 1 and not trainer.sampler.with_known
    batch = next(trainer.sampler.epoch(0))
    assert batch.known is None and batch.neg_items.shape == (64, 1)
    # The trainer's batch loss is the docs' formula on the toy backbone's embeddings (reg = 0).
    u = trainer.model.table.weight[batch.users] / 0.5
    pos = (u * trainer.model.table.weight[batch.items]).sum(-1)
    neg = (u * trainer.model.table.weight[batch.neg_items[:, 0]]).sum(-1)
    expected = -F.logsigmoid(pos).mean() - F.logsigmoid(-neg[batch.neg_valid[:, 0]]).mean()
    torch.testing.assert_close(trainer._loss(batch), expected)
    before = trainer.evaluate("valid")["recall@20"]
    trainer.fit()
    losses = [record["loss"] for record in trainer.history]
    assert len(losses) == 5 and losses[-1] < losses[0]
    assert trainer.best_metric > before  # the two taste groups are learnt
    with pytest.raises(ConfigError, match="'pointwise' needs num_negatives >= 1; got 0"):
        CFConfig(loss="pointwise", num_negatives=0)


def _log(tmp_path: Path, graph) -> Path:
    users, items = graph.train.nonzero()
    path = tmp_path / "log.csv"
    path.write_text("".join(f"{u} {i} 5\n" for u, i in zip(users, items)))
    return path


def test_plugins_train_through_the_cli(plugins, graph, tmp_path, capsys):
    log, out = _log(tmp_path, graph), tmp_path / "m.pt"
    argv = ["cf", "train", "--dataset", str(log), "--backbone", "twin", "--loss", "pointwise",
            "--dim", "8", "--epochs", "2", "--batch-size", "64", "--out", str(out),
            "--quiet"]  # fmt: skip
    assert main([*argv, "--temperature", "0.5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs"] == 2 and 0.0 <= result["test"]["recall@20"] <= 1.0
    state = torch.load(out, weights_only=True)
    assert state["config"]["backbone"] == "twin" and state["config"]["temperature"] == 0.5
    assert set(state["model"]) == {"table.weight"}
    # recommend rebuilds the registered backbone from the model file
    assert main(["cf", "recommend", str(out), "--users", "0,1", "-k", "3", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert list(recs) == ["0", "1"] and all(len(r["items"]) == 3 for r in recs.values())
    # the options of other backbones / losses are refused, and so are too few negatives
    for extra, message in [
        (["--tau-plus", "0.1"], "--tau-plus applies to --loss hdccf only"),
        (["--layers", "2"], "--layers applies to --backbone lightgcn only"),
        (["--negatives", "0"], "--negatives must be >= 1 with --loss pointwise"),
    ]:
        assert main([*argv, "--force", *extra]) == 2
        assert message in capsys.readouterr().err


def test_unknown_names_list_the_registered_ones(plugins):
    with pytest.raises(ConfigError, match="unknown CF loss 'nope'; choose one of: bpr, infonce, "
                       "hdccf, pointwise"):  # fmt: skip
        CFConfig(loss="nope")
    with pytest.raises(ConfigError, match="unknown CF backbone 'nope'; choose one of: mf, "
                       "lightgcn, twin"):  # fmt: skip
        CFConfig(backbone="nope")
