"""Split learning: gradients equal the centralized model's, the log carries no raw data."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from graphrec.errors import ConfigError, InputFormatError
from graphrec.federated.vertical import Alignment, MessageLog, SplitLearner, SplitNN
from graphrec.graphs import PartyGraph
from graphrec.nn import MLP

WIDTHS = {"bank": 5, "shop": 3, "app": 4}


def _setup(seed=0, combine="concat", owner="bank", n=40):
    """Three parties, each table in its own row order over a superset of the shared ids."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    shared = np.arange(n)
    features, rows = {}, {}
    for party, width in WIDTHS.items():
        extra = 5 + rng.integers(0, 5)  # rows outside the intersection
        order = rng.permutation(n + extra)  # local row -> id (ids >= n are private)
        features[party] = torch.randn(n + extra, width, generator=gen)
        local = np.empty(n + extra, dtype=np.int64)
        local[order] = np.arange(n + extra)
        rows[party] = local[shared]  # aligned position -> local row
    labels = (torch.rand(features[owner].shape[0], generator=gen) > 0.5).float()
    alignment = Alignment(tuple(map(str, shared)), rows)
    dims = 3 if combine == "sum" else {"bank": 4, "shop": 3, "app": 2}
    graph = PartyGraph(WIDTHS, dims, owner, combine=combine)
    torch.manual_seed(seed)
    model = SplitNN(graph, hidden_channels=(6,), top_hidden_channels=(5,))
    return model, features, labels, alignment


def _central_loss(model, features, labels, alignment, batch):
    """The centralized model's loss on aligned positions ``batch`` (all data in one place)."""
    aligned = {p: x[torch.from_numpy(alignment.rows[p])[batch]] for p, x in features.items()}
    y = labels[torch.from_numpy(alignment.rows["bank"])[batch]]
    return torch.nn.functional.binary_cross_entropy_with_logits(model(aligned).view(-1), y)


def _central_grads(model, features, labels, alignment, batch):
    central = copy.deepcopy(model)
    loss = _central_loss(central, features, labels, alignment, batch)
    loss.backward()
    return loss.item(), {k: p.grad for k, p in central.named_parameters()}


@pytest.mark.parametrize("combine", ["concat", "sum"])
def test_gradients_equal_centralized(combine):
    model, features, labels, alignment = _setup(combine=combine)
    learner = SplitLearner(model, features, labels, alignment)
    batch = torch.tensor([3, 17, 0, 39, 22, 8, 11])
    want_loss, want = _central_grads(model, features, labels, alignment, batch)
    loss = learner.forward_backward(batch)
    assert loss == pytest.approx(want_loss, abs=1e-6)
    got = dict(model.named_parameters())
    assert sorted(got) == sorted(want)
    for name, grad in want.items():
        torch.testing.assert_close(got[name].grad, grad, atol=1e-6, rtol=0)
        assert grad.abs().sum() > 0


