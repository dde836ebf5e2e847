"""Label inference from returned gradients (norm and direction attacks) and DP as protection."""

from __future__ import annotations

import os

import pytest
import torch

try:
    import opacus  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("opacus is not installed (pip install -e '.[vfl]')", allow_module_level=True)

from graphrec.errors import ConfigError
from graphrec.federated.vertical import (
    GaussianDP,
    MessageLog,
    SplitLearner,
    SplitNN,
    direction_scores,
    norm_scores,
    received_gradients,
)
from graphrec.graphs import PartyGraph
from graphrec.metrics import auc


def _attack(dp=None, n=400, steps=20):
    """Attack AUCs (norm, direction) of the passive party on an imbalanced task (~7% positive)."""
    gen = torch.Generator().manual_seed(0)
    graph = PartyGraph({"bank": 3, "shop": 4}, 4, "bank")
    torch.manual_seed(0)
    model = SplitNN(graph, hidden_channels=(8,))
    x = {p: torch.randn(n, w, generator=gen) for p, w in graph.num_features.items()}
    y = (x["shop"][:, 0] + 0.5 * x["bank"][:, 0] > 1.6).float()
    log = MessageLog(keep_payloads=True)
    learner = SplitLearner(
        model, x, y, log=log, dp=dp, optimizer=lambda p: torch.optim.SGD(p, lr=0.1)
    )
    learner.fit(steps, 64)
    received = received_gradients(log, "shop")
    assert len(received) == steps
    positions = torch.cat([p for p, _ in received])
    norm_auc = auc(y[positions], norm_scores(torch.cat([g for _, g in received])))
    scores, labels = [], []
    for batch, grads in received:
        if y[batch].any():  # the party knows one positive of the batch
            known = int(y[batch].nonzero()[0, 0])
            others = torch.arange(len(batch)) != known
            scores.append(direction_scores(grads, known)[others])
            labels.append(y[batch][others])
    return norm_auc, auc(torch.cat(labels), torch.cat(scores))


def test_attacks_succeed_without_protection_and_fail_with_gradient_noise():
    norm_auc, direction_auc = _attack()
    assert norm_auc > 0.9 and direction_auc > 0.9
    norm_auc, direction_auc = _attack(GaussianDP(8.0, 1e-3, ("gradient",)))
    assert norm_auc < 0.6 and direction_auc < 0.6


def test_hand_cases_and_sklearn_auc():
    g = torch.tensor([[3.0, 4.0], [-0.3, -0.4], [0.0, 2.0]])
    torch.testing.assert_close(norm_scores(g), torch.tensor([5.0, 0.5, 2.0]))
    torch.testing.assert_close(direction_scores(g, 0), torch.tensor([1.0, -1.0, 0.8]))
    sklearn = pytest.importorskip("sklearn.metrics")
    labels, scores = [1, 0, 0, 1, 0], [0.9, 0.3, 0.9, 0.4, 0.1]
    assert auc(labels, scores) == pytest.approx(sklearn.roc_auc_score(labels, scores), abs=1e-12)


def test_errors():
    with pytest.raises(ConfigError, match="known"):
        direction_scores(torch.ones(3, 2), 3)
    with pytest.raises(ConfigError, match="keep_payloads"):
        log = MessageLog()
        log.send("bank", "shop", "gradient", torch.ones(2, 3), torch.arange(2))
        received_gradients(log, "shop")
    with pytest.raises(ConfigError, match="no gradient"):
        received_gradients(MessageLog(keep_payloads=True), "shop")
    with pytest.raises(ConfigError, match="uncompressed"):
        log = MessageLog(keep_payloads=True)
        log.send("bank", "shop", "gradient", (torch.ones(2), torch.ones(2)), torch.arange(2))
        received_gradients(log, "shop")
