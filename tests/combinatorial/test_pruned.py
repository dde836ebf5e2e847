"""Candidate-pruned greedy, and FastCover against one-shot heuristics on held-out graphs."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

import combinatorial
from combinatorial.pruned import pruned_greedy
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
    import scipy.sparse as sp

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
    import scipy.sparse as sp

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
    for k in (8, 32, 128):
        ref = combinatorial.greedy(adj, k, 2).covered
        ratios["fastcover"].append(combinatorial.solve(g, k, 2).covered / ref)
        ratios["pruned"].append(combinatorial.solve(g, k, 2, candidates=8).covered / ref)
        ratios["soft"].append(combinatorial.top_soft_coverage(adj, k, 2).covered / ref)
        ratios["degree"].append(combinatorial.top_degree(adj, k, 2).covered / ref)
    mean = {m: float(np.mean(r)) for m, r in ratios.items()}
    assert mean["fastcover"] > mean["soft"] and mean["fastcover"] > mean["degree"], mean
    assert mean["pruned"] >= 0.98, mean
