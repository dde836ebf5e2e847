"""Candidate-pruned greedy (fixed and automatic pools, certificate, bounds), FastCover's default
and one pass, and FastCover against one-shot heuristics on held-out graphs."""

from __future__ import annotations

import doctest
import importlib

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

import combinatorial
from combinatorial.pruned import fastcover_greedy, pruned_greedy, upper_bound, walk_bound
from graphrec.errors import ConfigError
from graphrec.io import read_edgelist


def _adj(path):
    g = read_edgelist(path)
    return g, combinatorial.adjacency(g.data.edge_index, g.num_nodes)


def test_doctest():
    assert doctest.testmod(importlib.import_module("combinatorial.pruned")).failed == 0


@pytest.mark.parametrize("d", [1, 2])
def test_full_pool_equals_exact_greedy(shared_data, d):
    _, adj = _adj(shared_data / "fastcover/undirected/fb-pages-food.txt")
    n = adj.shape[0]
    for k in (1, 5, 20):
        # equal scores put every node in the pool in id order: the same set system and the
        # same tie-breaking (smallest id) as exact greedy, hence the same picks
        sol = pruned_greedy(adj, np.zeros(n), k, d, candidates=n)
        ref = combinatorial.greedy(adj, k, d)
        assert sol.seeds.tolist() == ref.seeds.tolist()
        assert sol.covered == ref.covered == combinatorial.coverage(adj, sol.seeds, d)


def test_pool_restricts_the_choice():
    # 0 covers 1..4; 5 covers 6; a pool of one node (the best score) must return it
    rows, cols = [0, 0, 0, 0, 5], [1, 2, 3, 4, 6]
    adj = sp.csr_array((np.ones(5), (rows, cols)), shape=(7, 7))
    scores = np.array([0.0, 0, 0, 0, 0, 1.0, 0])
    sol = pruned_greedy(adj, scores, 1, 1, candidates=1)
    assert sol.seeds.tolist() == [5] and sol.covered == 2
    assert pruned_greedy(adj, scores, 1, 1, candidates=7).seeds.tolist() == [0]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"candidates": 0}, "candidates must be"),
        ({"k": 0}, "k must be"),
        ({"d": 0}, "d must be"),
    ],
)
def test_bad_arguments(kwargs, needle):
    adj = sp.csr_array((3, 3))
    args = {"k": 1, "d": 1, "candidates": 2} | kwargs
    with pytest.raises(ValueError, match=needle):
        pruned_greedy(adj, np.zeros(3), args["k"], args["d"], candidates=args["candidates"])
    with pytest.raises(ValueError, match="shape"):
        pruned_greedy(adj, np.zeros(4), 1, 1)


@pytest.mark.parametrize("name", ["soc-epinions", "soc-gplus"])
def test_fastcover_beats_one_shot_heuristics_at_d2_and_pruning_nears_greedy(shared_data, name):
    """Held-out graphs (never used in training or validation), d = 2, k in {8, 32, 128}."""
    g, adj = _adj(shared_data / f"fastcover/directed/{name}.txt.gz")
    ratios = {"fastcover": [], "pruned": [], "soft": [], "degree": []}
    greedy_seeds = combinatorial.greedy(adj, 128, 2).seeds  # greedy's first k picks: its k-run
    for k in (8, 32, 128):
        ref = combinatorial.coverage(adj, greedy_seeds[:k], 2)
        ratios["fastcover"].append(combinatorial.solve(g, k, 2, one_pass=True).covered / ref)
        ratios["pruned"].append(combinatorial.solve(g, k, 2, candidates=8).covered / ref)
        ratios["soft"].append(combinatorial.top_soft_coverage(adj, k, 2).covered / ref)
        ratios["degree"].append(combinatorial.top_degree(adj, k, 2).covered / ref)
    mean = {m: float(np.mean(r)) for m, r in ratios.items()}
    assert mean["fastcover"] > mean["soft"] and mean["fastcover"] > mean["degree"], mean
    assert mean["pruned"] >= 0.98, mean


