"""Federated learning: device-cloud graph, partitioners, strategies, simulator."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from graphrec.datasets import load_amazon_electronics_users, load_movielens100k
from graphrec.federated import (
    ClientUpdate,
    CTRModelTask,
    EmbeddingCTRTask,
    FedAvg,
    FedProx,
    FedSubAvg,
    InvolvedAveraging,
    LocalConfig,
    RowDelta,
    Simulator,
    SoftmaxRegressionTask,
    amazon_per_user,
    dirichlet_label_skew,
    label_shards,
    movielens_per_user,
    natural_partition,
    synthetic_leaf,
)
from graphrec.federated.data import load_uci_har_labels_per_subject, load_uci_heart_per_centre
from graphrec.federated.experiment import stream_task
from graphrec.federated.ode import (
    GlobalGradientEstimator,
    LocalGradientEstimator,
    ValueBuffer,
    coordinate_labels,
    global_gradient,
    last_layers,
    per_sample_gradients,
    sample_values,
)
from graphrec.federated.simulator import _seed as simulator_seed
from graphrec.federated.stream import (
    ODEAggregation,
    StreamDevice,
    StreamTask,
    make_store,
    speedup,
    stream_simulator,
)
from graphrec.graphs.device_cloud import DeviceCloudGraph
from graphrec.io import Interactions
from graphrec.models.ctr import DIN, CTRFeatures, amazon_ctr

torch.set_num_threads(1)


# --------------------------------------------------------------------------- helpers


def tiny_graph() -> DeviceCloudGraph:
    # device 0 (3 samples) touches item rows 1, 1, 2; device 1 (1 sample) row 2; device 2 none
    return DeviceCloudGraph.from_pairs(
        [3, 1, 2],
        {"item": ([0, 0, 0, 1], [1, 1, 2, 2], 4), "user": ([0, 1, 2], [0, 1, 2], 3)},
    )


def random_ctr_task(num_users: int = 24, num_items: int = 40, seed: int = 0) -> EmbeddingCTRTask:
    rng = np.random.default_rng(seed)
    per_user = rng.integers(4, 12, num_users)
    user = np.repeat(np.arange(num_users), per_user)
    n = user.size
    item = rng.integers(1, num_items, n)
    history = np.where(rng.random((n, 5)) < 0.6, rng.integers(1, num_items, (n, 5)), 0)
    labels = (rng.random(n) < 0.3 + 0.4 * (user % 2)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(per_user)])
    parts = [np.arange(offsets[u], offsets[u + 1] - 1) for u in range(num_users)]
    test = offsets[1:] - 1
    return EmbeddingCTRTask(
        user, item, history, labels, parts, test, num_users=num_users, num_items=num_items, dim=4
    )


def random_updates(graph: DeviceCloudGraph, table: str, dim: int, seed: int) -> list[ClientUpdate]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for c in range(graph.num_devices):
        idx = torch.from_numpy(graph.rows(c, table))
        out.append(
            ClientUpdate(
                c,
                int(graph.num_samples[c]),
                dense={"w": torch.randn(3, generator=gen, dtype=torch.float64)},
                rows={
                    "emb": RowDelta(
                        table,
                        idx,
                        torch.randn(idx.numel(), dim, generator=gen, dtype=torch.float64),
                    )
                },
            )
        )
    return out


def zero_state(graph: DeviceCloudGraph, table: str, dim: int) -> dict[str, torch.Tensor]:
    return {
        "w": torch.zeros(3, dtype=torch.float64),
        "emb": torch.zeros(graph.num_rows(table), dim, dtype=torch.float64),
    }


# --------------------------------------------------------------------------- device-cloud graph


def test_device_cloud_graph_heat_and_forms():
    g = tiny_graph()
    assert g.num_devices == 3 and g.total_samples == 6 and g.tables == ["item", "user"]
    assert g.rows(0, "item").tolist() == [1, 2] and g.rows(2, "item").tolist() == []
    assert g.devices("item", 2).tolist() == [0, 1]
    assert g.device_heat("item").tolist() == [0, 1, 2, 0]
    assert g.sample_heat("item").tolist() == [0, 3, 4, 0]
    assert g.touch_count("item").tolist() == [0, 2, 2, 0]
    assert g.adjacency("item").toarray().tolist() == [[0, 2, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    ei = g.edge_index("item")
    assert sorted(map(tuple, ei.t().tolist())) == [(0, 4), (0, 5), (1, 5)]  # rows offset by D=3
    assert g.server_edge_index().tolist() == [[0, 1, 2], [3, 3, 3]]
    data = g.to_hetero_data()
    assert data["device"].num_nodes == 3 and data["item"].num_nodes == 4
    assert data["device", "touches", "item"].edge_weight.tolist() == [2, 1, 1]
    assert data["item"].sample_heat.tolist() == [0, 3, 4, 0]
    assert data["device", "talks_to", "server"].edge_index.shape == (2, 3)
    assert "3 devices" in g.summary()


def test_device_cloud_graph_validates():
    with pytest.raises(ValueError, match="row index"):
        DeviceCloudGraph.from_pairs([1], {"t": ([0], [5], 3)})
    with pytest.raises(ValueError, match="device index"):
        DeviceCloudGraph.from_pairs([1], {"t": ([1], [0], 3)})
    with pytest.raises(KeyError, match="unknown table"):
        tiny_graph().device_heat("nope")


# --------------------------------------------------------------------------- partitioners


def test_natural_and_per_user_partitions():
    parts = natural_partition(np.array([5, 2, 5, 2, 9]))
    assert [p.tolist() for p in parts] == [[1, 3], [0, 2], [4]]
    log = Interactions(
        np.array([1, 0, 1, 2]), np.array([0, 1, 2, 0]), None, None, np.arange(3), np.arange(3)
    )
    assert [p.tolist() for p in movielens_per_user(log)] == [[1], [0, 2], [3]]


def test_dirichlet_label_skew_is_a_seeded_partition():
    labels = np.random.default_rng(0).integers(0, 5, 2000)
    a = dirichlet_label_skew(labels, 20, 0.1, seed=3)
    b = dirichlet_label_skew(labels, 20, 0.1, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert np.array_equal(np.sort(np.concatenate(a)), np.arange(2000))
    assert min(p.size for p in a) >= 1

    def mean_top_share(parts):
        return np.mean([np.bincount(labels[p]).max() / p.size for p in parts if p.size])

    iid = dirichlet_label_skew(labels, 20, 100.0, seed=3)
    assert mean_top_share(a) > mean_top_share(iid) + 0.2
    with pytest.raises(ValueError):
        dirichlet_label_skew(labels, 20, 0.0)


def test_label_shards():
    labels = np.repeat(np.arange(10), 100)
    parts = label_shards(labels, 50, 2, seed=1)
    assert all(p.size == 20 for p in parts)
    assert np.unique(np.concatenate(parts)).size == 1000
    assert all(np.unique(labels[p]).size <= 2 for p in parts)


def test_synthetic_leaf():
    a = synthetic_leaf(1.0, 1.0, 12, seed=5)
    b = synthetic_leaf(1.0, 1.0, 12, seed=5)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert a.x.shape[1] == 60 and a.x.dtype == np.float32 and a.num_devices == 12
    assert sum(p.size for p in a.parts) == a.y.size
    assert all(50 <= p.size <= 1000 for p in a.parts)
    fixed = synthetic_leaf(0.0, 0.0, 4, samples_per_device=30, iid=True, seed=0)
    assert fixed.y.size == 120 and set(np.unique(fixed.y)) <= set(range(10))


def test_movielens_per_user_real(shared_data):
    ml = load_movielens100k(shared_data / "movielens" / "ml-100k")
    parts = movielens_per_user(ml.ratings)
    assert len(parts) == 943 and sum(p.size for p in parts) == 100_000
    assert all((ml.ratings.user[p] == u).all() for u, p in enumerate(parts[:50]))
    # FL task on MovieLens per user: histories are earlier liked movies, test = latest ratings
    task = EmbeddingCTRTask.from_movielens(ml, num_users=200, max_history=5)
    assert task.graph.num_devices == 200 and task.graph.num_rows("item") == 1683
    part = task.parts[3]
    liked = [int(task.item[r]) for r in part if task.labels[r] == 1]
    last = int(part[-1])
    expected = liked[-5:] if task.labels[last] == 0 else liked[:-1][-5:]
    assert [v for v in task.history[last].tolist() if v] == expected
    test3 = task.test_rows[task.user.numpy()[task.test_rows] == 3]
    assert test3.min() == part.max() + 1
    sim = Simulator(task, FedSubAvg(task.graph, form="code"), clients_per_round=20, seed=0)
    history = sim.run(4)
    assert history[-1]["auc"] > history[0]["auc"] + 0.01


# --------------------------------------------------------------------------- strategies


def test_fedavg_equals_plain_weighted_average():
    g = DeviceCloudGraph.from_pairs(
        [5, 1, 3, 2], {"t": ([0, 0, 1, 2, 3, 3], [0, 1, 1, 2, 0, 3], 5)}
    )
    updates = random_updates(g, "t", 2, seed=0)
    gen = torch.Generator().manual_seed(1)
    state = {
        "w": torch.randn(3, generator=gen, dtype=torch.float64),
        "emb": torch.randn(5, 2, generator=gen, dtype=torch.float64),
    }
    # each client's full local model: untouched rows equal the global model
    local = []
    for u in updates:
        emb = state["emb"].clone()
        emb[u.rows["emb"].index] += u.rows["emb"].values
        local.append({"w": state["w"] + u.dense["w"], "emb": emb})
    for weighted in (True, False):
        w = np.array([u.num_samples for u in updates], float) if weighted else np.ones(4)
        w = w / w.sum()
        out = FedAvg(weighted=weighted).aggregate(state, updates)
        for name in state:
            expected = sum(wi * m[name] for wi, m in zip(w, local, strict=True))
            torch.testing.assert_close(out[name], expected)
    assert torch.equal(FedAvg().aggregate(state, [])["emb"], state["emb"])
    torch.testing.assert_close(  # the hook does not modify its input
        state["w"], torch.randn(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    )


def test_fedsubavg_with_every_row_shared_equals_fedavg():
    # every device touches every row: h_j = N and H_j = N_tot, so FedSubAvg = FedAvg
    pairs = ([d for d in range(4) for _ in range(3)], [r for _ in range(4) for r in range(3)], 3)
    g = DeviceCloudGraph.from_pairs([2, 5, 1, 4], {"t": pairs})
    updates = random_updates(g, "t", 2, seed=2)[:3]
    state = zero_state(g, "t", 2)
    for form, weighted in (("paper", False), ("code", True)):
        sub = FedSubAvg(g, form=form).aggregate(state, updates)
        avg = FedAvg(weighted=weighted).aggregate(state, updates)
        for name in state:
            torch.testing.assert_close(sub[name], avg[name])


def _mean_over_involved(
    g: DeviceCloudGraph, updates: list[ClientUpdate], rows: int
) -> torch.Tensor:
    out = torch.zeros(rows, 2, dtype=torch.float64)
    for j in range(rows):
        involved = [u.rows["emb"].values[u.rows["emb"].index == j] for u in updates]
        involved = [v for v in involved if v.numel()]
        if involved:
            out[j] = torch.cat(involved).mean(0)
    return out


class _FixedTask:
    """A task stub for sampling-only simulators."""

    def __init__(self, graph, state):
        self.graph, self.state, self.tables = graph, state, {"emb": "t"}

    def init_state(self, seed):
        return dict(self.state)


def test_fedsubavg_expected_update_is_mean_over_involved_devices():
    rng = np.random.default_rng(0)
    n_dev, n_rows, k = 7, 6, 3
    dev, row = [], []
    for d in range(n_dev):
        for r in rng.choice(n_rows, rng.integers(1, 4), replace=False):
            dev.append(d)
            row.append(int(r))
    g = DeviceCloudGraph.from_pairs(rng.integers(1, 9, n_dev), {"t": (dev, row, n_rows)})
    updates = random_updates(g, "t", 2, seed=4)
    state = zero_state(g, "t", 2)
    strategy = FedSubAvg(g, form="paper")
    target = _mean_over_involved(g, updates, n_rows)
    dense_target = torch.stack([u.dense["w"] for u in updates]).mean(0)
    # exact expectation over all C(7, 3) equally likely participant sets
    subsets = list(itertools.combinations(range(n_dev), k))
    exact = [strategy.aggregate(state, [updates[i] for i in s]) for s in subsets]
    torch.testing.assert_close(sum(o["emb"] for o in exact) / len(subsets), target)
    torch.testing.assert_close(sum(o["w"] for o in exact) / len(subsets), dense_target)
    # Monte-Carlo over the simulator's own client sampling (seeded, one draw per round)
    sim = Simulator(_FixedTask(g, state), strategy, clients_per_round=k, seed=11)
    draws = 3000
    mc = torch.zeros_like(target)
    for t in range(1, draws + 1):
        chosen = sim.sample_clients(t)
        mc += strategy.aggregate(state, [updates[i] for i in chosen])["emb"]
    mc /= draws
    # standard error of the mean per entry, from the exact per-subset spread
    spread = torch.stack([o["emb"] for o in exact]).std(0)
    assert ((mc - target).abs() <= 5 * spread / math.sqrt(draws) + 1e-12).all()
    # FedAvg is biased towards zero on cold rows: row j moves ~ (h_j / N) x the involved mean
    avg = [FedAvg(weighted=False).aggregate(state, [updates[i] for i in s]) for s in subsets]
    heat = torch.from_numpy(g.device_heat("t")).double()
    torch.testing.assert_close(
        sum(o["emb"] for o in avg) / len(subsets), target * (heat / n_dev)[:, None]
    )


def test_fedsubavg_code_form_and_clip():
    g = DeviceCloudGraph.from_pairs([4, 4, 4], {"t": ([0, 1, 1, 2], [0, 0, 1, 2], 4)})
    updates = random_updates(g, "t", 2, seed=5)
    state = zero_state(g, "t", 2)
    # equal sample counts: the code form equals the paper form
    for s in ([0, 1], [1, 2], [0, 2]):
        ups = [updates[i] for i in s]
        a = FedSubAvg(g, form="code").aggregate(state, ups)
        b = FedSubAvg(g, form="paper").aggregate(state, ups)
        torch.testing.assert_close(a["emb"], b["emb"])
    sub = FedSubAvg(g, form="code")
    assert sub.coefficients("t").tolist() == [12 / 8, 12 / 4, 12 / 4, 1.0]
    assert FedSubAvg(g, form="paper", clip=2.0).coefficients("t").tolist() == [1.5, 2.0, 2.0, 1.0]
    # hand-computed code form: n = (4, 4); row 0 gets (4*d0 + 4*d1)/8 * 12/8
    out = sub.aggregate(state, updates[:2])
    d0, d1 = updates[0].rows["emb"].values[0], updates[1].rows["emb"].values[0]
    torch.testing.assert_close(out["emb"][0], (d0 + d1) / 2 * 1.5)
    with pytest.raises(ValueError, match="form"):
        FedSubAvg(g, form="other")
    bad = ClientUpdate(0, 1, rows={"emb": RowDelta("t", torch.tensor([3]), torch.ones(1, 2))})
    with pytest.raises(ValueError, match="zero heat"):
        sub.aggregate(state, [bad])


def test_involved_averaging():
    g = DeviceCloudGraph.from_pairs([1, 3], {"t": ([0, 1, 1], [0, 0, 1], 3)})
    state = zero_state(g, "t", 1)
    ups = [
        ClientUpdate(0, 1, rows={"emb": RowDelta("t", torch.tensor([0]), torch.tensor([[4.0]]))}),
        ClientUpdate(
            1, 3, rows={"emb": RowDelta("t", torch.tensor([0, 1]), torch.tensor([[8.0], [2.0]]))}
        ),
    ]
    for u in ups:
        u.rows["emb"].values = u.rows["emb"].values.double()
    out = InvolvedAveraging().aggregate(state, ups)
    assert out["emb"].flatten().tolist() == [(4 + 3 * 8) / 4, 2.0, 0.0]
    out = InvolvedAveraging(weighted=False).aggregate(state, ups)
    assert out["emb"].flatten().tolist() == [6.0, 2.0, 0.0]


# --------------------------------------------------------------------------- simulator


def test_simulator_sparse_rows_bytes_and_sampling():
    task = random_ctr_task()
    sim = Simulator(task, FedSubAvg(task.graph, form="code"), clients_per_round=5, seed=1)
    assert np.array_equal(sim.sample_clients(3), sim.sample_clients(3))
    assert np.unique(sim.sample_clients(3)).size == 5
    update = sim.client_update(7, sim.local.for_round(0), 1)
    assert set(update.rows) == {"user.weight", "item.weight"}
    assert update.rows["item.weight"].index.tolist() == task.graph.rows(7, "item").tolist()
    assert update.rows["user.weight"].index.tolist() == [7]
    assert set(update.dense) == {"mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"}
    dense_bytes = sum(v.numel() * 4 for v in update.dense.values())
    rows = task.graph.rows(7, "item").size + 1
    assert update.nbytes == dense_bytes + rows * (8 + 4 * 4)
    record = sim.step()
    assert record["accepted"] == 5 and record["bytes_up"] > 0 and record["bytes_down"] > 0
    assert record["bytes_up"] < 5 * sum(v.numel() * 4 for v in sim.state.values())
    trained = {c: 1 + (c == 7) for c in record["sampled"]}
    assert {c: sim.client_state[c]["rounds_trained"] for c in trained} == trained


@pytest.mark.parametrize("strategy", ["fedsubavg", "fedprox"])
def test_resume_equals_uninterrupted_run(tmp_path, strategy):
    def make():
        task = random_ctr_task(seed=2)
        strat = FedSubAvg(task.graph) if strategy == "fedsubavg" else FedProx(0.1)
        return Simulator(
            task, strat, clients_per_round=6, seed=3, dropout=0.2, straggler=0.3, eval_every=2
        )

    full = make()
    full.run(5)
    ckpt = tmp_path / "sim.pt"
    first = make()
    first.run(5, checkpoint=ckpt, stop_after=2)
    assert first.round == 2
    resumed = make()
    resumed.load(ckpt)
    resumed.run(5, checkpoint=ckpt)
    for name in full.state:
        assert torch.equal(full.state[name], resumed.state[name]), name
    assert full.history == resumed.history
    assert full.client_state == resumed.client_state
    assert any(r.get("dropped") for r in full.history[1:])


class Faulty:
    """Wraps a task: some clients return NaN, some a huge update."""

    def __init__(self, task, nan: set[int], huge: set[int]):
        self.task, self.nan, self.huge = task, nan, huge
        self.graph, self.tables = task.graph, task.tables

    def init_state(self, seed):
        return self.task.init_state(seed)

    def evaluate(self, state):
        return self.task.evaluate(state)

    def local_train(self, client, state, config, client_state, generator):
        local, metrics = self.task.local_train(client, state, config, client_state, generator)
        if client in self.nan:
            local["mlp.0.bias"] = local["mlp.0.bias"] * float("nan")
        if client in self.huge:
            local["item.weight"] = local["item.weight"] + 1e6
        return local, metrics


def test_nan_and_huge_updates_are_rejected_and_logged(caplog):
    task = random_ctr_task(seed=4)
    probe = Simulator(task, FedAvg(), clients_per_round=8, seed=9)
    sampled = probe.sample_clients(1).tolist()
    faulty = Faulty(task, nan={sampled[0]}, huge={sampled[1]})
    sim = Simulator(faulty, FedAvg(), clients_per_round=8, seed=9, max_update_norm=100.0)
    with caplog.at_level(logging.WARNING, logger="graphrec.federated"):
        history = sim.run(3)
    assert sim.round == 3
    first = history[1]
    assert sorted(first["rejected"]) == sorted(sampled[:2]) and first["accepted"] == 6
    reasons = {r["client"]: r["reason"] for r in sim.rejected if r["round"] == 1}
    assert reasons[sampled[0]] == "non-finite update"
    assert "max_update_norm" in reasons[sampled[1]]
    assert sum("rejected update" in m for m in caplog.messages) == len(sim.rejected)
    assert all(torch.isfinite(v).all() for v in sim.state.values())
    assert all(math.isfinite(r["auc"]) for r in history)


def test_update_norm_overflow_is_not_finite_but_infinite():
    big = ClientUpdate(0, 1, dense={"w": torch.full((4,), 1e200, dtype=torch.float64)})
    assert big.is_finite() and big.norm() == math.inf
    nan = ClientUpdate(0, 1, dense={"w": torch.tensor([1.0, math.nan])})
    assert not nan.is_finite() and math.isnan(nan.norm())


def test_fedprox_pulls_local_models_towards_global():
    task = random_ctr_task(seed=6)
    cfg = LocalConfig(lr=0.5, local_steps=20, clip_norm=None)
    free = Simulator(task, FedAvg(), clients_per_round=4, local=cfg, seed=0)
    prox = Simulator(task, FedProx(mu=1.0), clients_per_round=4, local=cfg, seed=0)
    assert prox.strategy.configure(1, {"lr": 1})["prox_mu"] == 1.0
    a = free.client_update(3, free.strategy.configure(1, cfg.for_round(0)), 1)
    b = prox.client_update(3, prox.strategy.configure(1, cfg.for_round(0)), 1)
    assert b.norm() < a.norm()


def test_softmax_regression_on_synthetic_learns():
    data = synthetic_leaf(0.5, 0.5, 20, samples_per_device=60, seed=0)
    test = np.concatenate([p[-10:] for p in data.parts])
    parts = [p[:-10] for p in data.parts]
    task = SoftmaxRegressionTask(data.x, data.y, parts, test, num_classes=10)
    cfg = LocalConfig(lr=0.1, lr_decay=1.0, local_steps=10, batch_size=10)
    sim = Simulator(task, FedAvg(), clients_per_round=5, local=cfg, seed=0)
    history = sim.run(10)
    assert history[-1]["accuracy"] > history[0]["accuracy"] + 0.1
    assert all(r["bytes_up"] == 5 * (60 * 10 + 10) * 4 for r in history[1:])


# --------------------------------------------------------------------------- Amazon per user


@pytest.fixture(scope="module")
def amazon(shared_data):
    return load_amazon_electronics_users(shared_data / "amazon_electronics_users")


def test_amazon_per_user_partition(amazon):
    train, test = amazon.holdout(test_fraction=0.2)
    parts = amazon_per_user(amazon, train)
    assert len(parts) == amazon.num_users == 1859
    assert sum(p.size for p in parts) == train.size
    assert all((amazon.user[p] == u).all() for u, p in enumerate(parts[:100]))


def test_short_fedsubavg_run_on_amazon_improves_auc(amazon):
    task = EmbeddingCTRTask.from_amazon(amazon, num_users=300)
    graph = task.graph
    assert graph.num_devices == 300 and graph.device_heat("user").tolist() == [1] * 300
    assert graph.sample_heat("user").tolist() == graph.num_samples.tolist()
    sim = Simulator(task, FedSubAvg(graph, form="code"), clients_per_round=30, seed=0)
    history = sim.run(5)
    assert history[-1]["auc"] > history[0]["auc"] + 0.03
    assert not sim.rejected


# --------------------------------------------------------------------------- ODE valuation


def _ode_setup():
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    ).double()
    x_all = torch.randn(200, 5, generator=gen, dtype=torch.float64)
    y_all = torch.randint(0, 3, (200,), generator=gen)
    return model, torch.nn.functional.cross_entropy, x_all, y_all


F_ce = torch.nn.functional.cross_entropy


def test_per_sample_gradients_match_autograd():
    model, loss_fn, x, y = _ode_setup()
    g = per_sample_gradients(model, loss_fn, x[:4], y[:4])
    assert g.shape == (4, sum(p.numel() for p in model.parameters()))
    for i in range(4):
        model.zero_grad()
        loss_fn(model(x[i : i + 1]), y[i : i + 1]).backward()
        ref = torch.cat([p.grad.flatten() for p in model.parameters()])
        torch.testing.assert_close(g[i], ref)
    assert last_layers(model, 1) == ["2.weight", "2.bias"]
    assert len(last_layers(model, 2)) == 4


@pytest.mark.parametrize("layers", [None, 1])
def test_ode_value_matches_finite_difference_of_one_step_loss_change(layers):
    model, loss_fn, x_all, y_all = _ode_setup()
    params = None if layers is None else last_layers(model, layers)
    names = params or [n for n, _ in model.named_parameters()]
    g_global = global_gradient(model, loss_fn, x_all, y_all, params=params)
    x, y = x_all[:10] * 1.5, (y_all[:10] + 1) % 3  # fresh stream samples
    values = sample_values(model, loss_fn, x, y, g_global, params=params)
    per_sample = per_sample_gradients(model, loss_fn, x, y, params=params)
    base = float(loss_fn(model(x_all), y_all).detach())
    eta = 1e-6
    for i in range(10):
        # one SGD step of size eta on sample i (the chosen parameters only)
        trial = {n: p.detach().clone() for n, p in model.named_parameters()}
        offset = 0
        for n in names:
            size = trial[n].numel()
            trial[n] -= eta * per_sample[i, offset : offset + size].view_as(trial[n])
            offset += size
        after = float(loss_fn(torch.func.functional_call(model, trial, (x_all,)), y_all))
        fd = -(after - base) / eta  # the value predicts the drop of the global loss
        assert fd == pytest.approx(float(values[i]), rel=1e-3, abs=1e-7)
    with pytest.raises(ValueError, match="global_grad"):
        sample_values(model, loss_fn, x, y, g_global[:-1], params=params)


def test_gradient_estimators():
    local = LocalGradientEstimator(2)
    assert local.mean() is None
    local.add(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    local.add(torch.tensor([5.0, 6.0]))
    assert local.mean().tolist() == [3.0, 4.0] and local.count == 3
    local.reset()
    assert local.count == 0 and local.mean() is None

    init = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    inc = GlobalGradientEstimator([1, 2, 1], 2, mode="incremental")
    inc.initialize(init)
    assert inc.estimate.tolist() == [0.5, 0.75]
    inc.update({1: torch.tensor([2.0, 1.0])})  # + (2/4) * ([2, 1] - [0, 1])
    assert inc.estimate.tolist() == [1.5, 0.75]
    # the incremental estimate stays the weighted mean of the latest reports
    torch.testing.assert_close(
        inc.estimate, torch.tensor([0.25, 0.5, 0.25]).double() @ inc.previous
    )
    rep = GlobalGradientEstimator([1, 2, 1], 2, mode="replacement")
    rep.initialize(init)
    rep.update({0: torch.tensor([4.0, 0.0]), 2: torch.tensor([0.0, 4.0])})
    assert rep.estimate.tolist() == [2.0, 2.0]
    with pytest.raises(ValueError):
        GlobalGradientEstimator([1], 2, mode="other")


def test_uci_natural_splits(shared_data):
    heart = load_uci_heart_per_centre(shared_data / "fl" / "uci_heart_disease")
    assert [p.size for p in heart.parts] == [303, 123, 200]
    assert heart.x.shape == (626, 13) and set(np.unique(heart.y)) <= set(range(5))
    assert np.isnan(heart.x).any()
    har = load_uci_har_labels_per_subject(shared_data / "fl" / "uci_har_labels")
    assert har.y.size == 7352 and len(har.parts) == har.subjects.size == 21
    assert set(np.unique(har.y)) == set(range(6))
    test = load_uci_har_labels_per_subject(shared_data / "fl" / "uci_har_labels", "test")
    assert test.y.size == 2947 and len(test.parts) == 9


def test_submodel_training_equals_full_model_training():
    """Training on the downloaded rows with remapped indices = training the full model."""
    from graphrec.federated.tasks import local_sgd

    task = random_ctr_task(seed=8)
    sim = Simulator(task, FedProx(0.5), clients_per_round=3, seed=0)
    client, t = 5, 1
    config = sim.strategy.configure(t, sim.local.for_round(0))
    update = sim.client_update(client, config, t)
    idx = torch.from_numpy(task.parts[client])
    hist = task.history[idx]

    def loss_fn(params, b):
        args = (task.user[idx][b], task.item[idx][b], hist[b], (hist > 0)[b])
        logits = torch.func.functional_call(task.model, params, args)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, task.labels[idx][b])

    gen = torch.Generator().manual_seed(simulator_seed(sim.seed, t, 1, client))
    full, _ = local_sgd(sim.state, idx.numel(), config, gen, loss_fn)
    for name, row in update.rows.items():
        delta = full[name] - sim.state[name]
        torch.testing.assert_close(row.values, delta[row.index])
        untouched = torch.ones(delta.shape[0], dtype=torch.bool)
        untouched[row.index] = False
        assert delta[untouched].abs().max() == 0
    for name, d in update.dense.items():
        torch.testing.assert_close(d, full[name] - sim.state[name])


def test_label_coordination_meets_its_constraints():
    rng = np.random.default_rng(0)
    n_clients, n_labels = 30, 8
    velocity = rng.poisson(2.0, (n_clients, n_labels)) * (rng.random((n_clients, n_labels)) < 0.5)
    velocity[0] = 0  # a client without data
    sizes = rng.integers(1, 12, n_clients)
    owners, per_client = 5, 3
    a = coordinate_labels(sizes, velocity, label_owners=owners, client_labels=per_client)
    held = (a.slots > 0).sum(1)
    assert (held <= np.minimum(per_client, sizes)).all()
    assert (a.slots[velocity == 0] == 0).all()  # only labels the client sees
    assert (a.slots.sum(1)[held > 0] == sizes[held > 0]).all()  # whole buffer used
    assert ((a.slots > 0).sum(0) <= owners).all()
    seen = (velocity > 0).any(0)
    assert ((a.slots > 0).sum(0)[seen] >= 1).all()
    for c in np.flatnonzero(held):  # even split, leftovers to the fastest labels
        s = a.slots[c][a.slots[c] > 0]
        assert s.max() - s.min() <= 1
        labels = np.flatnonzero(a.slots[c])
        fast = labels[np.argmax(velocity[c, labels])]
        assert a.slots[c, fast] == s.max()
    # the gamma-weighted stored distribution equals the global label distribution
    counts = velocity.sum(0)
    stored = a.gamma * a.slots.sum(0)
    np.testing.assert_allclose(stored / stored.sum(), counts / counts.sum())
    np.testing.assert_allclose(a.weights, a.slots @ a.gamma)
    # with room for everything, every client owns every label it sees
    full = coordinate_labels(np.full(n_clients, 50), velocity, label_owners=99, client_labels=99)
    assert np.array_equal(full.slots > 0, velocity > 0)


def test_label_coordination_hand_case():
    velocity = np.array([[3, 0], [1, 1], [2, 5]])
    a = coordinate_labels([4, 3, 2], velocity, label_owners=1, client_labels=1)
    # label 0 is seen by 3 clients, label 1 by 2: label 1 first -> client 2 (velocity 5);
    # label 0 -> client 0 (velocity 3); client 1 gets nothing
    assert a.slots.tolist() == [[4, 0], [0, 0], [0, 2]]
    # global: label 0 has 6/12, label 1 6/12; slots 4 and 2 of 6 -> gamma 0.75 and 1.5
    np.testing.assert_allclose(a.gamma, [0.75, 1.5])
    np.testing.assert_allclose(a.weights, [3.0, 0.0, 3.0])


def test_value_buffer_keeps_the_highest_values_per_label():
    buf = ValueBuffer({0: 2, 1: 1, 2: 0})
    assert not buf.offer("x", 2, 10.0)  # no slot for label 2
    for sample, value in [("a", 1.0), ("b", 3.0), ("c", 2.0), ("d", 0.5)]:
        buf.offer(sample, 0, value)
    assert buf.offer("e", 1, -1.0) and not buf.offer("f", 1, -2.0) and buf.offer("g", 1, -1.0)
    assert buf.samples() == [("c", 0), ("b", 0), ("g", 1)] and len(buf) == 3
    buf.revalue(lambda samples, labels: [{"b": 0.0, "c": 9.0, "g": 1.0}[s] for s in samples])
    assert buf.samples() == [("b", 0), ("c", 0), ("g", 1)]
    assert buf.offer("h", 0, 0.1) and buf.samples()[0] == ("h", 0)


def test_din_on_amazon_per_user_with_fedsubavg(amazon):
    split = amazon_ctr(amazon, valid_fraction=0.0, test_fraction=0.2)
    features = CTRFeatures.from_table(split.train)
    users = 200
    train_user, test_user = split.train.categorical["user"], split.test.categorical["user"]
    parts = natural_partition(train_user[train_user <= users])
    task = CTRModelTask(
        lambda f: DIN(f, 8, (32, 16)),
        features,
        split.train,
        parts,
        split.test,
        test_rows=np.flatnonzero(test_user <= users),
    )
    assert task.tables == {
        "embedding.tables.user.weight": "user",
        "embedding.tables.item.weight": "item",
    }
    g = task.graph
    assert g.device_heat("user")[0] == users  # padding / OOV row in every submodel
    assert (g.device_heat("user")[1 : users + 1] == 1).all()
    # remapped local codes index the device's rows and keep 0 = padding
    local = task.local_data(4)
    rows = g.rows(4, "item")
    glob = task.batch["history"][torch.from_numpy(task.parts[4])]
    assert torch.equal(torch.from_numpy(rows)[local["history"]], glob)
    assert torch.equal(local["history"] == 0, glob == 0)
    sim = Simulator(task, FedSubAvg(g, form="code"), clients_per_round=20, seed=0)
    history = sim.run(3)
    assert history[-1]["auc"] > history[0]["auc"] + 0.02


def test_stream_device_lazy_catch_up_equals_eager_processing():
    model, loss_fn, x, y = _ode_setup()
    gen = torch.Generator().manual_seed(3)
    dim = sum(p.numel() for p in model.parameters())
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    models = [
        {
            n: v + 0.1 * t * torch.randn(v.shape, generator=gen, dtype=v.dtype)
            for n, v in base.items()
        }
        for t in range(11)
    ]
    grads = [torch.randn(dim, generator=gen, dtype=torch.float64) for _ in range(11)]
    selected = {1, 4, 5, 9}

    def device():
        store = make_store("ode", 5, slots={0: 3, 1: 2})
        d = StreamDevice(
            x[:37], y[:37], 4, store, model, loss_fn, needs=frozenset({"value"}), estimate=True
        )
        d.receive(models[0], grads[0])
        return d

    eager, lazy = device(), device()
    eager_up, lazy_up = [], []
    for t in range(1, 11):
        eager.process(t)
        if t in selected:
            eager_up.append(eager.upload())
            eager.receive(models[t], grads[t])
            lazy.catch_up(t)  # one batched valuation for all pending rounds
            lazy_up.append(lazy.upload())
            lazy.receive(models[t], grads[t])
    lazy.catch_up(10)
    assert lazy.cursor == eager.cursor == 10
    assert lazy.store.samples() == eager.store.samples() and len(eager.store.samples()) == 5
    for (s1, l1, v1), (s2, l2, v2) in zip(
        lazy.store.buffer.entries(), eager.store.buffer.entries(), strict=True
    ):
        assert (s1, l1) == (s2, l2) and v1 == pytest.approx(v2, rel=1e-12)
    for (a, na), (b, nb) in zip(eager_up, lazy_up, strict=True):
        assert na == nb
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(lazy.estimator.total, eager.estimator.total)
    assert {int(y[i]) for i in eager.store.samples()} <= {0, 1}  # label 2 has no slot
    # the first upload is the mean gradient of round 1's arrivals at the initial model
    g1 = per_sample_gradients(model, loss_fn, x[:4], y[:4], state=models[0])
    torch.testing.assert_close(eager_up[0][0], g1.mean(0))
    # stored values are the projections on the last received estimate
    idx = torch.tensor(eager.store.samples())
    g = per_sample_gradients(model, loss_fn, x[idx], y[idx], state=models[9])
    eager.revalue()
    values = sorted(v for _, _, v in eager.store.buffer.entries())
    assert values == pytest.approx(sorted((g @ grads[9]).tolist()))
    with pytest.raises(ValueError, match="next round"):
        eager.process(12)


def test_baseline_stores_hand_cases():
    stats = [{"loss": v, "grad_norm": 10 - v} for v in (1.0, 5.0, 3.0, 0.5, 4.0)]
    fifo, full = make_store("fifo", 2), make_store("fd", 2)
    hl, gn = make_store("hl", 2), make_store("gn", 2)
    for s, st in enumerate(stats + stats[:2]):  # the stream replays samples 0 and 1
        for store in (fifo, full, hl, gn):
            store.offer(s % 5, 0, st)
    assert fifo.samples() == [0, 1]
    assert full.samples() == [0, 1, 2, 3, 4]  # every distinct sample, no limit
    assert sorted(hl.samples()) == [1, 4]  # top-2 losses; a replayed sample is not duplicated
    assert sorted(gn.samples()) == [0, 3]  # top-2 gradient norms
    # reservoir: each of n stream samples is kept with probability capacity / n
    kept = np.zeros(10)
    for seed in range(2000):
        rs = make_store("rs", 3, rng=np.random.default_rng(seed))
        for s in range(10):
            rs.offer(s, 0, {})
        kept[rs.samples()] += 1
    assert np.allclose(kept / 2000, 0.3, atol=0.05)
    # FedBalancer guard: a loss above 0.9 x the running max is admitted with p = 0.3
    admitted = make_store("fb", 10_000, rng=np.random.default_rng(1))
    for s in range(2000):
        admitted.offer(s, 0, {"loss": float(s)})
    assert 0.25 < len(admitted.samples()) / 2000 < 0.35
    # SLD guard: after 50 samples, norms above 1.2 x the running mean pass with p = 0.2
    sld = make_store("sld", 10_000, rng=np.random.default_rng(2))
    for s in range(50):
        sld.offer(s, 0, {"grad_norm": 1.0})
    for s in range(50, 2050):
        sld.offer(s, 0, {"grad_norm": 1.0 if s % 2 else 100.0})
    big = [s for s in sld.samples() if s >= 50 and s % 2 == 0]
    assert len([s for s in sld.samples() if s >= 50 and s % 2]) == 1000
    assert 0.15 < len(big) / 1000 < 0.25
    with pytest.raises(ValueError, match="slots"):
        make_store("ode", 3)
    with pytest.raises(ValueError, match="unknown selector"):
        make_store("best", 3)


@pytest.fixture
def tiny_stream_task(split_streams) -> Callable[..., StreamTask]:
    """``tiny_stream_task(selector, **options)``: 12 devices streaming 48 samples each."""

    def make(selector: str, **options: str) -> StreamTask:
        data = synthetic_leaf(0.5, 0.5, 12, samples_per_device=60, dim=10, num_classes=4, seed=1)
        return stream_task(split_streams(data, 48), selector, buffer_size=6, velocity=3, **options)

    return make


@pytest.mark.parametrize("selector", ["rs", "ode", "ode-exact", "sld"])
def test_stream_rounds_learn_and_are_seeded(selector, tiny_stream_task):
    local = LocalConfig(lr=0.1, lr_decay=1.0, local_steps=3, batch_size=1000, clip_norm=None)
    runs = []
    for _ in range(2):
        task = tiny_stream_task(selector)
        sim = stream_simulator(task, clients_per_round=4, local=local, seed=5, eval_every=5)
        runs.append(sim.run(20))
    assert runs[0] == runs[1]
    acc = [r["accuracy"] for r in runs[0] if "accuracy" in r]
    assert acc[-1] > acc[0] + 0.15
    devices = [cs["device"] for cs in sim.client_state.values()]
    assert all(len(d.store.samples()) <= 6 for d in devices)
    cost = task.selection_cost(devices)
    if selector == "rs":
        assert cost == {"ms_per_sample": 0.0, "bytes_per_sample": 0.0}
    else:
        assert cost["bytes_per_sample"] == 44 * 4 and cost["ms_per_sample"] > 0
    if selector.startswith("ode"):  # coordinated stores: slots within each device's labels
        a = task.assignment
        assert (a.slots.sum(1) == 6).all()
        for d, dev in zip(sim.client_state, devices, strict=True):
            labels = task.y[torch.from_numpy(task.streams[d][dev.store.samples()])]
            counts = np.bincount(labels.numpy(), minlength=4)
            assert (counts <= a.slots[d]).all()


def test_ode_server_weights_and_estimate(tiny_stream_task):
    task = tiny_stream_task("ode")
    local = LocalConfig(lr=0.1, lr_decay=1.0, local_steps=1, batch_size=1000, clip_norm=None)
    sim = stream_simulator(task, clients_per_round=3, local=local, seed=0)
    est = sim.strategy.estimator
    torch.testing.assert_close(  # seeded with the exact gradient at the initial model
        est.estimate.float(), task.client_gradients(sim.state).mean(0), rtol=1e-5, atol=1e-6
    )
    config = sim.strategy.configure(1, local.for_round(0))
    updates = [sim.client_update(c, config, 1) for c in sim.sample_clients(1)]
    for u in updates:  # weight sum_y gamma_y B_cy, and the local estimate of 3 arrivals
        assert u.weight == pytest.approx(task.assignment.weights[u.client])
        idx = torch.from_numpy(task.streams[u.client][:3])
        g = per_sample_gradients(task.model, F_ce, task.x[idx], task.y[idx], state=sim.state)
        torch.testing.assert_close(u.extras["ghat"], g.mean(0))
    new = sim.strategy.aggregate(sim.state, updates)
    w = np.array([u.weight for u in updates]) / sum(u.weight for u in updates)
    expected = sum(wi * u.dense["weight"] for wi, u in zip(w, updates, strict=True))
    torch.testing.assert_close(new["weight"], sim.state["weight"] + expected)
    n = task.graph.num_samples[[u.client for u in updates]].astype(float)
    mean = sum((ni / n.sum()) * u.extras["ghat"].double() for ni, u in zip(n, updates))
    torch.testing.assert_close(est.estimate, mean)  # replacement (Estimation2)
    empty = ClientUpdate(0, 5, dense={"weight": torch.ones_like(new["weight"])}, weight=0.0)
    out = ODEAggregation().aggregate(sim.state, [empty])
    assert torch.equal(out["weight"], sim.state["weight"])


def test_speedup_hand_case():
    rs = [{"round": r, "accuracy": a} for r, a in [(0, 0.1), (10, 0.5), (20, 0.7), (30, 0.8)]]
    fast = [{"round": r, "accuracy": a} for r, a in [(0, 0.1), (10, 0.8), (20, 0.9), (30, 0.9)]]
    slow = [{"round": r, "accuracy": a} for r, a in [(0, 0.1), (10, 0.2), (20, 0.3), (30, 0.4)]]
    assert speedup(rs, rs) == 1.0 and speedup(rs, fast) == 3.0 and speedup(rs, slow) is None
    mid = [{"round": r, "accuracy": a} for r, a in [(0, 0.1), (10, 0.6), (20, 0.76), (30, 0.79)]]
    assert speedup(rs, mid) is None  # never reaches RS's final 0.8
    assert speedup(rs, mid, tail=2) == 1.5  # target mean(0.7, 0.8): RS at 30, mid at 20
