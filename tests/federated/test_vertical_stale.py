"""Bounded staleness (cached embeddings of late parties) and FedBCD local updates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from graphrec.errors import ConfigError
from graphrec.federated.vertical import MessageLog, SplitLearner, SplitNN, Stragglers
from graphrec.graphs import PartyGraph

N = 24


def _learner(local_steps=1, stragglers=None, log=None):
    gen = torch.Generator().manual_seed(0)
    graph = PartyGraph({"bank": 3, "shop": 4, "app": 2}, {"bank": 3, "shop": 2, "app": 2}, "bank")
    torch.manual_seed(0)
    model = SplitNN(graph, {"shop": torch.nn.Linear(4, 2, bias=False)}, hidden_channels=(5,))
    x = {p: torch.randn(N, w, generator=gen) for p, w in graph.num_features.items()}
    y = (x["shop"][:, 0] > 0).float()
    return SplitLearner(
        model,
        x,
        y,
        log=log,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
        local_steps=local_steps,
        stragglers=stragglers,
    )


def test_fedbcd_local_updates_reuse_the_stale_gradient():
    """A linear bottom's weight gradient X^T g does not depend on the weights, so Q local
    updates on one received gradient move it Q times as far, with the messages of one step."""
    logs = MessageLog(), MessageLog()
    one, three = _learner(1, log=logs[0]), _learner(3, log=logs[1])
    w0 = one.model.bottoms["shop"].weight.detach().clone()
    batch = torch.arange(0, N, 2)
    assert one.step(batch) == three.step(batch)
    delta = one.model.bottoms["shop"].weight.detach() - w0
    torch.testing.assert_close(three.model.bottoms["shop"].weight.detach() - w0, 3 * delta)
    assert [(m.kind, m.nbytes) for m in logs[0]] == [(m.kind, m.nbytes) for m in logs[1]]
    top = [
        torch.equal(p, q) for p, q in zip(one.model.top.parameters(), three.model.top.parameters())
    ]
    assert not any(top)  # the label owner updated locally too


def test_cached_embeddings_within_the_staleness_bound():
    log = MessageLog(keep_payloads=True)
    learner = _learner(
        stragglers=Stragglers(1, lambda step, party: party != "shop" or step == 0), log=log
    )
    full = torch.arange(N)
    learner.step(full)
    cached = [m.payload for m in log if m.sender == "shop"][0]
    shop = learner.model.bottoms["shop"].weight.detach().clone()
    x, y, m = (
        {p: node.features for p, node in learner.parties.items()},
        learner.labels,
        learner.model,
    )
    x["bank"] = learner.features
    with torch.no_grad():
        h = [m.bottoms["bank"](x["bank"]), cached, m.bottoms["app"](x["app"])]
        want = F.binary_cross_entropy_with_logits(m.top(m.combine(h)).reshape(-1), y).item()
    before = len(log)
    assert learner.step(full) == pytest.approx(want, abs=1e-6)
    assert all("shop" not in (msg.sender, msg.receiver) for msg in log.messages[before:])
    assert torch.equal(shop, learner.model.bottoms["shop"].weight) and learner.cache.waits == 0
    before = len(log)
    learner.step(full)  # the cache is 2 steps old now: the label owner waits for the party
    assert learner.cache.waits == 1
    kinds = [msg.kind for msg in log.messages[before:] if "shop" in (msg.sender, msg.receiver)]
    assert kinds == ["batch", "embedding", "gradient"]  # step() sends the batch
    sync = _learner(stragglers=Stragglers(0, lambda step, party: party != "shop" or step == 0))
    sync.step(full), sync.step(full)
    assert sync.cache.waits == 1
    learner.predict(full)  # predictions always ask every party
    assert learner.cache.waits == 1


def test_errors():
    with pytest.raises(ConfigError, match="staleness"):
        Stragglers(-1)
    with pytest.raises(ConfigError, match="local_steps"):
        _learner(local_steps=0)