def _random_adj(n: int, p: float, seed: int) -> sp.csr_array:
    G = nx.gnp_random_graph(n, p, seed=seed, directed=True)
    G.add_edges_from((v, v) for v in range(0, n, 7))  # some self-loops
    return combinatorial.adjacency(np.array(list(G.edges()), dtype=np.int64).T, n)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_walk_bound_bounds_the_residual_balls(d):
    rng = np.random.default_rng(d)
    for seed in range(3):
        adj = _random_adj(120, 0.03, seed)
        M = combinatorial.d_closure(adj, d).toarray()
        uncovered = rng.random(120) < 0.6
        true = (M & uncovered).sum(axis=1)
        ub = walk_bound(adj, uncovered, d)
        assert (ub >= true).all()
        if d == 1:
            assert ub.tolist() == true.tolist()  # exact at d = 1


def _max_gains(M: np.ndarray, seeds: np.ndarray) -> list[tuple[int, int]]:
    """(gain of each pick, largest gain over all nodes at that step) along ``seeds``."""
    covered = np.zeros(M.shape[0], dtype=bool)
    out = []
    for s in seeds:
        gains = (M & ~covered).sum(axis=1)
        out.append((int(gains[s]), int(gains.max())))
        covered |= M[s]
    return out


@pytest.mark.parametrize("d", [2, 3])
def test_certified_pool_is_a_run_of_exact_greedy(d):
    certified = 0
    for seed in range(4):
        adj = _random_adj(300, 0.01, seed)
        M = combinatorial.d_closure(adj, d).toarray()
        scores = np.random.default_rng(seed).random(300)  # a poor ranking: the pool must grow
        for k in (1, 5, 20):
            sol = pruned_greedy(adj, scores, k, d, candidates=None, max_entries=10**6)
            ref = combinatorial.greedy(adj, k, d)
            assert sol.covered == combinatorial.coverage(adj, sol.seeds, d)
            assert sol.info["upper_bound"] >= ref.covered >= sol.covered * (1 - 1 / np.e)
            if sol.info["certified"]:
                certified += 1
                steps = _max_gains(M, sol.seeds)
                # every pick had the largest marginal gain of the whole graph (ties may pick
                # another node than greedy's smallest id, and later steps may then differ)
                assert all(g == best for g, best in steps), steps
    assert certified == 12  # with an ample budget every pool grows until certified
    adj = _random_adj(300, 0.01, 0)
    tight = pruned_greedy(adj, np.zeros(300), 5, d, candidates=None, max_entries=1)
    assert not tight.info["certified"] and tight.info["pool"] == combinatorial.pruned.MIN_POOL
    assert tight.info["upper_bound"] >= combinatorial.greedy(adj, 5, d).covered


def test_bounds_are_above_the_optimum():
    adj = _random_adj(40, 0.06, 3)
    scores = np.arange(40, dtype=float)
    for d in (1, 2):
        for k in (1, 3):
            opt = combinatorial.ilp(adj, k, d).covered
            for candidates in (1, None):
                sol = pruned_greedy(adj, scores, k, d, candidates=candidates)
                assert sol.info["upper_bound"] >= opt >= sol.covered
            assert upper_bound(adj, np.arange(k), d, k) >= opt


def test_default_takes_the_closure_when_small_and_the_pool_otherwise():
    adj = _random_adj(200, 0.02, 1)
    calls = []

    def score():
        calls.append(1)
        return np.arange(200, dtype=float)

    sol = fastcover_greedy(adj, 5, 1, score)
    ref = combinatorial.greedy(adj, 5, 1)
    assert sol.info["strategy"] == "closure greedy" and sol.info["certified"] and not calls
    assert sol.seeds.tolist() == ref.seeds.tolist()
    sol = fastcover_greedy(adj, 5, 2, score, candidates=2)  # a fixed pool: the scores decide
    assert sol.info["strategy"] == "pruned greedy, GNN ranking" and calls == [1]
    assert sol.info["pool"] == 10 and "score" in sol.timings