def test_training_matches_centralized_sgd():
    model, features, labels, alignment = _setup(seed=1)
    central = copy.deepcopy(model)
    sgd = lambda params: torch.optim.SGD(params, lr=0.1)  # noqa: E731
    learner = SplitLearner(model, features, labels, alignment, optimizer=sgd)
    losses = learner.fit(steps=6, batch_size=16, seed=3)
    # the same batches: two passes over 40 rows in slices of 16
    gen = torch.Generator().manual_seed(3)
    perms = [torch.randperm(40, generator=gen) for _ in range(2)]
    batches = [p[i : i + 16] for p in perms for i in range(0, 40, 16)]
    opt = sgd(central.parameters())
    for batch, loss in zip(batches, losses, strict=True):
        opt.zero_grad()
        want = _central_loss(central, features, labels, alignment, batch)
        want.backward()
        opt.step()
        assert loss == pytest.approx(want.item(), abs=1e-6)
    for p, q in zip(model.parameters(), central.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


def test_log_carries_no_raw_features_and_only_shared_ids():
    model, features, labels, alignment = _setup(seed=2)
    log = MessageLog(keep_payloads=True)
    learner = SplitLearner(model, features, labels, alignment, log=log)
    learner.fit(steps=4, batch_size=8)
    learner.predict(torch.arange(5))
    graph = model.graph
    links = {(x.sender, x.receiver, x.kind) for x in graph.links()}
    schedule = {("bank", p, "schedule") for p in ("shop", "app")}
    assert {(m.sender, m.receiver, m.kind) for m in log} == links | schedule
    # training: the schedule once (seed, batch size), then per step the party graph's links
    # but the batch (the parties derive it); predict sends the batch and gets the embeddings
    batch_bytes = sum(x.bytes_per_batch(8) for x in graph.links() if x.kind == "batch")
    assert log.total_bytes == (
        2 * 16 + 4 * (graph.bytes_per_batch(8) - batch_bytes) + 2 * 5 * 8 + 5 * 4 * (3 + 2)
    )
    gen = torch.Generator().manual_seed(0)  # the schedule fit announced: seed 0, batches of 8
    derived = torch.randperm(40, generator=gen).split(8)[:4]
    last_batch, sent, steps = {}, set(), {"shop": iter(derived), "app": iter(derived)}
    for m in log:
        if m.kind == "schedule":
            assert m.payload.tolist() == [0, 8]
            continue
        if m.kind == "batch":  # positions of the aligned (shared) ids only
            assert m.payload.dtype == torch.long
            assert 0 <= m.payload.min() and m.payload.max() < len(alignment.ids)
            last_batch[m.receiver] = m.payload
            sent.add(m.receiver)
            continue
        party = m.sender if m.kind == "embedding" else m.receiver
        if m.kind == "embedding" and party not in sent:  # training: the schedule's next batch
            last_batch[party] = next(steps[party])
        batch = last_batch[party]
        assert m.payload.shape == (len(batch), graph.embedding_dim[party])
        # no column of a payload is a column of any raw feature table on the batch's rows
        for p, x in features.items():
            raw = x[torch.from_numpy(alignment.rows[p])[batch]]
            for column in m.payload.T:
                assert not any(torch.allclose(column, c) for c in raw.T)
    assert "bank" not in {m.sender for m in log if m.kind == "embedding"}


def test_label_only_owner_and_predict():
    gen = torch.Generator().manual_seed(0)
    graph = PartyGraph({"a": 3, "b": 2}, 2, "server", combine="sum")
    torch.manual_seed(0)
    model = SplitNN(graph, {"b": MLP(2, [], 2)})
    x = {"a": torch.randn(10, 3, generator=gen), "b": torch.randn(10, 2, generator=gen)}
    learner = SplitLearner(model, x, torch.ones(10))
    assert isinstance(model.bottoms["b"], MLP) and len(model.bottoms["b"]) == 1
    torch.testing.assert_close(learner.predict(torch.arange(10)), model(x).detach())
    learner.step(torch.arange(10))
    assert {m.sender for m in learner.log if m.kind == "embedding"} == {"a", "b"}


def test_nan_and_mismatched_ids():
    model, features, labels, alignment = _setup()
    bad = dict(features, shop=features["shop"].clone())
    bad["shop"][4, 2] = float("nan")
    with pytest.raises(InputFormatError, match=r"features\['shop'\], row 4, column 2: nan"):
        SplitLearner(model, bad, labels, alignment)
    with pytest.raises(ConfigError, match="tables differ in rows"):
        SplitLearner(model, features, labels)  # tables not aligned and no alignment
    short = dict(features, app=features["app"][:10])
    with pytest.raises(ConfigError, match=r"alignment.rows\['app'\] does not match"):
        SplitLearner(model, short, labels, alignment)
    other = Alignment(alignment.ids, {p: alignment.rows[p] for p in ("bank", "shop")})
    with pytest.raises(ConfigError, match="alignment must map the rows"):
        SplitLearner(model, features, labels, other)
    with pytest.raises(ConfigError, match="features must hold one table per party"):
        SplitLearner(model, {"bank": features["bank"]}, labels, alignment)
    with pytest.raises(ConfigError, match=r"features\['app'\] must be a float \[N, 4\]"):
        SplitLearner(model, dict(features, app=features["app"][:, :2]), labels, alignment)
    with pytest.raises(ConfigError, match="labels has 3 rows"):
        SplitLearner(model, features, labels[:3], alignment)
    learner = SplitLearner(model, features, labels, alignment)
    with pytest.raises(ConfigError, match="batch must hold positions in 0..39"):
        learner.step(torch.tensor([0, 40]))
    with pytest.raises(ConfigError, match="bottoms names unknown parties"):
        SplitNN(model.graph, {"bnak": MLP(5, [], 4)})
