"""GraphFilterCF: batched scoring, masking of known items, metrics, validation-only tuning."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graphrec.errors import ConfigError
from graphrec.graphs import build_bipartite
from graphrec.metrics import ranking_metrics
from graphrec.models.cf import GraphFilterCF, GraphFilterConfig, tune_graph_filter
from graphrec.nn import BSPMFilter, GFCFFilter


@pytest.fixture
def graph():
    """60 users x 40 items in two taste groups, with test and validation carved per user."""
    rng = np.random.default_rng(0)
    rows, cols = [], []
    for u in range(60):
        group = u % 2
        items = rng.choice(np.arange(group * 20, group * 20 + 20), size=10, replace=False)
        rows += [u] * 10
        cols += items.tolist()
    matrix = sp.csr_array((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(60, 40))
    return build_bipartite(matrix, valid_fraction=0.2, test_fraction=0.2, seed=0)


def test_batched_scores_equal_unbatched(graph):
    users = np.arange(graph.num_users)
    for method in ("gf-cf", "bspm"):
        small = GraphFilterCF(GraphFilterConfig(method=method, k=8, batch_size=7)).fit(graph)
        big = GraphFilterCF(GraphFilterConfig(method=method, k=8, batch_size=1000)).fit(graph)
        torch.testing.assert_close(small.scores(users), big.scores(users))
        assert small.scores(users[:0]).shape == (0, graph.num_items)


def test_scores_are_the_filter_of_the_fitted_rows(graph):
    model = GraphFilterCF(GraphFilterConfig(k=8, alpha=0.5)).fit(graph, include_valid=True)
    known = graph.train + graph.valid
    expected = GFCFFilter(known, k=8, alpha=0.5)(known[[3, 4]])
    torch.testing.assert_close(model.scores([3, 4], exclude_known=False), expected)
    for solver, merge in (("euler", "early"), ("rk4", "late")):
        config = GraphFilterConfig(
            method="bspm", k=8, alpha=0.2, sharpen_time=0.5, sharpen_steps=2, solver=solver,
            merge=merge,
        )  # fmt: skip
        bspm = GraphFilterCF(config).fit(graph)
        expected = BSPMFilter(graph.train, 8, 0.2, 0.5, 2, solver, merge)(graph.train[[3]])
        torch.testing.assert_close(bspm.scores([3], exclude_known=False), expected)


def test_known_items_never_recommended(graph):
    known = (graph.train + graph.valid).toarray() > 0
    for include_valid in (False, True):
        model = GraphFilterCF(GraphFilterConfig(k=8)).fit(graph, include_valid=include_valid)
        scores = model.scores(np.arange(graph.num_users))
        assert torch.isneginf(scores[torch.from_numpy(known)]).all()
        assert torch.isfinite(scores[torch.from_numpy(~known)]).all()
        items, values = model.recommend(np.arange(graph.num_users), k=graph.num_items)
        for u in range(graph.num_users):
            shown = items[u][items[u] >= 0]
            assert not known[u, shown].any()
            assert len(shown) == (~known[u]).sum()  # then -1 / -inf padding
            assert np.all(np.isneginf(values[u][len(shown) :]))
        with_known, _ = model.recommend([0], k=graph.num_items, exclude_known=False)
        assert sorted(with_known[0]) == list(range(graph.num_items))


def test_evaluate_matches_ranking_metrics(graph):
    model = GraphFilterCF(GraphFilterConfig(k=8)).fit(graph)
    raw = model.scores(np.arange(graph.num_users), exclude_known=False)
    assert model.evaluate("valid") == ranking_metrics(raw, graph.valid, graph.train)
    assert model.evaluate("test") == ranking_metrics(raw, graph.test, graph.train + graph.valid)
    full = GraphFilterCF(GraphFilterConfig(k=8)).fit(graph, include_valid=True)
    with pytest.raises(ConfigError, match="include_valid=False"):
        full.evaluate("valid")
    with pytest.raises(ConfigError, match="split"):
        model.evaluate("train")
    with pytest.raises(ConfigError, match="fit"):
        GraphFilterCF().scores([0])


def test_tuning_uses_validation_only(graph):
    grid = {"k": (4, 8), "alpha": (0.0, 0.5), "sharpen_time": (0.0, 0.5)}
    best, table = tune_graph_filter(graph, "bspm", grid=grid)
    assert len(table) == 16 and best.method == "bspm"  # GRID's early and late merge
    top = max(table, key=lambda row: row["recall@20"])
    chosen = (best.k, best.alpha, best.sharpen_time, best.merge)
    assert chosen == (top["k"], top["alpha"], top["sharpen_time"], top["merge"])
    # each grid point's validation metrics equal a fit of that configuration
    row = table[7]
    config = GraphFilterConfig("bspm", k=row["k"], alpha=row["alpha"],
                               sharpen_time=row["sharpen_time"], merge=row["merge"])  # fmt: skip
    direct = GraphFilterCF(config).fit(graph).evaluate("valid")
    assert row["recall@20"] == pytest.approx(direct["recall@20"], abs=1e-6)
    assert row["ndcg@20"] == pytest.approx(direct["ndcg@20"], abs=1e-6)
    # the test split plays no part
    no_test = dataclasses.replace(graph, test=sp.csr_array(graph.test.shape, dtype=np.float32))
    assert tune_graph_filter(no_test, "bspm", grid=grid) == (best, table)
    # RK4 and Euler: each row equals a fit of its configuration
    for solver in ("rk4", "euler"):
        config = GraphFilterConfig("bspm", solver=solver)
        _, table = tune_graph_filter(graph, "bspm", grid=grid, config=config)
        assert len(table) == 16
        for row in table[1::3]:
            config = GraphFilterConfig("bspm", k=row["k"], alpha=row["alpha"],
                                       sharpen_time=row["sharpen_time"], solver=solver,
                                       merge=row["merge"])  # fmt: skip
            direct = GraphFilterCF(config).fit(graph).evaluate("valid")
            assert row["recall@20"] == pytest.approx(direct["recall@20"], abs=1e-6)
            assert row["ndcg@20"] == pytest.approx(direct["ndcg@20"], abs=1e-6)
    gf_best, gf_table = tune_graph_filter(graph, "gf-cf", grid=grid)
    assert len(gf_table) == 4 and {r["sharpen_time"] for r in gf_table} == {0.0}
    assert gf_best.method == "gf-cf"


def test_config_errors():
    with pytest.raises(ConfigError, match="method"):
        GraphFilterConfig(method="svd")
    with pytest.raises(ConfigError, match="k must be"):
        GraphFilterConfig(k=0)
    with pytest.raises(ConfigError, match="alpha"):
        GraphFilterConfig(alpha=-0.1)
    with pytest.raises(ConfigError, match="metric"):
        GraphFilterConfig(metric="auc")
    with pytest.raises(ConfigError, match="unknown"):
        GraphFilterConfig.from_dict({"epochs": 3})
    defaults = GraphFilterConfig(), GraphFilterConfig("bspm")  # per-method validated defaults
    assert [(c.k, c.alpha, c.sharpen_time) for c in defaults] == [(256, 0.2, 0.0), (448, 0.2, 2.5)]
    assert (defaults[1].solver, defaults[1].merge) == ("rk4", "early")
    with pytest.raises(ConfigError, match="solver"):
        GraphFilterConfig("bspm", solver="dopri5")
    with pytest.raises(ConfigError, match="merge"):
        GraphFilterConfig("bspm", merge="middle")
    config = GraphFilterConfig(method="bspm", k=64)
    assert GraphFilterConfig.from_dict(config.to_dict()) == config
    # a model file written before solver/merge existed: Euler, early merge
    legacy = {k: v for k, v in config.to_dict().items() if k not in ("solver", "merge")}
    old = GraphFilterConfig.from_dict(legacy)
    assert (old.solver, old.merge) == ("euler", "early")