def test_default_prunes_large_closures_by_walk_bound_at_d2(monkeypatch):
    monkeypatch.setattr(combinatorial.pruned, "CLOSURE_WALKS", 1)  # call this closure large
    monkeypatch.setattr(combinatorial.pruned, "PRUNE_ENTRIES", 0)  # ... and worth pruning
    adj = _random_adj(1000, 0.006, 1)
    calls = []
    sol = fastcover_greedy(adj, 3, 2, lambda: calls.append(1))
    ref = combinatorial.greedy(adj, 3, 2)
    assert sol.info["strategy"] == "pruned greedy, walk-bound ranking" and not calls
    assert sol.info["certified"] and sol.info["pool"] < 1000
    assert sol.covered == ref.covered and sol.info["upper_bound"] >= ref.covered


def test_pruning_needs_a_closure_well_above_the_graph(monkeypatch):
    monkeypatch.setattr(combinatorial.pruned, "CLOSURE_WALKS", 1)  # call this closure large
    adj = _random_adj(1000, 0.006, 1)
    sol = fastcover_greedy(adj, 3, 2, lambda: None)  # ~40 entries per node, under 16 (n + m)
    assert sol.info["strategy"] == "closure greedy"
    one = fastcover_greedy(adj, 1, 2, lambda: None)  # k = 1: the sampled largest ball
    assert one.info["strategy"] == "sampled first pick"
    assert one.covered == combinatorial.greedy(adj, 1, 2).covered


def test_uncertified_pool_falls_back_to_closure_greedy():
    # ego-Facebook at d = 2, k = 2: the walk-bound pool ends uncertified (at k = 1 its pick
    # covered 2,687 nodes against greedy's 2,916), and its balls are a large part of the closure
    from graphrec.datasets import ego_facebook

    g = ego_facebook()
    adj = combinatorial.adjacency(g.data.edge_index, g.num_nodes)
    ref = combinatorial.greedy(adj, 2, 2)
    sol = fastcover_greedy(adj, 2, 2, lambda: None)
    assert sol.info["strategy"] == "closure greedy (pruned pool not certified)"
    assert sol.info["certified"] and "pruned_balls" in sol.timings
    assert sol.seeds.tolist() == ref.seeds.tolist() and sol.covered == ref.covered == 3774
    one = fastcover_greedy(adj, 1, 2, lambda: None)  # k = 1: the sampled largest ball
    assert one.info["strategy"] == "sampled first pick" and one.covered == 2916


def test_solve_one_pass_is_the_top_k_and_the_default_states_its_method():
    from combinatorial.gnn import fastcover_seeds
    from graphrec.io import as_edgelist

    G = nx.gnp_random_graph(150, 0.03, seed=2, directed=True)
    one = combinatorial.solve(G, 10, 2, one_pass=True)
    g = as_edgelist(G)
    seeds = fastcover_seeds(g.data.edge_index, g.num_nodes, 10, 2)
    assert one.seeds.tolist() == seeds.tolist()
    assert one.info["strategy"] == "one pass" and not one.info["certified"]
    assert one.info["upper_bound"] >= combinatorial.solve(G, 10, 2, method="greedy").covered
    default = combinatorial.solve(G, 10, 2)
    assert default.method == "fastcover" and default.info["strategy"] == "closure greedy"
    assert default.info["certified"] and default.info["upper_bound"] >= default.covered


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"rounds": 4, "candidates": 4}, "not with one_pass or rounds > 1"),
        ({"one_pass": True, "candidates": 4}, "not with one_pass"),
        ({"candidates": 4, "max_entries": 100}, "not with a fixed candidates"),
        ({"max_entries": 0}, "max_entries must be"),
        ({"method": "greedy", "one_pass": True}, "apply to fastcover only"),
    ],
)
def test_contradictory_fastcover_options(kwargs, needle):
    G = nx.path_graph(5, create_using=nx.DiGraph)
    with pytest.raises(ConfigError, match=needle):
        combinatorial.solve(G, 1, 2, **kwargs)
